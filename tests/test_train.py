"""End-to-end runs: a composed run in-process, the README's commands, and two-process DDP on CPU."""

import csv
import json
import os
import re
from pathlib import Path

import pytest
import torch

from alexnet.run.train import train
from conftest import ROOT, compose_config, run_script


def read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_a_composed_run_writes_metrics_results_and_checkpoints(tmp_path, smoke_overrides, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_config([*smoke_overrides, "logger=default", "trainer.max_epochs=2"], tmp_path)
    best_err1 = train(cfg)

    results = read_results(tmp_path)
    assert results["status"] == "finished" and results["error"] is None
    assert results["world_size"] == 1 and results["epochs"] == 2
    assert [row["epoch"] for row in results["history"]] == [0, 1]
    assert results["val"]["best"]["err1"] == pytest.approx(best_err1)
    assert results["val"]["best"]["err1"] == min(row["val/err1"] for row in results["history"])
    for split in ("val", "test"):
        values = results[split]["best"] if split == "val" else results[split]
        assert 0 <= values["err5"] <= values["err1"] <= 1

    with open(tmp_path / "csv" / "metrics.csv") as f:
        columns = next(csv.reader(f))
    for name in ("train/loss", "train/err1", "val/err1", "val/err5", "test/err1", "test/err5", "train/lr"):
        assert name in columns

    checkpoints = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert "last.ckpt" in checkpoints and Path(results["best_checkpoint"]).name in checkpoints
    state = torch.load(results["best_checkpoint"], weights_only=True)  # tensors and plain values only
    assert "net.features.conv1.conv.weight" in state["state_dict"]

    offline_runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1


@pytest.fixture(scope="module")
def best_is_not_last(tmp_path_factory) -> Path:
    """A 3-epoch run whose best epoch is not its last: ``planted.SpoilLastEpoch`` ranks the classes
    backwards before the last validation, so the best and the last weights give different numbers."""
    run_dir = tmp_path_factory.mktemp("best-is-not-last")
    switches = ["norm=none", "activation=tanh", "dropout=none", "model.width=0.25"]  # learns in a few batches
    shorter = ["trainer.max_epochs=3", "trainer.limit_train_batches=8", "trainer.limit_val_batches=4"]
    spoil = "+callbacks.spoil._target_=planted.SpoilLastEpoch"
    smoke = ["debug=smoke", "trainer.accelerator=cpu", "data.batch_size=64"]
    train(compose_config([*smoke, *switches, *shorter, spoil], run_dir))
    results = read_results(run_dir)
    assert results["status"] == "finished" and results["epochs"] == 3
    assert results["val"]["best"]["epoch"] < 2 and results["val"]["final"]["err1"] > 0.9, results["val"]
    return run_dir


def test_test_metrics_come_from_the_best_checkpoint_not_the_last_weights(best_is_not_last):
    results = read_results(best_is_not_last)
    best = results["val"]["best"]
    assert Path(results["best_checkpoint"]).name.startswith(f"best-epoch{best['epoch']:03d}-")
    # The last weights rank the classes backwards (val top-1 error > 0.9); the best ones learnt.
    assert results["test"]["err1"] < best["err1"] + 0.15 and results["test"]["err1"] < 0.6, (results["test"], best)


def test_last_ckpt_holds_the_end_of_the_last_epoch_not_the_best(best_is_not_last):
    last = torch.load(best_is_not_last / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 3 * 8)  # 3 epochs of 8 batches
    final = torch.load(best_is_not_last / "final-weights.pt", weights_only=True)  # saved by the planted callback
    weights = [key for key in final if key.startswith("net.")]
    assert weights and all(torch.equal(last["state_dict"][key], final[key]) for key in weights)
    best = torch.load(read_results(best_is_not_last)["best_checkpoint"], weights_only=True)
    assert not all(torch.equal(best["state_dict"][key], final[key]) for key in weights)


def test_a_failed_run_says_so_in_results(tmp_path, smoke_overrides):
    cfg = compose_config([*smoke_overrides, f"ckpt_path={tmp_path / 'missing.ckpt'}"], tmp_path)
    with pytest.raises(FileNotFoundError):
        train(cfg)
    results = read_results(tmp_path)
    assert results["status"] == "failed" and "missing.ckpt" in results["error"]


@pytest.mark.slow
def test_batch_that_does_not_divide_across_devices_fails_before_training(tmp_path):
    result = run_script(
        [
            str(ROOT / "src" / "train.py"),
            "trainer.devices=3",
            "trainer.accelerator=cpu",
            "debug=smoke",
            "data.batch_size=32",
        ],
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode != 0
    assert "data.batch_size=32" in result.stderr and "multiple of 3" in result.stderr
    assert not list(tmp_path.glob("outputs/runs/*/*/checkpoints"))


def test_summary_prints_the_papers_totals(capsys, monkeypatch):
    """What ``src/summary.py model=paper data=imagenet`` prints (the README's command runs the script)."""
    from alexnet.config import build
    from alexnet.models.layer_table import print_summary

    monkeypatch.setenv("COLUMNS", "160")
    cfg = compose_config(["model=paper", "data=imagenet"])
    print_summary(build(cfg.model, "model"), cfg.model.input_size)
    printed = capsys.readouterr().out
    assert "60,965,224" in printed
    assert "256×6×6" in printed  # conv5 after pooling


def test_a_runs_model_summary_prints_the_networks_flops_not_zero(tmp_path, smoke_overrides, capsys, monkeypatch):
    from lightning.pytorch.utilities.model_summary import get_human_readable_count

    from alexnet.config import build
    from alexnet.models.layer_table import layer_table

    monkeypatch.setenv("COLUMNS", "200")
    cfg = compose_config(smoke_overrides, tmp_path)
    train(cfg)
    printed = capsys.readouterr().out
    macs = sum(row.macs for row in layer_table(build(cfg.model, "model"), cfg.model.input_size))
    flops = get_human_readable_count(2 * macs)  # a multiply and an add
    assert macs > 0 and f"Total FLOPs: {flops}" in printed
    assert re.search(rf"│ net +│ AlexNet +│.*│ +{re.escape(flops)} │", printed)  # the table's row of the network


@pytest.mark.slow
def test_gpu_throughput_switches_run_and_keep_plain_checkpoint_names(tmp_path, smoke_overrides, monkeypatch):
    """``system.compile=true`` compiles with TorchDynamo and AOTAutograd as users get them, but here with
    the ``aot_eager`` backend: inductor's C++ code generation for the whole network costs about 3 min
    of CPU on a cold cache (measured on the 2-core test machine). tests/test_lrn.py compiles the fused
    LRN with inductor."""
    compile_module = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: compile_module(self, backend="aot_eager", **kw))
    cfg = compose_config(
        [
            *smoke_overrides,
            "system.channels_last=true",
            "system.compile=true",
            "model.width=0.125",
            "trainer.benchmark=true",
        ],
        tmp_path,
    )
    train(cfg)
    results = read_results(tmp_path)
    assert results["status"] == "finished"
    state = torch.load(results["best_checkpoint"], weights_only=True)["state_dict"]
    assert "net.features.conv1.conv.weight" in state and not any("_orig_mod" in k for k in state)


def test_a_planted_nan_stops_the_run_at_that_step_and_keeps_the_last_good_checkpoint(tmp_path, smoke_overrides):
    poison = ["+callbacks.poison._target_=planted.PoisonWeightsAt", "+callbacks.poison.step=3"]
    cfg = compose_config([*smoke_overrides, "trainer.max_epochs=3", *poison], tmp_path)
    with pytest.raises(Exception, match="non-finite loss or gradient at step 3 .epoch 1."):
        train(cfg)
    results = read_results(tmp_path)
    assert results["status"] == "diverged" and "Last good checkpoint" in results["error"]
    state = torch.load(tmp_path / "checkpoints" / "resume.ckpt", weights_only=True)
    assert state["global_step"] == 2  # saved at the start of epoch 1, after two steps
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values() if t.is_floating_point())


def test_the_progress_bar_reads_metrics_every_n_batches_not_each(monkeypatch):
    """Reading the logged metrics calls .item() on the step loss: a GPU sync, kept out of most steps."""
    from functools import partial

    import lightning as L
    from lightning.pytorch.callbacks import RichProgressBar
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from alexnet.training.callbacks import ProgressBar
    from alexnet.training.system import ClassificationSystem

    reads = []
    monkeypatch.setattr(RichProgressBar, "get_metrics", lambda self, trainer, module: reads.append(1) or {})
    system = ClassificationSystem(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), 3, partial(torch.optim.SGD, lr=0.1))
    data = DataLoader(TensorDataset(torch.randn(80, 3, 2, 2), torch.randint(0, 3, (80,))), batch_size=4)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        callbacks=[ProgressBar(metrics_every=10)],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(system, data)
    assert trainer.global_step == 20 and 1 <= len(reads) <= 3  # after batches 10 and 20, and at the epoch's end


def test_the_plateau_schedule_divides_the_rate_by_ten_when_val_error_stalls(tmp_path):
    """conf/scheduler/plateau.yaml through the system, on data whose error stops improving at once."""
    import lightning as L
    from hydra.utils import instantiate
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from alexnet.training.system import ClassificationSystem

    cfg = compose_config(["scheduler.patience=1"])
    system = ClassificationSystem(
        nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), 3, instantiate(cfg.optimizer), instantiate(cfg.scheduler)
    )
    data = DataLoader(TensorDataset(torch.zeros(32, 3, 2, 2), torch.zeros(32, dtype=torch.long)), batch_size=8)
    rates = []

    class RecordRate(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=6,
        callbacks=[RecordRate()],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    trainer.fit(system, data, data)
    assert rates[0] == 0.01 and min(rates) < 0.01
    assert all(any(abs(r - 0.01 * 10**-k) < 1e-12 for k in range(6)) for r in rates), rates  # only ÷10 steps


@pytest.mark.slow
def test_the_network_learns_the_digits(tmp_path):
    """Labels paired with the wrong images, or an optimiser that never steps, would stay near 90%."""
    cfg = compose_config(
        ["trainer.accelerator=cpu", "model.width=0.25", "data.batch_size=32", "trainer.max_epochs=3"], tmp_path
    )
    best_err1 = train(cfg)
    assert best_err1 < 0.30, f"val top-1 error {best_err1:.3f} after 3 epochs"


def test_a_finished_run_destroys_its_process_group(tmp_path, smoke_overrides, monkeypatch):
    # A gloo group left to the interpreter's shutdown can abort a finished process (exit -6), so the
    # run destroys it (fit.end_process_group). strategy=ddp on one process creates a real group here.
    cfg = compose_config([*smoke_overrides, "trainer.strategy=ddp", "trainer.devices=1"], tmp_path)
    destroy, groups_destroyed = torch.distributed.destroy_process_group, []

    def recorded_destroy(*args, **kwargs):
        groups_destroyed.append(torch.distributed.is_initialized())
        destroy(*args, **kwargs)

    monkeypatch.setattr(torch.distributed, "destroy_process_group", recorded_destroy)
    environ = dict(os.environ)
    try:
        train(cfg)
    finally:
        # Lightning's DDP setup exports LOCAL_RANK, NODE_RANK and MASTER_PORT; left in this worker's
        # environment, every later 2-process run it starts takes itself for a launched child and
        # waits for a rank 1 that never comes.
        os.environ.clear()
        os.environ.update(environ)
    assert read_results(tmp_path)["status"] == "finished"
    assert groups_destroyed == [True]  # there was a group, and the run destroyed it once
    assert not torch.distributed.is_initialized()
