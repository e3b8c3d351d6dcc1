"""A finished run is never overwritten or deleted by accident: occupied directories, make clean."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from alexnet.run.guard import OccupiedRunDirectory, RunDirectoryGuard
from alexnet.run.layout import JOURNAL, RunDir
from conftest import ROOT, run_script

TRAIN = str(ROOT / "src" / "train.py")
SHORT = ["debug=smoke", "trainer.accelerator=cpu", "model.width=0.25", "data.batch_size=32"]


def digests(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_a_directory_holds_a_run_once_it_has_results_checkpoints_or_metrics(tmp_path):
    assert RunDir(tmp_path).holds_run() is None
    (tmp_path / ".hydra").mkdir()  # what Hydra writes first: not yet a run
    assert RunDir(tmp_path).holds_run() is None
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text("epoch\n")
    assert "metrics.csv (no results.json" in RunDir(tmp_path).holds_run()
    (tmp_path / "results.json").write_text(json.dumps({"status": "preempted"}))
    assert RunDir(tmp_path).holds_run().startswith("status 'preempted'")


@pytest.mark.slow
def test_a_second_run_into_a_used_directory_stops_and_overwrite_moves_the_first_aside(tmp_path):
    first = run_script([TRAIN, *SHORT, "hydra.run.dir=run"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = digests(tmp_path / "run")

    again = run_script([TRAIN, *SHORT, "hydra.run.dir=run", "seed=3"], tmp_path)
    assert again.returncode == 1
    message = again.stderr
    assert "run already holds a run (status 'finished'" in message and "Nothing was changed" in message
    assert "python src/train.py resume=run" in message and "overwrite=true" in message
    assert digests(tmp_path / "run") == before  # every file, .hydra/ and train.log included

    replaced = run_script([TRAIN, *SHORT, "hydra.run.dir=run", "seed=3", "overwrite=true"], tmp_path)
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    (aside,) = tmp_path.glob("run.replaced-*")
    assert digests(aside) == before
    assert json.loads((tmp_path / "run" / "results.json").read_text())["seed"] == 3


def test_a_sweep_into_a_used_sweep_directory_is_refused(tmp_path):
    job = tmp_path / "sweep" / "0"
    job.mkdir(parents=True)
    (job / "results.json").write_text(json.dumps({"status": "finished"}))
    before = digests(tmp_path / "sweep")
    result = run_script([TRAIN, "-m", "norm=lrn,none", *SHORT, "hydra.sweep.dir=sweep"], tmp_path)
    assert result.returncode == 1
    assert "sweep already holds 1 job(s) of a sweep (job 0: status 'finished'" in result.stderr
    assert digests(tmp_path / "sweep") == before and not (tmp_path / "sweep" / "1").exists()


def make(target: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", target, *args], cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(
    ("sweeper", "continues"),
    [
        ("hydra_plugins.alexnet_launcher.tuned_sweeper.TunedSweeper", True),
        ("hydra._internal.core_plugins.basic_sweeper.BasicSweeper", False),
    ],
)
def test_only_a_sweeper_that_continues_in_place_may_reuse_its_sweep_directory(tmp_path, sweeper, continues):
    """A tuned sweep started again on its directory continues it (its journal keeps the finished
    trials); any other sweep into a directory with a finished job is refused."""
    (tmp_path / JOURNAL).write_text("")
    job = RunDir(tmp_path / "0")
    job.path.mkdir()
    job.results_file.write_text(json.dumps({"status": "finished"}))
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "sweeper": {"_target_": sweeper}}})
    if continues:
        RunDirectoryGuard().on_multirun_start(config)
    else:
        with pytest.raises(OccupiedRunDirectory, match="already holds 1 job"):
            RunDirectoryGuard().on_multirun_start(config)


def test_make_clean_removes_caches_and_never_a_run(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path)
    for folder in ("outputs/runs/2026-01-01/10-00-00/checkpoints", ".pytest_cache", "src/alexnet/__pycache__"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "outputs/runs/2026-01-01/10-00-00/results.json").write_text("{}")
    (tmp_path / "outputs/runs/2026-01-01/10-00-00/checkpoints/last.ckpt").write_bytes(b"weights")
    runs = digests(tmp_path / "outputs")

    assert make("clean", tmp_path).returncode == 0
    assert digests(tmp_path / "outputs") == runs
    assert not (tmp_path / ".pytest_cache").exists() and not (tmp_path / "src/alexnet/__pycache__").exists()

    refused = make("clean-runs", tmp_path)  # no terminal to ask on, no CONFIRM=1: nothing deleted
    assert refused.returncode != 0 and "This deletes 1 run(s)" in refused.stdout and "Nothing deleted" in refused.stdout
    assert digests(tmp_path / "outputs") == runs
    confirmed = make("clean-runs", tmp_path, "CONFIRM=1")
    assert confirmed.returncode == 0 and not (tmp_path / "outputs" / "runs").exists()
