"""A sweep directory, read: its jobs' records, how many it asked for, its report and its W&B
dashboard.

``src/report.py`` and the sweep launchers reach a sweep's files here; the numbers, plots, markdown
and dashboard are :mod:`alexnet.analysis.sweep_stats`, ``sweep_plots``, ``sweep_report`` and
``dashboard``.
"""

import logging
import math
from pathlib import Path

from omegaconf import OmegaConf

from alexnet.analysis import dashboard
from alexnet.analysis.search import load_searches
from alexnet.analysis.sweep_report import log_to_wandb, plot_keys, tuned_keys, write_report
from alexnet.analysis.sweep_stats import Job, group_jobs, job_order
from alexnet.run.layout import JOURNAL, RunDir, sweep_group

log = logging.getLogger(__name__)


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
    """Write the sweep's report (``report.md``, ``runs.csv``, plots) from its jobs' records; unless
    ``wandb_mode`` is ``disabled``, log it to W&B and write the W&B dashboard's specifications
    (:func:`publish_dashboard` saves them). Return what was written."""
    jobs, searches = load_jobs(sweep_dir), load_searches(sweep_dir / JOURNAL)
    written = write_report(sweep_dir, jobs, expected_job_count(sweep_dir), searches)
    if wandb_mode == "disabled":
        return written
    group = sweep_group(sweep_dir)
    log_to_wandb(sweep_dir, written, wandb_mode, group)
    written.update(write_dashboard(sweep_dir, jobs, tuned_keys(searches), plot_keys(written)))
    return written


def write_dashboard(sweep_dir: Path, jobs: list[Job], tuned: list[str], plots: list[str]) -> dict[str, Path]:
    """The workspace view and the report of the sweep's W&B group, as JSON beside ``report.md``
    (and a picture of the workspace); ``plots``: the keys of the report run's images."""
    axes, _ = group_jobs(jobs, tuned)
    group, project = sweep_group(sweep_dir), _project(sweep_dir, jobs)
    markdown = (sweep_dir / "report.md").read_text()
    views = {
        dashboard.WORKSPACE_FILE: dashboard.workspace(group, axes, tuned, project),
        dashboard.REPORT_FILE: dashboard.report(group, axes, tuned, markdown, project, plots),
    }
    written = {name.removesuffix(".json"): path for name, path in dashboard.write_specs(sweep_dir, views).items()}
    written["wandb_preview"] = dashboard.preview(views[dashboard.WORKSPACE_FILE], sweep_dir / dashboard.PREVIEW_FILE)
    return written


def publish_dashboard(sweep_dir: Path, entity: str | None = None) -> list[str]:
    """Save the sweep's dashboard (written by :func:`write_dashboard`) to W&B, under ``entity``
    (default: the logged-in user's); return the URLs."""
    import wandb

    return dashboard.publish(sweep_dir, entity or wandb.Api().default_entity)


def _project(sweep_dir: Path, jobs: list[Job]) -> str:
    """The W&B project the sweep's jobs logged to (``logger.wandb.project``)."""
    for job in jobs:
        saved = RunDir(sweep_dir / job.name)
        if saved.config_file.is_file():
            return str(OmegaConf.select(saved.config(), "logger.wandb.project", default="alexnet"))
    return "alexnet"
