"""The rule that a run is never overwritten: a Hydra callback that stops a new run or sweep before
Hydra writes into a directory that holds one (``conf/hydra/default.yaml`` installs it)."""

import logging
import os

from hydra.experimental.callback import Callback
from hydra.utils import get_class
from omegaconf import DictConfig

from alexnet.run.layout import JOURNAL, RunDir
from alexnet.training.slurm import slurm_restarts

log = logging.getLogger(__name__)


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
        run = RunDir(str(config.hydra.run.dir))
        found = run.holds_run() if run.path.is_dir() else None
        if found is None:
            return
        if config.get("overwrite"):
            log.warning("overwrite=true: moved the run in %s aside to %s", run, run.move_aside())
            return
        raise OccupiedRunDirectory(
            f"{run} already holds a run ({found}). Nothing was changed. Continue that run with: "
            f"python src/train.py resume={run}; or start this one in a new directory (another "
            f"hydra.run.dir, or none for a dated one); or add overwrite=true to move the old run aside "
            f"to {run}.replaced-<time> first"
        )

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if _continuing():
            return
        sweep = RunDir(str(config.hydra.sweep.dir))
        if (sweep.path / JOURNAL).is_file() and _continues_in_place(config.hydra.sweeper):
            log.info("Continuing the tuned sweep in %s: its studies, finished trials and jobs are kept", sweep)
            return
        jobs = {}
        for job in sorted(sweep.path.glob("*/")) if sweep.path.is_dir() else []:
            found = RunDir(job).holds_run()
            if found:
                jobs[job.name] = found
        if not jobs:
            return
        if config.get("overwrite"):
            log.warning("overwrite=true: moved the sweep in %s aside to %s", sweep, sweep.move_aside())
            return
        listing = "; ".join(f"job {name}: {found}" for name, found in list(jobs.items())[:3])
        raise OccupiedRunDirectory(
            f"{sweep} already holds {len(jobs)} job(s) of a sweep ({listing}). Nothing was changed. Start "
            f"this sweep in a new directory (another hydra.sweep.dir, or none for a dated one), or add "
            f"overwrite=true to move the old sweep aside to {sweep}.replaced-<time> first"
        )


def _continues_in_place(sweeper: DictConfig) -> bool:
    """Whether the configured sweeper continues a sweep in its own directory (its class says so:
    ``continues_in_place``, as the tuned sweeper does with its journal of finished trials)."""
    target = sweeper.get("_target_")
    return bool(target) and getattr(get_class(str(target)), "continues_in_place", False)


def _continuing() -> bool:
    """A requeued SLURM job, or a process of rank > 0 (joining a run that rank 0 checked)."""
    return slurm_restarts() > 0 or any(int(os.environ.get(key) or 0) > 0 for key in ("RANK", "LOCAL_RANK"))
