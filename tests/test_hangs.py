"""A stuck multi-process run ends instead of waiting forever: at the collective timeout, or on a signal.

The timeout also bounds the start (the ranks meeting), so it is kept well above a process start-up.

``planted.MismatchedCollectivesAt`` puts rank 0 in an all-reduce and rank 1 in an all-gather at a
chosen step: neither can return until its collective times out.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch.distributed as dist

from alexnet.training.hangs import failed_collective
from conftest import ROOT, TESTS_ON_PATH, run_script

TRAIN = str(ROOT / "src" / "train.py")
# The design command on 2 CPU processes, default callbacks and loggers, shortened.
HUNG = [
    "norm=lrn",
    "pool=overlap",
    "trainer.devices=2",
    "trainer.accelerator=cpu",
    "debug=smoke",
    "data.batch_size=32",
    "model.width=0.25",
    "+callbacks.hang._target_=planted.MismatchedCollectivesAt",
]
ENV = {**TESTS_ON_PATH, "ALEXNET_TEST_HANG_STEP": "1"}


def leftovers(marker: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()


def test_a_collective_error_is_named_with_its_caller():
    try:
        dist.all_gather_object([None], "x")  # no process group: fails inside torch.distributed
    except (RuntimeError, ValueError) as err:
        where = failed_collective(err)
    assert where is not None and where.startswith("all_gather_object, called at ")
    assert "test_hangs.py" in where and "(test_a_collective_error_is_named_with_its_caller)" in where
    assert failed_collective(ValueError("elsewhere")) is None


@pytest.mark.slow
def test_ranks_in_mismatched_collectives_fail_at_the_timeout_each_with_its_stack(tmp_path):
    marker = f"hung-{os.getpid()}-timeout"
    started = time.monotonic()
    result = run_script([TRAIN, *HUNG, "collective_timeout_s=20", f"hydra.run.dir={marker}"], tmp_path, env=ENV)
    elapsed = time.monotonic() - started
    log = result.stdout + result.stderr
    assert result.returncode == 1, log[-3000:]
    assert elapsed < 90, f"took {elapsed:.0f} s"  # start-up and 20 s, not the default 600
    for rank, collective in ((0, "all_reduce"), (1, "all_gather")):
        assert f"collective {collective}, called at " in log and f"failed on rank {rank}" in log
        assert "planted.py" in log and "Traceback" in log
    results = json.loads((tmp_path / marker / "results.json").read_text())
    assert results["status"] == "failed" and results["error"].startswith("collective all_")
    assert "(on_train_batch_start)" in results["error"]
    # The first rank to wait 20 s times out; the other may see its peer gone first (the one written last
    # to results.json then says "remote worker crashing"), so the timeout is looked for in the log.
    assert "Timed out" in log
    time.sleep(1)
    assert not leftovers(marker)


@pytest.mark.slow
def test_sigterm_to_a_run_stuck_in_a_collective_exits_within_seconds(tmp_path):
    marker = f"hung-{os.getpid()}-sigterm"
    run_dir = tmp_path / marker
    process = subprocess.Popen(
        [sys.executable, TRAIN, *HUNG, f"hydra.run.dir={marker}"],  # the default timeout: 10 minutes
        cwd=tmp_path,
        env={**os.environ, **ENV, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not ((run_dir / "hung-0").exists() and (run_dir / "hung-1").exists()):
        assert time.monotonic() < deadline and process.poll() is None, "the run never reached the planted hang"
        time.sleep(0.5)
    time.sleep(1)  # both inside their collectives
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    log, _ = process.communicate(timeout=60)
    assert time.monotonic() - sent < 15, "SIGTERM took too long"
    assert process.returncode == 128 + signal.SIGTERM, log[-3000:]
    assert "SIGTERM arrived, but the main thread has been blocked in collective all_reduce" in log
    assert "Thread MainThread:" in log and "Thread signal-watchdog:" in log  # every thread's stack
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "preempted" and "blocked in collective all_reduce" in results["error"]
    assert f"resume={run_dir}" in results["error"]
    time.sleep(1)
    assert not leftovers(marker), "rank 1 outlived rank 0"
