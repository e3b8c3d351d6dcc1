"""A sweep's jobs as records, grouped by configuration: mean ± std over seeds, differences to the
paper's configuration with 95% confidence intervals, and the paper's own claims beside them.

Records in, numbers out: :mod:`alexnet.run.sweep` reads the jobs from a sweep directory.
"""

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from alexnet.ablations import PAPER_CHOICES


@dataclass(frozen=True)
class Claim:
    """A difference the paper reports against its own configuration, in points of error (%)."""

    top1: float | None
    top5: float | None
    source: str


# (axis, value) -> what the paper says moving from its choice to this value costs.
PAPER_CLAIMS = {
    ("norm", "none"): Claim(1.4, 1.2, "§3.3, ImageNet"),
    ("pool", "nonoverlap"): Claim(0.4, 0.3, "§3.4, ImageNet"),
    ("model.columns", "1"): Claim(1.7, 1.2, "§3.2, ImageNet, one column of half the kernels"),
}
TRAIN_ERROR_TARGET = 0.25  # Fig. 1: epochs to reach 25% training error


@dataclass
class Job:
    name: str
    overrides: list[str]
    results: dict | None

    @property
    def status(self) -> str:
        return (self.results or {}).get("status", "unfinished")

    @property
    def choices(self) -> dict[str, str]:
        return dict(o.split("=", 1) for o in self.overrides if "=" in o and not o.startswith("hydra."))


@dataclass
class Group:
    """The jobs of one configuration (all seeds)."""

    label: str
    axes: dict[str, str]
    jobs: list[Job] = field(default_factory=list)

    @property
    def finished(self) -> list[Job]:
        return [j for j in self.jobs if j.status == "finished"]

    def values(self, metric: str) -> list[float]:
        """Test top-1/top-5 error in %, one per finished job (``metric`` is ``err1`` or ``err5``)."""
        return [
            100 * j.results["test"][metric]
            for j in self.finished
            if (j.results.get("test") or {}).get(metric) is not None
        ]


def job_order(job: "Job") -> tuple[bool, int | str]:
    """Numbered jobs first, in number order (2 before 10)."""
    return (not job.name.isdigit(), int(job.name) if job.name.isdigit() else job.name)


def group_jobs(jobs: Sequence[Job], tuned: Sequence[str] = ()) -> tuple[list[str], list[Group]]:
    """(axes, groups): the override keys that vary across jobs (the seed and the ``tuned`` keys of a
    tuned sweep aside), and one group per combination of their values, in the order the jobs ran."""
    keys = list(dict.fromkeys(k for j in jobs for k in j.choices))
    axes = [k for k in keys if k not in ("seed", *tuned) and len({j.choices.get(k) for j in jobs}) > 1]
    groups: dict[tuple, Group] = {}
    for job in jobs:
        values = {a: job.choices.get(a, "default") for a in axes}
        key = tuple(values.values())
        label = " ".join(f"{a}={v}" for a, v in values.items()) or "all jobs"
        groups.setdefault(key, Group(label, values)).jobs.append(job)
    return axes, list(groups.values())


def baseline_of(groups: Sequence[Group]) -> Group | None:
    """The group whose axis values are all the paper's, if the sweep has one."""
    for group in groups:
        if group.axes and all(PAPER_CHOICES.get(a) == v for a, v in group.axes.items()):
            return group
    return None


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def difference_ci(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float, float] | None:
    """Mean(a) - mean(b) with Welch's t confidence interval; None when either side has < 2 values."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    diff = statistics.fmean(a) - statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + level / 2, dof) * se
    return diff, diff - half, diff + half


def claim_for(group: Group, baseline: Group | None) -> Claim | None:
    """The paper's claim for a group that differs from the baseline on exactly one axis."""
    if baseline is None:
        return None
    changed = [(a, v) for a, v in group.axes.items() if baseline.axes.get(a) != v]
    return PAPER_CLAIMS.get(changed[0]) if len(changed) == 1 else None


def epochs_to_train_error(history: Sequence[dict], target: float = TRAIN_ERROR_TARGET) -> int | None:
    """Epochs of training until ``train/err1`` first reaches ``target`` (None if it never does)."""
    for row in history:
        if row.get("train/err1") is not None and row["train/err1"] <= target:
            return int(row["epoch"]) + 1
    return None


def _fmt(mean: float, std: float | None) -> str:
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def _fmt_ci(ci: tuple[float, float, float] | None) -> str:
    return f"{ci[0]:+.2f} [{ci[1]:+.2f}, {ci[2]:+.2f}]" if ci else "—"


def summary_rows(axes: Sequence[str], groups: Sequence[Group], baseline: Group | None) -> list[dict[str, str]]:
    """One row per configuration, as strings for the markdown table."""
    rows = []
    for group in groups:
        row = {"configuration": group.label + (" (paper)" if group is baseline else ""), "n": str(len(group.finished))}
        for metric, name in (("err1", "top-1"), ("err5", "top-5")):
            values = group.values(metric)
            row[f"test {name} err %"] = _fmt(*mean_std(values)) if values else "—"
        for metric, name in (("err1", "top-1"), ("err5", "top-5")):
            ci = (
                difference_ci(group.values(metric), baseline.values(metric))
                if baseline and group is not baseline
                else None
            )
            row[f"Δ {name} vs paper [95% CI]"] = _fmt_ci(ci) if group is not baseline else "0"
        claim = claim_for(group, baseline)
        row["paper's Δ top-1 / top-5"] = f"+{claim.top1} / +{claim.top5} ({claim.source})" if claim else "—"
        histories = [j.results.get("history", []) for j in group.finished]
        if "activation" in axes:
            reached = [epochs_to_train_error(h) for h in histories]
            known = [r for r in reached if r is not None]
            row["epochs to 25% train err"] = (_fmt(*mean_std(known)) if known else "—") + (
                f" ({len(reached) - len(known)} never)" if len(known) < len(reached) else ""
            )
        if any(a.startswith("dropout") for a in axes):
            gaps = [
                100 * (h[-1]["val/err1"] - h[-1]["train/err1"])
                for h in histories
                if h and "train/err1" in h[-1] and "val/err1" in h[-1]
            ]
            best = [j.results["val"]["best"]["epoch"] + 1 for j in group.finished if j.results["val"]["best"]]
            row["final val − train err %"] = _fmt(*mean_std(gaps)) if gaps else "—"
            row["epoch of best val"] = _fmt(*mean_std(best)) if best else "—"
        rows.append(row)
    return rows
