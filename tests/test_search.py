"""hparams_search=per_config: each configuration tuned by its own Optuna study, then seeds at its best.

Sweeps run as users start them (``python src/train.py -m … hparams_search=per_config``), at smoke
scale; the studies are read back from the sweep's journal with Optuna itself.
"""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf

from alexnet.run.layout import JOURNAL, RunDir
from alexnet.run.results import results_record
from alexnet.run.sweep import report_sweep
from conftest import ROOT, as_from_a_shell, run_script

SMOKE = ["debug=smoke", "model.width=0.25", "trainer.accelerator=cpu"]
STATES = optuna.trial.TrialState
LR_SPACE = {"optimizer.lr": {"low": 1.0e-3, "high": 0.1, "log": True}}


def journal(sweep: Path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep / JOURNAL)))


def trials(sweep: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=journal(sweep)).get_trials()


def job_overrides(job: Path) -> list[str]:
    return list(OmegaConf.load(RunDir(job).overrides_file))


@pytest.fixture(scope="module")
def killed_and_continued(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """A two-configuration tuned sweep, SIGKILLed (with its running trial) once the second
    configuration's first trial has started, then started again with the same command; returns the
    sweep and the first configuration's trial results before the kill (path -> mtime)."""
    root = tmp_path_factory.mktemp("search")
    sweep = root / "sweep"
    args = ["src/train.py", "-m", "norm=lrn,none", "pool=overlap", "seed=0", "hparams_search=per_config"]
    args += ["hydra.sweeper.n_trials=2", *SMOKE, f"hydra.sweep.dir={sweep}", f"paths.log_dir={root}"]
    first = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=as_from_a_shell,
    )
    started = sweep / "search" / "norm-none" / "0"
    deadline = time.monotonic() + 240
    while not started.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the sweep and the trial it runs
    first.wait()
    assert started.exists(), "the sweep did not reach the second configuration"
    before = {str(p): p.stat().st_mtime for p in (sweep / "search" / "norm-lrn").glob("*/results.json")}
    result = run_script(args, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep, before


@pytest.mark.slow
def test_a_killed_search_continues_without_repeating_finished_trials(killed_and_continued):
    sweep, before = killed_and_continued
    lrn = trials(sweep, "norm=lrn")
    assert len(lrn) == 2 and all(t.state in (STATES.COMPLETE, STATES.PRUNED) for t in lrn)
    assert lrn[0].user_attrs.get("untuned") and lrn[0].params["optimizer.lr"] == 0.01  # the defaults first
    after = {str(p): p.stat().st_mtime for p in (sweep / "search" / "norm-lrn").glob("*/results.json")}
    assert after == before and len(before) == 2  # its finished trials were not run again
    none = trials(sweep, "norm=none")
    assert none[0].state == STATES.FAIL  # running when the sweep was killed
    assert [t.state in (STATES.COMPLETE, STATES.PRUNED) for t in none[1:]] == [True, True]
    assert none[1].user_attrs.get("untuned")  # the killed untuned trial was asked again


@pytest.mark.slow
def test_the_seeds_train_at_each_configurations_lowest_error_settings(killed_and_continued):
    """The settings each seed job ran at are those of its configuration's finished trial with the
    lowest best val top-1 error, read from the trials' own results.json, not from Optuna."""
    sweep, _ = killed_and_continued
    searched = ("optimizer.lr=", "optimizer.weight_decay=", "dropout.p=")
    for job, configuration in (("0", "norm-lrn"), ("1", "norm-none")):
        trials_run = [RunDir(p.parent).results() for p in (sweep / "search" / configuration).glob("*/results.json")]
        finished = [r for r in trials_run if r["status"] == "finished"]
        lowest = min(r["val"]["best"]["err1"] for r in finished)
        chosen = [sorted(o for o in r["overrides"] if o.startswith(searched)) for r in finished]
        best = [c for c, r in zip(chosen, finished) if r["val"]["best"]["err1"] == lowest]
        results = RunDir(sweep / job).results()
        assert results["status"] == "finished", results["error"]
        overrides = job_overrides(sweep / job)
        assert configuration.replace("-", "=") in overrides and "seed=0" in overrides
        assert sorted(o for o in overrides if o.startswith(searched)) in best, (overrides, finished)
    assert not (sweep / "2").exists()  # one seed per configuration


@pytest.mark.slow
def test_the_report_shows_the_search_beside_the_seed_results(killed_and_continued):
    sweep, _ = killed_and_continued
    written = report_sweep(sweep)
    text = (sweep / "report.md").read_text()
    assert "## Search: each configuration at its own best settings" in text
    counts = {
        m[0]: (int(m[1]) + int(m[2]), int(m[3]))
        for m in re.findall(r"\| (norm=\w+)[^|]* \| (\d) / (\d) / (\d) \|", text)
    }
    assert counts == {"norm=lrn": (2, 0), "norm=none": (2, 1)}  # complete + pruned, failed (the killed one)
    assert "chosen optimizer.lr" in text and "untuned val top-1 %" in text and "Δ tuned" in text
    assert "| norm=lrn (paper) | 1 |" in text  # the seed results, grouped by the axis, not by the tuned keys
    plots = [p for key, p in written.items() if key.startswith(("history:", "importances:"))]
    assert {p.name for p in plots} >= {"history_norm-lrn.png", "history_norm-none.png"}
    assert all(p.is_file() and p.stat().st_size > 1000 for p in plots)


@pytest.mark.slow
def test_a_two_process_trial_behind_the_study_is_one_ddp_job_pruned_and_recorded_as_pruned(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    study = optuna.create_study(study_name="all", storage=journal(sweep), direction="minimize")
    lr = optuna.distributions.FloatDistribution(1e-3, 0.1, log=True)
    # A trial at 0% error from the first epoch: the next one is behind the median at epoch 0.
    study.add_trial(
        optuna.trial.create_trial(
            params={"optimizer.lr": 0.02}, distributions={"optimizer.lr": lr}, value=0.0, intermediate_values={0: 0.0}
        )
    )
    args = ["src/train.py", "-m", "hparams_search=per_config", "hydra.sweeper.n_trials=2", "hydra.sweeper.seeds=[0]"]
    args += ["hydra.sweeper.n_startup_trials=1", "hydra.sweeper.n_warmup_steps=0", "trainer.devices=2", *SMOKE]
    result = run_script([*args, f"hydra.sweep.dir={sweep}", f"paths.log_dir={tmp_path}"], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    pruned = trials(sweep, "all")[1]
    assert pruned.state == STATES.PRUNED and list(pruned.intermediate_values) == [0]
    (trial_dir,) = (sweep / "search" / "all").iterdir()  # one directory for the 2-process trial
    results = json.loads((trial_dir / "results.json").read_text())
    assert (results["status"], results["world_size"]) == ("pruned", 2)
    assert not (tmp_path / "runs").exists()  # no rank made a run of its own
    assert "optimizer.lr=0.02" in job_overrides(sweep / "0")  # the seed ran at the recorded best


class ErrorFromRate:
    """A stand-in launcher: a trial at ``optimizer.lr=x`` "trains" to a best val top-1 error of
    ``|log10(x) + 1.5|`` (lowest at x = 0.03) and records it in its ``results.json`` as a run would."""

    def __init__(self, sweep: Path) -> None:
        self.sweep, self.launched = sweep, []

    def launch(self, job_overrides, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        (overrides,) = job_overrides
        self.launched.append(list(overrides))
        given = dict(o.split("=", 1) for o in overrides)
        lr = float(given["optimizer.lr"])
        err1 = abs(math.log10(lr) + 1.5)
        run = RunDir(self.sweep / given.get("hydra.sweep.subdir", str(initial_job_idx)))
        history = [{"epoch": 0, "val/err1": err1, "val/err5": err1 / 2}]
        run.write_results(results_record("finished", run, overrides=overrides, history=history))
        ret = JobReturn(overrides=list(overrides), working_dir=str(run.path), task_name="train")
        ret.status, ret.return_value = JobStatus.COMPLETED, err1
        return [ret]


def test_the_search_minimises_and_the_seeds_train_at_the_lowest_error_trial(tmp_path):
    """The real search and seed stages over a launcher whose trials' errors are known: the seeds must
    run at the settings of the trial with the lowest recorded validation error, not the highest."""
    from hydra_plugins.alexnet_launcher.tuned_sweeper import TunedSweeper

    sweeper = TunedSweeper(n_trials=5, n_startup_trials=3, pruner="none", search_space=OmegaConf.create(LR_SPACE))
    sweeper.config = OmegaConf.create({"seed": 0, "hydra": {"sweep": {"dir": str(tmp_path)}}})
    sweeper.launcher = ErrorFromRate(tmp_path)
    sweeper._defaults = lambda configuration, fixed: {"optimizer.lr": 0.001}  # the untuned trial: err1 1.5
    best = sweeper._search(optuna, 0, ["norm=lrn"], [])
    finished = [RunDir(p.parent).results() for p in (tmp_path / "search").glob("*/*/results.json")]
    assert len(finished) == 5
    errors = {o: r["val"]["best"]["err1"] for r in finished for o in r["overrides"] if o.startswith("optimizer.lr=")}
    assert len(set(errors.values())) == 5  # five different errors: the lowest is one trial's alone
    lowest = min(errors, key=errors.get)
    assert best == {"optimizer.lr": float(lowest.split("=", 1)[1])}
    sweeper._seeds(tmp_path, [["norm=lrn"]], [best], [], [0, 1])
    seeds = sweeper.launcher.launched[-2:]
    assert seeds == [["norm=lrn", lowest, "seed=0"], ["norm=lrn", lowest, "seed=1"]]
    study = optuna.load_study(study_name="norm=lrn", storage=journal(tmp_path))
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
