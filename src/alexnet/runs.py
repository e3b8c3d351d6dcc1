"""A run's directory: its config, overrides and checkpoints read back, and never overwritten."""

import json
import logging
import os
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def run_config(run_dir: Path) -> DictConfig:
    """The config the run was trained with (``<run dir>/.hydra/config.yaml``)."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: is {run_dir} a run directory (outputs/runs/<date>/<time>)?")
    return OmegaConf.load(path)


def run_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides the run was started with (``<run dir>/.hydra/overrides.yaml``),
    without ``resume=``: composed again, they give the run's config."""
    return [str(o) for o in OmegaConf.load(run_dir / ".hydra" / "overrides.yaml") if not str(o).startswith("resume=")]


def run_of_checkpoint(checkpoint: Path) -> Path | None:
    """The run directory a checkpoint sits in (``<run dir>/checkpoints/<file>``), or None."""
    run_dir = checkpoint.resolve().parent.parent
    return run_dir if (run_dir / ".hydra" / "config.yaml").is_file() else None


def find_checkpoint(run_dir: Path, which: str = "best") -> Path:
    """``best`` (lowest val top-1 error), ``last``, or a path to a checkpoint file."""
    checkpoints = run_dir / "checkpoints"
    if which == "last":
        candidates = [checkpoints / "last.ckpt"]
    elif which == "best":
        results = run_dir / "results.json"
        recorded = json.loads(results.read_text()).get("best_checkpoint") if results.is_file() else None
        candidates = [Path(recorded)] if recorded else []
        candidates += sorted(checkpoints.glob("best-*.ckpt"))
    else:
        candidates = [Path(which)]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"no {which!r} checkpoint in {checkpoints}; pass checkpoint=last or a path to a .ckpt file")


# -- never overwrite a run -----------------------------------------------------------------------
RUN_FILES = ("results.json", "checkpoints/*.ckpt", "csv/metrics.csv")


def run_in(directory: Path) -> str | None:
    """What marks ``directory`` as holding a run (its status from ``results.json``, else the first
    checkpoint or metrics file found), or None."""
    results = directory / "results.json"
    if results.is_file():
        try:
            return f"status {json.loads(results.read_text()).get('status')!r} in {results}"
        except (OSError, ValueError):
            return f"an unreadable {results}"
    found = next((p for pattern in RUN_FILES[1:] for p in sorted(directory.glob(pattern))), None)
    return f"{found} (no results.json: it stopped before writing one)" if found else None


def move_aside(directory: Path) -> Path:
    """Rename ``directory`` to ``<directory>.replaced-<time>``; nothing is deleted."""
    target = directory.with_name(f"{directory.name}.replaced-{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    directory.rename(target)
    return target


class OccupiedRunDirectory(SystemExit):
    """A new run (or sweep) would write into a directory that holds one already. A ``SystemExit``:
    Hydra turns an ``Exception`` raised in a callback into a warning and goes on; this one ends the
    process with its message (exit code 1) before anything is written."""


class RunDirectoryGuard(Callback):
    """A Hydra callback: a new run or sweep stops before Hydra writes anything into a directory
    that holds a run, unless ``overwrite=true`` (then the old one is moved aside, never deleted).

    Not checked: ``resume=`` (it continues the run there), a requeued SLURM job
    (``SLURM_RESTART_COUNT`` > 0: the resume path), and processes of rank > 0 (rank 0 checked).
    """

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if config.get("resume") or _continuing():
            return
        directory = Path(str(config.hydra.run.dir))
        found = run_in(directory) if directory.is_dir() else None
        if found is None:
            return
        if config.get("overwrite"):
            log.warning("overwrite=true: moved the run in %s aside to %s", directory, move_aside(directory))
            return
        raise OccupiedRunDirectory(
            f"{directory} already holds a run ({found}). Nothing was changed. Continue that run with: "
            f"python src/train.py resume={directory}; or start this one in a new directory (another "
            f"hydra.run.dir, or none for a dated one); or add overwrite=true to move the old run aside "
            f"to {directory}.replaced-<time> first"
        )

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if _continuing():
            return
        sweep = Path(str(config.hydra.sweep.dir))
        jobs = {job.name: found for job in sorted(sweep.glob("*/")) if (found := run_in(job))} if sweep.is_dir() else {}
        if not jobs:
            return
        if config.get("overwrite"):
            log.warning("overwrite=true: moved the sweep in %s aside to %s", sweep, move_aside(sweep))
            return
        listing = "; ".join(f"job {name}: {found}" for name, found in list(jobs.items())[:3])
        raise OccupiedRunDirectory(
            f"{sweep} already holds {len(jobs)} job(s) of a sweep ({listing}). Nothing was changed. Start "
            f"this sweep in a new directory (another hydra.sweep.dir, or none for a dated one), or add "
            f"overwrite=true to move the old sweep aside to {sweep}.replaced-<time> first"
        )


def _continuing() -> bool:
    """A requeued SLURM job, or a process of rank > 0 (joining a run that rank 0 checked)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0 or any(
        int(os.environ.get(key) or 0) > 0 for key in ("RANK", "LOCAL_RANK")
    )
