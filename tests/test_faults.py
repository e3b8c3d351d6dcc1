"""Fault injection on real processes: kills, signals, errors on one rank, crashes mid-write.

Each run is ``python src/train.py`` in a subprocess; ``planted.SignalAt`` makes the process send
itself a real signal (or raise) in the middle of a chosen training step.
"""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from alexnet.errors import ConfigError
from alexnet.run.layout import RunDir
from alexnet.run.recover import recover_config, resume_arguments
from alexnet.training.checkpoint_io import AtomicCheckpointIO
from conftest import compose_config
from helpers.runs import assert_same_run, ddp_stage, finish, results, train_cli

# Three epochs of eight steps, a resume checkpoint every three steps and at each epoch start; the
# default callbacks, loggers (W&B disabled by the environment) and pictures, as users run it.
RUN = [
    "debug=smoke",
    "trainer.accelerator=cpu",
    "data.batch_size=64",
    "model.width=0.25",
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=8",
    "callbacks.resume_checkpoint.every_n_steps=3",
    "+callbacks.signal._target_=planted.SignalAt",
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("uninterrupted")
    result = train_cli([*RUN, "hydra.run.dir=run"], cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd / "run"


@pytest.fixture(scope="module")
def killed_interrupted_preempted(tmp_path_factory) -> Path:
    """One run stopped three ways in turn, each time resumed with ``resume=``: SIGKILL in step 13,
    Ctrl-C in step 15, SIGTERM in step 19, then run to the end (the run directory). Each stop is
    checked as it happens; the tests below check the end."""
    cwd = tmp_path_factory.mktemp("stopped")
    run_dir = cwd / "run"

    killed = train_cli([*RUN, "hydra.run.dir=run"], cwd, fault=("KILL", 13))
    assert killed.returncode == -signal.SIGKILL
    assert not (run_dir / "results.json").exists()  # nothing ran after the kill
    assert torch.load(run_dir / "checkpoints" / "resume.ckpt", weights_only=True)["global_step"] == 12  # periodic

    stopped = train_cli([f"resume={run_dir}"], cwd, fault=("INT", 15))
    assert "Resuming" in stopped.stderr + stopped.stdout
    assert stopped.returncode == 128 + signal.SIGINT and "Detected KeyboardInterrupt" in stopped.stdout + stopped.stderr
    assert results(run_dir)["status"] == "interrupted"

    stopped = train_cli([f"resume={run_dir}"], cwd, fault=("TERM", 19))
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    assert results(run_dir)["status"] == "preempted" and "resume=" in results(run_dir)["error"]
    # Lightning stops at the end of the step in which the signal came: step 19 done, 20 steps.
    assert torch.load(run_dir / "checkpoints" / "resume.ckpt", weights_only=True)["global_step"] == 20

    finish(run_dir, cwd)
    return run_dir


def test_kill_ctrl_c_and_sigterm_each_resume_to_a_run_as_if_never_interrupted(
    killed_interrupted_preempted, uninterrupted
):
    assert_same_run(uninterrupted, killed_interrupted_preempted)
    assert results(killed_interrupted_preempted)["run_dir"] == str(killed_interrupted_preempted.resolve())


def test_resume_takes_new_overrides_and_keeps_the_runs_own_config(killed_interrupted_preempted):
    """Continues the finished run above: ``trainer.max_epochs=4`` trains on into a fourth epoch."""
    run_dir = killed_interrupted_preempted
    saved = (run_dir / ".hydra" / "config.yaml").read_text()
    finish(run_dir, run_dir.parent, "trainer.max_epochs=4")
    assert results(run_dir)["epochs"] == 4
    assert (run_dir / ".hydra" / "config.yaml").read_text() == saved  # the run's record stays as it started


@pytest.fixture(scope="module")
def failed_then_resumed(
    tmp_path_factory,
) -> tuple[Path, subprocess.CompletedProcess, subprocess.CompletedProcess, tuple]:
    """A run with the default loggers as a user who never logged in gets them (W&B offline), an
    error planted in step 10, then ``resume=``: (the run directory, the failed process, the resumed one)."""
    cwd = tmp_path_factory.mktemp("failed")
    offline = {"WANDB_MODE": "offline"}
    failed = train_cli([*RUN, "hydra.run.dir=run"], cwd, fault=("RAISE", 10), env=offline)
    run_dir = cwd / "run"
    state = results(run_dir), torch.load(run_dir / "checkpoints" / "resume.ckpt", weights_only=True)["global_step"]
    resumed = train_cli([f"resume={run_dir}"], cwd, env=offline)
    return run_dir, failed, resumed, state


def test_an_error_checkpoints_the_state_before_its_batch_and_says_failed(failed_then_resumed, uninterrupted):
    run_dir, failed, resumed, (failed_results, failed_step) = failed_then_resumed
    assert failed.returncode == 1 and "planted error on rank 0 at step 10" in failed.stderr
    assert failed_results["status"] == "failed" and "planted error" in failed_results["error"]
    assert failed_step == 10  # the state before the failing batch
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert_same_run(uninterrupted, run_dir)


def test_a_failed_run_closes_its_wandb_run_and_resume_continues_the_same_one(failed_then_resumed):
    """Read back from W&B's offline files: both attempts carry the run directory's one id, and the
    failed attempt was finished with exit code 1."""
    run_dir, _, resumed, _ = failed_then_resumed
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run_id = (run_dir / "wandb" / "run-id").read_text().strip()
    attempts = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(attempts) == 2 and all(a.name.endswith(f"-{run_id}") for a in attempts)  # one run, two attempts
    exit_codes = [re.findall(r"got exitcode: (\d+)", (a / "logs" / "debug.log").read_text()) for a in attempts]
    assert exit_codes == [["1"], ["0"]]  # the failed attempt was finished, and marked failed


def test_a_slurm_warning_outside_training_stops_before_it_or_is_noted_after_it(tmp_path):
    """SLURM's warning (USR1/USR2) in a batch job, where no training step can act on it: while the run
    starts (Python's default would end the process), training stops at its first step boundary with a
    checkpoint and a requeue; after training, during the test, it is logged and the run finishes. The
    requeued job resumes its own directory. (The warning mid-training, on the suite's real cluster:
    tests/test_slurm.py.)"""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    (bin_dir / "scontrol").chmod(0o755)
    # A one-task batch job, as Lightning's SLURMEnvironment detects it (and would requeue on USR1 itself).
    slurm = {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "alexnet",
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "localhost",
        "SLURM_JOB_NUM_NODES": "1",
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    run_dir = tmp_path / "outputs" / "runs" / "slurm-4242"
    early = train_cli(RUN, tmp_path, fault=("USR1", "start"), env=slurm)
    assert early.returncode == 128 + signal.SIGUSR1, early.stderr[-3000:]
    assert "Received SIGUSR1 outside training" in early.stdout + early.stderr
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    assert results(run_dir)["status"] == "preempted"
    # one process stops at the end of the step under way, here its first
    assert torch.load(run_dir / "checkpoints" / "resume.ckpt", weights_only=True)["global_step"] == 1
    saved = (run_dir / ".hydra" / "config.yaml").read_text()
    # The requeued job runs the same command; SLURM_RESTART_COUNT says it is a restart.
    again = train_cli(RUN, tmp_path, fault=("USR2", "test"), env={**slurm, "SLURM_RESTART_COUNT": "1"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert "A requeued SLURM job: resuming" in again.stderr + again.stdout
    assert "Received SIGUSR2 outside training" in again.stdout + again.stderr
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]  # nothing to requeue
    assert results(run_dir)["status"] == "finished" and results(run_dir)["epochs"] == 3
    assert [p.name for p in (tmp_path / "outputs" / "runs").iterdir()] == ["slurm-4242"]
    assert (run_dir / ".hydra" / "config.yaml").read_text() == saved


DDP = [*RUN, "trainer.devices=2", "data.batch_size=32"]


@pytest.mark.slow
def test_an_error_on_rank_0_of_two_ddp_processes_stops_both_quickly(tmp_path):
    """Rank 0 saves the state before the failed step alone: rank 1 waits in that step's collective.
    (Rank 1's error: see below.)"""
    marker = f"error-{os.getpid()}"
    failed = ddp_stage([*DDP, f"hydra.run.dir={marker}"], tmp_path, marker, ("RAISE", 4, 0))
    assert failed.returncode == 1 and "planted error on rank 0 at step 4" in failed.stderr
    assert results(tmp_path / marker)["status"] == "failed"
    assert torch.load(tmp_path / marker / "checkpoints" / "resume.ckpt", weights_only=True)["global_step"] == 4


@pytest.mark.slow
def test_faults_on_either_of_two_ddp_processes_stop_both_and_resume_exactly(tmp_path):
    """One 2-process run stopped three ways in turn, each time resumed with ``resume=``: an error on
    rank 1; SIGTERM to rank 1 only, then to rank 0 only (Lightning alone acts on rank 0's, with a
    collective inside its signal handler). It ends as one never stopped: each rank's generators and
    training-metric states are gathered into the resume checkpoint. (SIGKILL of a DDP process:
    tests/test_shards.py; of a whole node: tests/test_multinode.py.)"""
    whole = train_cli([*DDP, "hydra.run.dir=whole"], tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    marker = f"faults-{os.getpid()}"
    run_dir, resume = tmp_path / marker, [f"resume={tmp_path / marker}"]

    def step_of_checkpoint() -> int:
        return torch.load(run_dir / "checkpoints" / "resume.ckpt", weights_only=True)["global_step"]

    # Rank 0 sleeps in that step, so Lightning's process observer (a thread of rank 0, polling every
    # 5 s) sees rank 1's exit first, as it does on a loaded machine: it used to SIGKILL rank 0 (-9).
    stall = {"ALEXNET_TEST_STALL_S": "60"}
    failed = ddp_stage([*DDP, f"hydra.run.dir={marker}"], tmp_path, marker, ("RAISE", 3, 1), env=stall)
    assert failed.returncode == 1 and "planted error on rank 1 at step 3" in failed.stderr
    observer = "A DDP process exited with an error"  # rank 0's observer thread ended it, not its own error
    assert observer in failed.stdout + failed.stderr
    assert results(run_dir)["status"] == "failed"
    assert step_of_checkpoint() == 3  # the periodic one, before the failed step

    for rank, step in ((1, 9), (0, 13)):
        stopped = ddp_stage(resume, tmp_path, marker, ("TERM", step, rank))
        assert stopped.returncode == 128 + signal.SIGTERM, stopped.stdout[-2000:] + stopped.stderr[-3000:]
        assert results(run_dir)["status"] == "preempted"
        # Every rank learns of the signal at the start of the next step and stops there, before it.
        assert step_of_checkpoint() == step + 1
        assert len(torch.load(run_dir / "checkpoints" / "resume.ckpt", weights_only=True)["rank_states"]) == 2

    finish(run_dir, tmp_path)
    assert_same_run(tmp_path / "whole", run_dir)


def test_a_kill_while_a_checkpoint_is_written_leaves_the_previous_one_loadable(tmp_path):
    path = tmp_path / "resume.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)
    # A process that starts writing a new checkpoint and is SIGKILLed half-way through.
    script = f"""
import os, signal, torch
from alexnet.training.checkpoint_io import AtomicCheckpointIO
def half_then_die(obj, f, *a, **k):
    f.write(b"PK\\x03\\x04" + b"x" * 100_000)
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = half_then_die
AtomicCheckpointIO().save_checkpoint({{"global_step": 2, "w": torch.zeros(3)}}, {str(path)!r})
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL
    state = torch.load(path, weights_only=True)
    assert state["global_step"] == 1 and torch.equal(state["w"], torch.ones(3))


def test_resume_of_a_directory_that_is_not_a_run_says_what_to_pass(tmp_path):
    with pytest.raises(SystemExit, match="resume=nowhere: .*overrides.yaml not found"):
        resume_arguments(["resume=nowhere"])
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- norm=batchnorm\n- resume=old\n")
    assert resume_arguments([f"resume={tmp_path}", "trainer.max_epochs=9"]) == [
        "norm=batchnorm",
        "trainer.max_epochs=9",
        f"resume={tmp_path.resolve()}",
        f"hydra.run.dir={tmp_path.resolve()}",
        "hydra.output_subdir=null",
    ]


def test_a_resumed_run_keeps_its_own_values_where_conf_changed_since(tmp_path, caplog):
    started_with = compose_config(["norm=lrn"])
    (tmp_path / ".hydra").mkdir()
    saved = OmegaConf.masked_copy(started_with, [k for k in started_with if k != "hydra"])
    saved.optimizer.momentum = 0.8  # conf/ said 0.8 when the run started
    saved.trainer.max_epochs = 5
    OmegaConf.save(saved, tmp_path / ".hydra" / "config.yaml")

    now = compose_config(["norm=lrn", "trainer.max_epochs=7"])  # conf/ says 0.9 now; max_epochs is asked for
    recover_config(RunDir(tmp_path), now, ["trainer.max_epochs=7"])
    assert now.optimizer.momentum == 0.8 and now.trainer.max_epochs == 7
    assert caplog.messages[-1].endswith("keeping the run's own values of: optimizer.momentum")


def test_a_resumed_run_refuses_an_override_that_changes_its_network(tmp_path):
    started_with = compose_config(["norm=lrn"])
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(
        OmegaConf.masked_copy(started_with, [k for k in started_with if k != "hydra"]),
        tmp_path / ".hydra" / "config.yaml",
    )
    now = compose_config(["norm=batchnorm"])
    trained = r"\(model.norm: \{'_target_': 'alexnet.models.LocalResponseNorm'.* as trained"
    with pytest.raises(ConfigError, match=rf"norm=batchnorm would change the network of .*{trained}"):
        recover_config(RunDir(tmp_path), now, ["norm=batchnorm"])


def test_a_resume_refused_before_it_starts_leaves_the_run_as_it_was(uninterrupted):
    """A config error on ``resume=`` (here, a change to the network) is reported, and the finished
    run's record, checkpoints and metrics are untouched (Hydra's log of the command aside)."""

    def files() -> dict[str, bytes]:
        return {str(p): p.read_bytes() for p in sorted(uninterrupted.rglob("*")) if p.is_file() and p.suffix != ".log"}

    before = files()
    result = train_cli([f"resume={uninterrupted}", "norm=batchnorm"], uninterrupted.parent)
    assert result.returncode == 1 and "norm=batchnorm would change the network" in result.stderr
    assert files() == before
    assert results(uninterrupted)["status"] == "finished"
