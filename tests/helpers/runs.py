"""Training runs as users start them (``src/train.py`` in a subprocess), and what to compare."""

import json
import subprocess
import time
from pathlib import Path

import torch

from conftest import ROOT, TESTS_ON_PATH, run_script

TRAIN = str(ROOT / "src" / "train.py")


def train_cli(args: list[str], cwd: Path, fault: tuple[str, int] | None = None, env: dict | None = None, rank=0):
    extra = {**TESTS_ON_PATH, **(env or {})}
    if fault:
        extra.update(
            ALEXNET_TEST_SIGNAL=fault[0], ALEXNET_TEST_SIGNAL_STEP=str(fault[1]), ALEXNET_TEST_SIGNAL_RANK=str(rank)
        )
    return run_script([TRAIN, *args], cwd=cwd, env=extra)


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_run(a: Path, b: Path) -> None:
    """Same final weights (``resume.ckpt`` holds the state at the end), the same metrics file, the
    same results (bar times and paths)."""
    wa, wb = weights(a / "checkpoints" / "resume.ckpt"), weights(b / "checkpoints" / "resume.ckpt")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "csv" / "metrics.csv").read_text() == (b / "csv" / "metrics.csv").read_text()
    ra, rb = results(a), results(b)
    for key in ("status", "epochs", "val", "test", "history"):
        assert ra[key] == rb[key], key


def finish(run_dir: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    result = train_cli([f"resume={run_dir}", *extra], cwd)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def ddp_stage(
    args: list[str], cwd: Path, marker: str, fault: tuple[str, int, int], env: dict | None = None
) -> subprocess.CompletedProcess:
    """A 2-process run (or resume) with ``fault`` = (signal or RAISE, step, rank); it must end within
    seconds, leaving no process whose command line holds ``marker``."""
    started = time.monotonic()
    result = train_cli(args, cwd, fault=fault[:2], rank=fault[2], env=env)
    elapsed = time.monotonic() - started
    assert elapsed < 120, f"{fault} took {elapsed:.0f} s to stop"  # seconds, not the collective timeout
    time.sleep(3 if fault[0] == "KILL" else 1)  # after a kill, rank 1 loses its connection to rank 0 and exits
    leftover = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert not leftover, f"{fault}: orphan processes {leftover}"
    return result
