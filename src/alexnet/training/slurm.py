"""SLURM, as a training process meets it: the warning signals before a time limit or preemption,
the job's id, and requeueing it."""

import logging
import os
import signal
import subprocess

log = logging.getLogger(__name__)

# SLURM's warning before the time limit or preemption: sbatch --signal=USR1@<s> by hand, USR2 from
# submitit (hydra/launcher=slurm), whose own USR2 handler would exit mid-step. Both mean: checkpoint
# at the step boundary, requeue, exit.
SLURM_SIGNALS = tuple(getattr(signal, name) for name in ("SIGUSR1", "SIGUSR2") if hasattr(signal, name))


def slurm_job_id() -> str | None:
    """This process's SLURM job: ``<array job>_<task>`` for an array task, else the job id; None
    outside SLURM."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID") or None


def requeue_slurm_job() -> None:
    """``scontrol requeue`` this SLURM job (an array task included); the requeued job resumes in
    the same run directory (see :func:`alexnet.run.slurm.slurm_run_dir`)."""
    job = slurm_job_id()
    if not job:
        log.info("Not a SLURM job: nothing to requeue")
        return
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if result.returncode:
        log.warning("scontrol requeue %s failed (%d): %s", job, result.returncode, result.stderr.strip())
    else:
        log.info("Requeued SLURM job %s", job)
