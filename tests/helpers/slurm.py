"""Waiting for jobs on the suite's SLURM cluster (``conftest.py``'s ``slurm`` fixture)."""

import os
import subprocess
import time

ACTIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED")


def job_states(jobs: list[str], env: dict[str, str]) -> dict[str, str]:
    """Each job's state as ``squeue -t all`` has it (finished jobs stay listed for ``MinJobAge``)."""
    listing = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", ",".join(jobs), "-o", "%i %T"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()
    return dict(zip(listing[::2], listing[1::2]))


def wait_for_jobs(jobs: list[str], env: dict[str, str], timeout: float) -> dict[str, str]:
    """Each job's final state (COMPLETED, FAILED, CANCELLED, TIMEOUT...), once none is pending or
    running; an AssertionError with the states after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        states = job_states(jobs, env)
        if not [job for job in jobs if states.get(job, "PENDING") in ACTIVE]:
            return states
        assert time.monotonic() < deadline, f"SLURM jobs still active after {timeout:.0f} s: {states}"
        time.sleep(0.5)
