"""Where a SLURM batch job's run lives, so that the job, requeued, finds it again and resumes."""

import os
import shutil
import subprocess
from pathlib import Path

from alexnet.run.layout import RunDir
from alexnet.training.slurm import slurm_job_id, slurm_restarts


def requeued(run: RunDir) -> bool:
    """Whether this is a requeued SLURM job (``SLURM_RESTART_COUNT`` > 0: preempted, or requeued
    on SIGUSR1/SIGUSR2) whose run directory holds a resume checkpoint: a run started with ``src/train.py``
    as a batch job, or a sweep job of ``hydra/launcher=slurm``, whose directory Hydra fixes."""
    return slurm_restarts() > 0 and run.resume_checkpoint.is_file()


def record_subdir(output_dir: str) -> str | None:
    """``hydra.output_subdir`` for this process: ``.hydra``, where Hydra writes the run's record (its
    config, overrides and settings), or None where it must not. Every task of a SLURM job runs
    Hydra's job (``hydra/launcher=slurm``, ``srun python src/train.py``): only rank 0 writes, and a
    requeued job leaves the record as the run started it. Otherwise a requeued job's ranks rewrote
    the files (truncated, then written) while the others read them to resume."""
    if int(os.environ.get("SLURM_PROCID") or 0) > 0:
        return None
    if slurm_restarts() > 0 and RunDir(output_dir).config_file.is_file():
        return None
    return ".hydra"


def slurm_run_dir(argv: list[str]) -> Path | None:
    """A SLURM batch job's run directory, ``<paths.log_dir>/runs/slurm-<job id>``; None outside a
    batch job, and in interactive allocations, where several runs share a job id."""
    job = slurm_job_id()
    if not job or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    log_dir = next((a.split("=", 1)[1] for a in argv if a.startswith("paths.log_dir=")), "outputs")
    return Path(log_dir).resolve() / "runs" / f"slurm-{job}"


# -- what a job asks for (conf/hydra/launcher/slurm.yaml) -------------------------------------------
def gpus_per_node(accelerator: str, devices: int) -> int | None:
    """GPUs to ask for on each node: one per device, unless the run is on the CPU
    (``trainer.accelerator=cpu``), where asking for GPUs keeps the job from being scheduled on a
    CPU partition."""
    return None if str(accelerator) == "cpu" else int(devices)


def cpus_per_task(num_workers: int | str, tasks_per_node: int, partition: str | None = None) -> int:
    """CPUs for each task (one process per device): its loader workers and itself (8 for
    ``data.num_workers=auto``), but no more than the partition's nodes have for each of the node's
    tasks (from ``sinfo``, where the command runs on a machine with SLURM's client)."""
    wanted = 8 if num_workers == "auto" else int(num_workers) + 1
    node = _cpus_per_node(partition)
    return max(1, min(wanted, node // max(1, int(tasks_per_node)))) if node else wanted


def _cpus_per_node(partition: str | None) -> int | None:
    """The fewest CPUs of the partition's nodes (the default partition's for None), or None when
    SLURM's client cannot say."""
    if shutil.which("sinfo") is None:
        return None
    command = ["sinfo", "-h", "-o", "%c", *(["-p", partition] if partition else [])]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return None
    counts = [int(c.rstrip("+")) for c in result.stdout.split() if c.rstrip("+").isdigit()]
    return min(counts) if result.returncode == 0 and counts else None
