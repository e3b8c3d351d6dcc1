"""Where a SLURM batch job's run lives, so that the job, requeued, finds it again and resumes."""

import os
from pathlib import Path

from alexnet.run.layout import RunDir
from alexnet.training.slurm import slurm_job_id


def requeued(run: RunDir) -> bool:
    """Whether this is a requeued SLURM job (``SLURM_RESTART_COUNT`` > 0: preempted, or requeued
    on SIGUSR1/SIGUSR2) whose run directory holds a resume checkpoint: a run started with ``src/train.py``
    as a batch job, or a sweep job of ``hydra/launcher=slurm``, whose directory Hydra fixes."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0 and run.resume_checkpoint.is_file()


def slurm_run_dir(argv: list[str]) -> Path | None:
    """A SLURM batch job's run directory, ``<paths.log_dir>/runs/slurm-<job id>``; None outside a
    batch job, and in interactive allocations, where several runs share a job id."""
    job = slurm_job_id()
    if not job or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    log_dir = next((a.split("=", 1)[1] for a in argv if a.startswith("paths.log_dir=")), "outputs")
    return Path(log_dir).resolve() / "runs" / f"slurm-{job}"
