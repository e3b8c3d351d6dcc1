"""A sweep directory, read: its jobs' records, how many it asked for, and its report.

``src/report.py`` and the sweep launchers reach a sweep's files here; the numbers, plots and
markdown are :mod:`alexnet.analysis.sweep_stats`, ``sweep_plots`` and ``sweep_report``.
"""

import math
from pathlib import Path

from omegaconf import OmegaConf

from alexnet.analysis.search import load_searches
from alexnet.analysis.sweep_report import log_to_wandb, write_report
from alexnet.analysis.sweep_stats import Job, job_order
from alexnet.run.layout import JOURNAL, RunDir, sweep_group


def load_jobs(sweep_dir: Path) -> list[Job]:
    """Every job directory of a sweep (a folder holding ``.hydra/overrides.yaml``), in job order."""
    runs = [RunDir(job_dir) for job_dir in sweep_dir.glob("*/") if RunDir(job_dir).overrides_file.is_file()]
    # .hydra/overrides.yaml holds the job's overrides as given, resume= included
    jobs = [Job(run.path.name, list(OmegaConf.load(run.overrides_file)), run.results()) for run in runs]
    return sorted(jobs, key=job_order)


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


def report_sweep(sweep_dir: Path, wandb_mode: str = "disabled") -> dict[str, Path]:
    """Write the sweep's report (``report.md``, ``runs.csv``, plots) from its jobs' records, and log
    it to W&B unless ``wandb_mode`` is ``disabled``; return what was written."""
    searches = load_searches(sweep_dir / JOURNAL)
    written = write_report(sweep_dir, load_jobs(sweep_dir), expected_job_count(sweep_dir), searches)
    if wandb_mode != "disabled":
        log_to_wandb(sweep_dir, written, wandb_mode, sweep_group(sweep_dir))
    return written
