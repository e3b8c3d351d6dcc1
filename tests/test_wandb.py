"""What a run sends to W&B, read back from the offline files of real runs (``src/train.py``, a
resume, ``src/eval.py``), as a user without a W&B login gets them: the dashboard's raw material."""

import json
from pathlib import Path

import pytest

from alexnet.ablations import axis_name
from alexnet.run.tracking import axes, job_type
from conftest import ROOT, compose_config, run_script
from helpers.wandb_files import offline_runs

OFFLINE = {"WANDB_MODE": "offline"}
SHORT = ["debug=smoke", "trainer.accelerator=cpu", "data.batch_size=64", "model.width=0.25", "norm=batchnorm"]


@pytest.fixture(scope="module")
def trained_resumed_evaluated(tmp_path_factory) -> tuple[Path, dict]:
    """A 2-epoch run, resumed for a third epoch, then its best checkpoint evaluated."""
    root = tmp_path_factory.mktemp("wandb")
    run_dir = root / "run"
    first = run_script(["src/train.py", *SHORT, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}"], ROOT, OFFLINE)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_script(["src/train.py", f"resume={run_dir}", "trainer.max_epochs=3"], ROOT, OFFLINE)
    assert again.returncode == 0, again.stderr[-3000:]
    best = json.loads((run_dir / "results.json").read_text())["best_checkpoint"]
    evaluated = run_script(["src/eval.py", f"ckpt_path={best}", f"hydra.run.dir={root / 'eval'}"], ROOT, OFFLINE)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "added eval/test-center/* to the summary of W&B run" in evaluated.stdout
    return run_dir, json.loads((root / "eval" / "eval.json").read_text())


def test_every_attempt_of_a_run_is_one_wandb_run_of_job_type_train(trained_resumed_evaluated):
    run_dir, _ = trained_resumed_evaluated
    run_id = (run_dir / "wandb" / "run-id").read_text().strip()
    attempts = offline_runs(run_dir)
    assert [a.id for a in attempts] == [run_id] * 3  # trained, resumed, evaluated
    assert [a.job_type for a in attempts[:2]] == ["train", "train"]


def test_the_runs_table_shows_the_best_validation_error_and_epoch_metrics_plot_by_epoch(trained_resumed_evaluated):
    """``val/err1`` summarises as its minimum (the number the checkpoint was chosen by), in the
    first attempt and the resumed one alike; the run's best is what results.json says."""
    run_dir, _ = trained_resumed_evaluated
    results = json.loads((run_dir / "results.json").read_text())
    for attempt in offline_runs(run_dir)[:2]:
        for name in ("val/err1", "val/err5", "val/loss"):
            assert attempt.metrics[name] == {"step_metric": "epoch", "summary": ["min"]}, name
        assert attempt.metrics["train/err1"]["step_metric"] == "epoch"
        assert attempt.metrics["val/*"]["step_metric"] == "epoch"
    resumed = offline_runs(run_dir)[1]
    history = [row["val/err1"] for row in results["history"]]
    assert len(history) == 3
    # The resumed attempt saw only the third epoch; W&B's server keeps the minimum over attempts.
    assert resumed.summary["val/err1"] == {"min": pytest.approx(history[2])}
    assert resumed.summary["test/err1"] == pytest.approx(results["test"]["err1"])


def test_the_config_has_a_flat_axes_node_to_group_runs_by(trained_resumed_evaluated):
    run_dir, _ = trained_resumed_evaluated
    for attempt in offline_runs(run_dir)[:2]:
        assert attempt.config["axes"] == {
            "model": "cifar",
            "norm": "batchnorm",
            "pool": "overlap",
            "activation": "relu",
            "data": "digits",
            "dropout": 0.5,
            "columns": 2,
            "width": 0.25,
            "seed": 0,
        }


def test_an_evaluation_adds_its_numbers_to_the_run_it_evaluated(trained_resumed_evaluated):
    run_dir, evaluation = trained_resumed_evaluated
    added = offline_runs(run_dir)[2].summary
    assert added["eval/test-center/err1"] == pytest.approx(evaluation["err1"])
    assert added["eval/test-center/err5"] == pytest.approx(evaluation["err5"])
    assert added["eval/test-center/images"] == evaluation["images"]


def test_a_tuned_sweeps_trial_is_a_search_job_and_its_tuned_settings_are_axes(tmp_path):
    """As the tuned sweeper starts a search trial: ``hparams_search=per_config`` with the trial's
    settings and its study on the command line."""
    tuned = ["hparams_search=per_config", "optimizer.lr=0.003", "tuning.trial=1", "tuning.study=s"]
    cfg = compose_config([*SHORT, *tuned], tmp_path)
    assert job_type(cfg) == "search"
    assert job_type(compose_config(SHORT, tmp_path)) == "train"
    values = axes(compose_config([*SHORT, *tuned], tmp_path))
    searched = {axis_name(key) for key in cfg.hydra.sweeper.search_space}  # dropout.p: dropout
    assert searched and searched <= set(values) and values["optimizer_lr"] == 0.003


def test_an_evaluation_of_a_checkpoint_outside_a_run_is_a_run_of_job_type_eval(trained_resumed_evaluated, tmp_path):
    run_dir, _ = trained_resumed_evaluated
    copied = tmp_path / "weights.ckpt"
    copied.write_bytes(Path(json.loads((run_dir / "results.json").read_text())["best_checkpoint"]).read_bytes())
    out = tmp_path / "eval"
    evaluated = run_script(["src/eval.py", f"ckpt_path={copied}", *SHORT, f"hydra.run.dir={out}"], ROOT, OFFLINE)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    (attempt,) = offline_runs(out)
    assert attempt.job_type == "eval"
    assert attempt.summary["eval/test-center/err1"] == pytest.approx(
        json.loads((out / "eval.json").read_text())["err1"]
    )
