"""A sweep's report: ``report.md`` (the table beside the paper's claims, the plots, the search),
``runs.csv``, and the same logged to W&B.

    python src/report.py outputs/multiruns/<date>/<time>-<id>

Failed and unfinished jobs are listed, never dropped; a partial sweep still reports.
"""

import csv
from collections.abc import Sequence
from pathlib import Path

from alexnet.ablations import PAPER_CHOICES
from alexnet.analysis.search import Search, search_section
from alexnet.analysis.sweep_plots import plot_curves, plot_differences
from alexnet.analysis.sweep_stats import (
    TRAIN_ERROR_TARGET,
    Group,
    Job,
    baseline_of,
    group_jobs,
    summary_rows,
)


def tuned_keys(searches: Sequence[Search]) -> list[str]:
    """The settings a tuned sweep's search stage tuned (``optimizer.lr``, …), in the order found."""
    return list(dict.fromkeys(key for search in searches for key in search.best_params))


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


def write_report(
    sweep_dir: Path, jobs: Sequence[Job], expected: int | None = None, searches: Sequence[Search] = ()
) -> dict[str, Path]:
    """Write report.md, runs.csv and the plots into ``sweep_dir``; return what was written.

    ``expected``: the number of jobs the sweep asked for; ``searches``: a tuned sweep's studies."""
    axes, groups = group_jobs(jobs, tuned=tuned_keys(searches))
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


def plot_keys(written: dict[str, Path]) -> list[str]:
    """The report's pictures among what it wrote, by key: what its W&B run logs them as."""
    return [key for key, path in written.items() if path.suffix == ".png"]


def log_to_wandb(sweep_dir: Path, written: dict[str, Path], mode: str, group: str) -> None:
    """Log the table and plots as a W&B run of job type ``report`` in the sweep's W&B ``group``."""
    import wandb

    with open(written["runs"], newline="") as f:
        rows = list(csv.reader(f))
    run = wandb.init(
        project="alexnet",
        group=group,
        job_type="report",
        dir=str(sweep_dir),
        mode=mode,
        name=f"report-{group}",
    )
    try:
        run.log({"runs": wandb.Table(columns=rows[0], data=rows[1:])})
        run.log({key: wandb.Image(str(written[key])) for key in plot_keys(written)})
    finally:
        run.finish()
