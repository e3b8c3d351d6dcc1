"""SLURM, as a training process meets it: the warning signals before a time limit or preemption,
the job's id, and requeueing it."""

import logging
import os
import signal
import subprocess
import threading
from typing import Any

log = logging.getLogger(__name__)

# SLURM's warning before the time limit or preemption: sbatch --signal=USR1@<s> by hand, USR2 from
# submitit (hydra/launcher=slurm), whose own USR2 handler would exit mid-step. Both mean: checkpoint
# at the step boundary, requeue, exit.
SLURM_SIGNALS = tuple(getattr(signal, name) for name in ("SIGUSR1", "SIGUSR2") if hasattr(signal, name))


_noted: list[int] = []  # warnings that came while no training step could act on them


def note_slurm_signals() -> dict[int, Any]:
    """From a run's start to its end, outside training (whose resume checkpoint takes the signals
    over), make SLURM's warning a note rather than the end of the process (Python's default for
    SIGUSR1/2): one that comes while the run starts stops training at its first step boundary, with
    a checkpoint and a requeue (:func:`noted_slurm_signal`); one that comes after training, during
    the test or the pictures, is logged, and the run finishes. Returns the handlers to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    _noted.clear()
    return {signum: signal.signal(signum, _note) for signum in SLURM_SIGNALS}


def restore_signal_handlers(handlers: dict[int, Any]) -> None:
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def noted_slurm_signal() -> int | None:
    """The SLURM warning that came before training started, if one did (taken: asked once)."""
    return _noted.pop() if _noted else None


def _note(signum: int, frame: Any) -> None:
    _noted.append(signum)
    log.info(
        "Received %s outside training: training stops at its first step boundary if it has not started; "
        "after it, the run finishes",
        signal.Signals(signum).name,
    )


def slurm_job_id() -> str | None:
    """This process's SLURM job: ``<array job>_<task>`` for an array task, else the job id; None
    outside SLURM."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID") or None


def slurm_restarts() -> int:
    """How often SLURM has restarted this job (``SLURM_RESTART_COUNT``: requeued or preempted); 0 for
    its first start and outside SLURM."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)


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
