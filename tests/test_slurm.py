"""SLURM for real: the README's sweep through ``hydra/launcher=slurm`` (submitit) and its shard-reading
``srun`` job, submitted to the one-node cluster that ``scripts/local_slurm.py`` starts for the suite
(``conftest.py``; skipped where it cannot, failed under ``ALEXNET_REQUIRE_CLUSTER=1``)."""

import os
import re
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from alexnet.run.sweep import report_sweep
from conftest import ROOT, TESTS_ON_PATH
from helpers.imagenet import prepare_shards, write_archives
from helpers.readme import readme_command
from helpers.runs import assert_same_run, results
from helpers.slurm import job_states, wait_for_jobs

# The README's SLURM sweep for this machine: the jobs' faults are the sweep, 2 CPU tasks a job
SWAP = {
    "python": sys.executable,
    "src/train.py": str(ROOT / "src" / "train.py"),
    "experiment=ablation_norm_pool": None,
    "scale=full": None,
    "trainer.devices=4": "trainer.devices=2",
    "hydra.launcher.partition=gpu": "hydra.launcher.partition=debug",
}
SHORT = ["debug=smoke", "model.width=0.25", "trainer.accelerator=cpu"]

# The README's shard-reading srun job on this machine: generated shards read through litdata's object-storage
# path (local:, its stand-in for s3://) with a cache, 1 node of 2 CPU tasks with a loader worker each
SRUN_SWAP = {
    "python": sys.executable,
    "src/train.py": str(ROOT / "src" / "train.py"),
    "data.shards=s3://bucket/imagenet/shards": "data.shards=local:{root}/shards",
    "data.cache_dir=/local/scratch/alexnet-cache": "data.cache_dir={run}-cache",
    "data.num_workers=10": "data.num_workers=1",
    "trainer.devices=8": "trainer.devices=2",
    "trainer.num_nodes=4": "trainer.num_nodes=1",
    "hydra.run.dir=outputs/runs/imagenet-4x8": "hydra.run.dir={run}",
}
# 3 classes of 40-pixel squares (48 training images): 2 epochs of 6 steps of a narrow CIFAR-stem network
SRUN_SHORT = (
    "data.root={root} data.num_classes=3 data.resize=40 data.batch_size=8 model=cifar model.width=0.125 "
    "trainer.max_epochs=2 trainer.accelerator=cpu callbacks.resume_checkpoint.every_n_steps=3"
).split()


def srun_job(root: Path, run: Path) -> list[str]:
    """The README's srun job's command (``python src/train.py ...``), for this machine, run in ``run``."""
    args = readme_command("srun python", SRUN_SWAP)[1:] + SRUN_SHORT  # without srun: the batch job adds it
    return [arg.format(root=root, run=run) for arg in args]


def wait_for(path: Path, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
            out, err = process.communicate(timeout=60)
            pytest.fail(f"{path} did not appear in {timeout:.0f} s:\n{out[-2000:]}\n{err[-3000:]}")
        time.sleep(0.2)


def sweep_on_slurm(sweep: Path, overrides: list[str], env: dict[str, str]) -> subprocess.Popen:
    """The README's sweep command (shortened, 2 CPU tasks a job, ``overrides`` as its sweep),
    started in the background."""
    args = [
        *readme_command("hydra/launcher=slurm", SWAP),
        *SHORT,
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=5",
        *overrides,
        f"hydra.sweep.dir={sweep}",
        f"paths.log_dir={sweep.parent / 'outputs'}",
    ]
    env = {**os.environ, **env, **TESTS_ON_PATH, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(args, cwd=sweep.parent, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def job_logs(sweep: Path, num: int) -> str:
    """Sweep job ``num``'s own logs (its run's ``train.log``, each task's output from submitit's
    folder), for the report of a failed test: CI keeps nothing else."""
    files = [sweep / str(num) / "train.log", *sorted((sweep / ".submitit").glob(f"*_{num}/*_log.*"))]
    return "\n".join(f"== {f}\n{f.read_text(errors='replace')[-6000:]}" for f in files if f.is_file())


@contextmanager
def logs_on_failure(sweep: Path, env: dict[str, str], *nums: int):
    """On a failure inside, print sweep jobs ``nums``' logs, what SLURM says of them, and the tail of
    its daemons' logs (pytest shows them with the failure)."""
    try:
        yield
    except BaseException:
        for num in nums:
            print(job_logs(sweep, num))
            job = [p.name for p in (sweep / ".submitit").glob(f"*_{num}")]
            shown = subprocess.run(["scontrol", "show", "job", *job], env={**os.environ, **env}, capture_output=True)
            print(f"== scontrol show job {job}\n{shown.stdout.decode(errors='replace')}")
        for daemon in sorted(Path(env["SLURM_CONF"]).parent.glob("log/*.log")):
            print(f"== {daemon}\n{daemon.read_text(errors='replace')[-8000:]}")
        raise


def job_of(sweep: Path, num: int) -> str:
    """The SLURM id of sweep job ``num`` (an array task: ``<array job>_<num>``), from submitit's folder."""
    (job,) = [p.name for p in (sweep / ".submitit").glob(f"*_{num}")]
    return job


@pytest.mark.slow
def test_a_sweep_on_slurm_requeues_a_warned_job_records_a_failed_and_a_cancelled_one(slurm, tmp_path):
    """One job array of four 2-task jobs, each with a fault planted at step 3 of 10:

    0. waits there and is ``scancel``led (SIGTERM, then KILL): ``preempted``, with its checkpoint;
       the launcher, which collects the jobs' results in order, gives up at once, naming it;
    1. waits there for SLURM's warning, USR2 (what the launcher asks SLURM to send before a time
       limit), sent with ``scancel --signal=USR2`` mid-epoch: it checkpoints, requeues itself once
       and resumes as ``SLURM_RESTART_COUNT`` 1 (its record, ``.hydra/``, as it started), ending
       bit-equal to
    2. the same run, uninterrupted;
    3. raises an error: the job ends, ``failed`` with the error in ``results.json``.

    The report lists them all; nothing waits forever."""
    sweep = tmp_path / "sweep"
    started = time.monotonic()
    faults = ["+callbacks.fault._target_=planted.FaultAt", "+callbacks.fault.kind=pause,pause,none,raise"]
    sweeping = sweep_on_slurm(sweep, faults, slurm)
    with logs_on_failure(sweep, slurm, 0, 1):
        wait_for(sweep / "1" / "paused", sweeping, timeout=150)
        warned = job_of(sweep, 1)
        record = {f.name: f.stat().st_mtime_ns for f in (sweep / "1" / ".hydra").iterdir()}
        signalled = subprocess.run(
            ["scancel", "--signal=USR2", warned], env={**os.environ, **slurm}, capture_output=True, text=True
        )
        assert signalled.returncode == 0, signalled.stderr
        signalled_at = time.monotonic()
        wait_for(sweep / "0" / "paused", sweeping, timeout=150)
        cancelled = job_of(sweep, 0)
        assert subprocess.run(["scancel", cancelled], env={**os.environ, **slurm}).returncode == 0
        try:
            out, err = sweeping.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            sweeping.kill()
            out, err = sweeping.communicate()
            pytest.fail(
                f"the sweep did not return in 300 s: {job_states([warned], slurm)}\n{out[-2000:]}\n{err[-3000:]}"
            )
        assert sweeping.returncode != 0 and f"UncompletedJobError: Job {cancelled} " in err, out[-2000:] + err[-3000:]
        jobs = [job_of(sweep, n) for n in range(4)]
        assert len({job.split("_")[0] for job in jobs}) == 1  # one job array, tasks 0 to 3
        states = wait_for_jobs(jobs, slurm, timeout=180)  # the others go on without the launcher
        # submitit ends a job whose function raised as COMPLETED (the error is its pickled result)
        assert [states[j] for j in jobs] == ["CANCELLED", "COMPLETED", "COMPLETED", "COMPLETED"], states

        stopped, interrupted, uninterrupted, failed = (results(sweep / str(n)) for n in range(4))
        assert interrupted["status"] == uninterrupted["status"] == "finished"
        assert interrupted["cluster"] == {"environment": "SLURMEnvironment", "slurm_job": warned, "slurm_restarts": 1}
        assert uninterrupted["cluster"]["slurm_restarts"] == 0 and interrupted["world_size"] == 2
        log = (sweep / "1" / "train.log").read_text()
        assert "Received SIGUSR2: checkpointing at the end of this step" in log
        assert f"Requeued SLURM job {warned}" in log
        assert log.count("Requeued SLURM job") == 1 and "A requeued SLURM job: resuming its run" in log
        assert_same_run(sweep / "1", sweep / "2")  # bit-equal weights, the same metrics file and results
        # The run's record (.hydra/) as the job started: its ranks did not rewrite it while resuming
        assert {f.name: f.stat().st_mtime_ns for f in (sweep / "1" / ".hydra").iterdir()} == record

        assert failed["status"] == "failed" and "planted error at step 3" in failed["error"]
        assert stopped["status"] == "preempted" and f"resume={sweep / '0'}" in stopped["error"]
        assert (sweep / "0" / "checkpoints" / "resume.ckpt").is_file()  # where a resume= continues
        report_sweep(sweep)
        text = (sweep / "report.md").read_text()
        assert "failed" in text and "preempted" in text

    stamps = [
        datetime.strptime(re.search(rf"^\[([^\]]+)\].*{what}", log, re.M).group(1), "%Y-%m-%d %H:%M:%S,%f")
        for what in ("Received SIGUSR2", "Requeued SLURM job", "A requeued SLURM job")
    ]
    print(
        f"job {warned}: USR2 sent {signalled_at - started:.1f} s after submitting; requeued "
        f"{(stamps[1] - stamps[0]).total_seconds():.1f} s after the signal, resuming "
        f"{(stamps[2] - stamps[1]).total_seconds():.1f} s after that; states {states}"
    )


@pytest.mark.slow
def test_the_readmes_srun_job_warned_by_its_time_limit_requeues_and_resumes_exactly(slurm, tmp_path):
    """The README's shard-reading ``srun`` job as a batch job with a real 1-minute time limit and
    SLURM's warning (USR1) 1 s before it; a planted pause at step 3 holds the first attempt until the
    warning comes. It checkpoints, requeues itself, resumes as ``SLURM_RESTART_COUNT`` 1 (or more, if
    the next warning comes before it finishes) and ends with the weights, metrics file and results of
    the same run uninterrupted."""
    root, run = tmp_path / "imagenet", tmp_path / "imagenet-1x2"
    write_archives(tmp_path / "archives", train_per_class=16, val_labels=(1, 2, 3) * 4)
    prepare_shards(tmp_path / "archives", root, side=40)
    pause = ["+callbacks.fault._target_=planted.FaultAt", "+callbacks.fault.kind=pause", "+callbacks.fault.seconds=120"]
    # A real time limit: SLURM sends the warning at its periodic check (every 30 s) once the time
    # left is under the warning's delay plus 30 s, so 29 to 59 s after the job starts here.
    limits = ["--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--time=1", "--signal=USR1@1"]
    wrap = shlex.join(["srun", *srun_job(root, run), *pause])
    env = {**os.environ, **slurm, **TESTS_ON_PATH, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline"}
    submitted = subprocess.run(
        ["sbatch", "--parsable", *limits, f"--output={run}.out", f"--wrap={wrap}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip()
    # The same run uninterrupted, meanwhile: once the job idles at its pause until the warning comes
    # (started earlier, it could slow the job's start past the warning)
    deadline = time.monotonic() + 120
    while not (run / "paused").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    whole = subprocess.Popen(
        srun_job(root, tmp_path / "uninterrupted"),
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline"},
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "uninterrupted.err", "w"),  # a file: a full pipe would stall the run
    )
    states = wait_for_jobs([job], slurm, timeout=240)
    output = Path(f"{run}.out").read_text() if Path(f"{run}.out").is_file() else ""
    assert states[job] == "COMPLETED", f"job {job}: {states[job]}\n{output[-3000:]}"
    record = results(run)
    assert record["status"] == "finished" and record["world_size"] == 2, record.get("error")
    assert record["cluster"]["environment"] == "SLURMEnvironment" and record["cluster"]["slurm_job"] == job
    assert record["cluster"]["slurm_restarts"] >= 1
    log = (run / "train.log").read_text()
    assert "Received SIGUSR1: checkpointing at the end of this step" in log and f"Requeued SLURM job {job}" in log
    assert "A requeued SLURM job: resuming its run" in log
    assert any(Path(f"{run}-cache").rglob("*.bin"))  # read through the cache
    assert whole.wait(timeout=300) == 0, (tmp_path / "uninterrupted.err").read_text()[-3000:]
    assert_same_run(tmp_path / "uninterrupted", run)
    stamps = [
        re.search(rf"^\[([^\]]+)\].*{what}", log, re.M).group(1)
        for what in ("Received SIGUSR1", "Requeued SLURM job", "A requeued SLURM job")
    ]
    print(f"job {job}: {states[job]} after {record['cluster']['slurm_restarts']} restart(s); {stamps}")
