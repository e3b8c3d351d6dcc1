"""SLURM: the warning signals before a time limit or preemption, requeueing, and where a batch
job's run lives so that the requeued job finds it again."""

import logging
import os
import signal
import subprocess
from pathlib import Path

from alexnet.rundir import RunDir

log = logging.getLogger(__name__)

# SLURM's warning before the time limit or preemption: sbatch --signal=USR1@<s> by hand, USR2 from
# submitit (hydra/launcher=slurm), whose own USR2 handler would exit mid-step. Both mean: checkpoint
# at the step boundary, requeue, exit.
SLURM_SIGNALS = tuple(getattr(signal, name) for name in ("SIGUSR1", "SIGUSR2") if hasattr(signal, name))


def requeue_slurm_job() -> None:
    """``scontrol requeue`` this SLURM job (an array task included); the requeued job resumes in
    the same run directory (see :func:`alexnet.training.resume.resume_arguments`)."""
    job = os.environ.get("SLURM_JOB_ID")
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    if not job:
        log.info("Not a SLURM job: nothing to requeue")
        return
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if result.returncode:
        log.warning("scontrol requeue %s failed (%d): %s", job, result.returncode, result.stderr.strip())
    else:
        log.info("Requeued SLURM job %s", job)


def requeued(run_dir: Path) -> bool:
    """Whether this is a requeued SLURM job (``SLURM_RESTART_COUNT`` > 0: preempted, or requeued
    on SIGUSR1/SIGUSR2) whose run directory holds a resume checkpoint: a run started with ``src/train.py``
    as a batch job, or a sweep job of ``hydra/launcher=slurm``, whose directory Hydra fixes."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0 and RunDir(run_dir).resume_checkpoint.is_file()


def slurm_run_dir(argv: list[str]) -> Path | None:
    """A SLURM batch job's run directory, named after the job (array task) id; None outside one,
    and in interactive allocations, where several runs share a job id."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    log_dir = next((a.split("=", 1)[1] for a in argv if a.startswith("paths.log_dir=")), "outputs")
    return Path(log_dir).resolve() / "runs" / f"slurm-{job}"
