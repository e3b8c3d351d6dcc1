"""Summarise a sweep: per-configuration mean ± std over seeds, differences to the paper's
configuration with 95% confidence intervals, the paper's own claims beside them, and plots.

    python src/report.py outputs/multiruns/<date>/<time>-<id>

Reads every job's ``results.json`` (and ``.hydra/overrides.yaml``) under the sweep directory and
writes ``report.md``, ``runs.csv`` and PNG plots next to them. Failed and unfinished jobs are
listed, never dropped; a partial sweep still reports.
"""

import csv
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from alexnet.analysis.search import load_searches, search_section
from alexnet.rundir import RunDir

# The paper's choice on each axis a sweep may vary; the configuration made of these is the baseline.
PAPER_CHOICES = {
    "model": "paper",
    "norm": "lrn",
    "pool": "overlap",
    "dropout": "paper",
    "dropout.p": "0.5",
    "activation": "relu",
    "model.columns": "2",
}


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


def load_jobs(sweep_dir: Path) -> list[Job]:
    """Every job directory of a sweep (a folder holding ``.hydra/overrides.yaml``), in job order."""
    runs = [RunDir(job_dir) for job_dir in sweep_dir.glob("*/") if RunDir(job_dir).overrides_file.is_file()]
    # .hydra/overrides.yaml holds the job's overrides as given, resume= included
    jobs = [Job(run.path.name, list(OmegaConf.load(run.overrides_file)), run.results()) for run in runs]
    return sorted(jobs, key=job_order)


def job_order(job: "Job") -> tuple[bool, int | str]:
    """Numbered jobs first, in number order (2 before 10)."""
    return (not job.name.isdigit(), int(job.name) if job.name.isdigit() else job.name)


def expected_job_count(sweep_dir: Path) -> int | None:
    """How many jobs the sweep asked for, from Hydra's ``multirun.yaml`` (None if it is missing)."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hydra = OmegaConf.load(path).hydra
    params = [f"{k}={v}" for k, v in (hydra.sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create().parse_overrides([*params, *hydra.overrides.task])
    sizes = {}
    for o in parsed:  # in order: a later override of a key replaces an earlier one, a sweep or not
        sizes[o.get_key_element()] = len(list(o.sweep_string_iterator())) if o.is_sweep_override() else 1
    return math.prod(sizes.values())


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


def markdown_table(rows: Sequence[dict[str, str]]) -> str:
    if not rows:
        return "_no finished jobs_\n"
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row[h] for h in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_runs_csv(path: Path, jobs: Sequence[Job], groups: Sequence[Group]) -> None:
    label = {id(j): g.label for g in groups for j in g.jobs}
    fields = [
        "job",
        "status",
        "configuration",
        "seed",
        "val_best_err1",
        "val_best_err5",
        "best_epoch",
        "test_err1",
        "test_err5",
        "epochs",
        "world_size",
        "wall_time_s",
        "error",
        "overrides",
    ]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for job in jobs:
            r = job.results or {}
            best = (r.get("val") or {}).get("best") or {}
            test = r.get("test") or {}
            row = {
                "job": job.name,
                "status": job.status,
                "configuration": label[id(job)],
                "seed": job.choices.get("seed", r.get("seed")),
                "val_best_err1": best.get("err1"),
                "val_best_err5": best.get("err5"),
                "best_epoch": best.get("epoch"),
                "test_err1": test.get("err1"),
                "test_err5": test.get("err5"),
                "epochs": r.get("epochs"),
                "world_size": r.get("world_size"),
                "wall_time_s": r.get("wall_time_s"),
                "error": r.get("error"),
                "overrides": " ".join(job.overrides),
            }
            writer.writerow(row)


def plot_curves(path: Path, groups: Sequence[Group], metric: str, title: str, target: float | None = None) -> None:
    """Per-epoch mean of ``metric`` per configuration, with a band of ± one std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for group in groups:
        curves = [[row[metric] for row in j.results.get("history", []) if metric in row] for j in group.finished]
        length = min((len(c) for c in curves), default=0)
        if length == 0:
            continue
        per_epoch = [[100 * c[e] for c in curves] for e in range(length)]
        means = [statistics.fmean(v) for v in per_epoch]
        stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in per_epoch]
        epochs = range(1, length + 1)
        (line,) = ax.plot(epochs, means, marker="o", markersize=3, label=f"{group.label} (n={len(curves)})")
        ax.fill_between(
            epochs,
            [m - s for m, s in zip(means, stds)],
            [m + s for m, s in zip(means, stds)],
            color=line.get_color(),
            alpha=0.15,
        )
    if target is not None:
        ax.axhline(100 * target, color="black", linestyle="--", linewidth=1, label=f"{100 * target:.0f}% (Fig. 1)")
    ax.set(xlabel="epoch", ylabel=f"{metric} (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_differences(path: Path, groups: Sequence[Group], baseline: Group) -> None:
    """Δ test top-1 error vs the paper's configuration, with 95% CIs and the paper's claims."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [g for g in groups if g is not baseline]
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(others) + 1.8))
    for y, group in enumerate(others):
        ci = difference_ci(group.values("err1"), baseline.values("err1"))
        if ci:
            ax.errorbar(
                ci[0],
                y,
                xerr=[[ci[0] - ci[1]], [ci[2] - ci[0]]],
                fmt="o",
                color="tab:blue",
                capsize=4,
                label="this sweep, 95% CI" if y == 0 else None,
            )
        claim = claim_for(group, baseline)
        if claim:
            ax.plot(claim.top1, y, "x", color="tab:red", markersize=9, label="paper's claim")
    ax.axvline(0, color="black", linewidth=1)
    ax.set_yticks(range(len(others)), [g.label for g in others], fontsize=8)
    ax.invert_yaxis()  # top to bottom in the table's order
    ax.set(xlabel="Δ test top-1 error vs the paper's configuration (points)", title=f"vs {baseline.label}")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(dict(zip(labels, handles)).values(), dict(zip(labels, handles)).keys(), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(sweep_dir: Path) -> dict[str, Path]:
    """Write report.md, runs.csv and the plots into ``sweep_dir``; return what was written."""
    jobs = load_jobs(sweep_dir)
    searches = load_searches(sweep_dir)
    axes, groups = group_jobs(jobs, tuned=[k for s in searches for k in s.best_params])
    baseline = baseline_of(groups)
    written = {"report": sweep_dir / "report.md", "runs": sweep_dir / "runs.csv"}
    write_runs_csv(written["runs"], jobs, groups)

    if any(g.finished for g in groups):
        written["val_curves"] = sweep_dir / "val_err1.png"
        plot_curves(written["val_curves"], groups, "val/err1", "Validation top-1 error (mean ± std over seeds)")
        if "activation" in axes:
            written["train_curves"] = sweep_dir / "train_err1.png"
            plot_curves(written["train_curves"], groups, "train/err1", "Training top-1 error", TRAIN_ERROR_TARGET)
        if baseline is not None and len(baseline.finished) > 1 and len(groups) > 1:
            written["differences"] = sweep_dir / "differences.png"
            plot_differences(written["differences"], groups, baseline)

    expected = expected_job_count(sweep_dir)
    problems = [j for j in jobs if j.status != "finished"]
    lines = [f"# Sweep report: {sweep_dir}", ""]
    lines.append(
        f"{len(jobs)} job directories"
        + (f" of {expected} jobs asked for" if expected else "")
        + f"; {sum(j.status == 'finished' for j in jobs)} finished. Axes: {', '.join(axes) or 'none'}."
    )
    lines.append(
        "Errors are test errors of each job's best checkpoint (lowest val top-1), in %; ± is the std over "
        "seeds; Δ is the difference of means to the paper's configuration with Welch's 95% CI."
    )
    if baseline is None:
        lines.append("No configuration in this sweep has all of the paper's choices, so no differences are shown.")
    lines += ["", markdown_table(summary_rows(axes, groups, baseline))]
    for key in ("val_curves", "train_curves", "differences"):
        if key in written:
            lines.append(f"![{key}]({written[key].name})")
    if searches:
        search_lines, plots = search_section(sweep_dir, searches, PAPER_CHOICES)
        lines[2:2] = [
            "Tuned sweep (hparams_search): the jobs below ran at each configuration's best settings from its "
            "own search; the search itself is summarised after them."
        ]
        lines += ["", *search_lines]
        written.update(plots)
    if problems or (expected and expected > len(jobs)):
        lines += ["", "## Failed and unfinished jobs", ""]
        lines += [
            f"- job {j.name}: **{j.status}** ({' '.join(j.overrides)}): {(j.results or {}).get('error') or ''}"
            for j in problems
        ]
        if expected and expected > len(jobs):
            lines.append(f"- {expected - len(jobs)} job(s) never started (no directory)")
    written["report"].write_text("\n".join(lines) + "\n")
    return written


def log_to_wandb(sweep_dir: Path, written: dict[str, Path], mode: str) -> None:
    """Log the table and plots as a W&B run of job type ``report`` in the sweep's group."""
    import wandb

    from hydra_plugins.alexnet_launcher.torchrun_launcher import sweep_group

    with open(written["runs"], newline="") as f:
        rows = list(csv.reader(f))
    run = wandb.init(
        project="alexnet",
        group=sweep_group(sweep_dir),
        job_type="report",
        dir=str(sweep_dir),
        mode=mode,
        name=f"report-{sweep_group(sweep_dir)}",
    )
    try:
        run.log({"runs": wandb.Table(columns=rows[0], data=rows[1:])})
        run.log({key: wandb.Image(str(path)) for key, path in written.items() if path.suffix == ".png"})
    finally:
        run.finish()
