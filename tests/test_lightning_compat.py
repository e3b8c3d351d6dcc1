"""What ``alexnet.lightning_compat`` takes from Lightning's private parts is still there."""

from datetime import timedelta

import lightning as L
from lightning.pytorch.strategies import DDPStrategy

from alexnet.lightning_compat import TESTED, own_launcher, set_collective_timeout

UPGRADED = f"Lightning {L.__version__} (lightning_compat was written for {TESTED}.x)"


def test_the_collective_timeout_reaches_the_ddp_strategy():
    strategy = DDPStrategy()
    assert set_collective_timeout(strategy, 12), f"{UPGRADED}: DDPStrategy no longer keeps _timeout"
    assert strategy._timeout == timedelta(seconds=12), UPGRADED


def test_lightnings_own_launcher_is_recognised():
    two = L.Trainer(accelerator="cpu", devices=2, logger=False, enable_progress_bar=False)
    assert own_launcher(two) is not None, f"{UPGRADED}: the DDP launcher is no longer _SubprocessScriptLauncher"
    assert own_launcher(L.Trainer(accelerator="cpu", devices=1, logger=False)) is None


def test_the_fit_loop_state_and_the_checkpoint_dict_are_still_reachable(tmp_path):
    from functools import partial

    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from alexnet.lightning_compat import checkpoint_state, logging_step, request_stop, set_logging_step
    from alexnet.training.system import ClassificationSystem

    system = ClassificationSystem(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), 3, partial(torch.optim.SGD, lr=0.1))
    data = DataLoader(TensorDataset(torch.randn(16, 3, 2, 2), torch.randint(0, 3, (16,))), batch_size=4)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    trainer.fit(system, data)
    try:
        assert logging_step(trainer) == trainer.global_step == 4, UPGRADED
        set_logging_step(trainer, 2)
        assert logging_step(trainer) == 2, UPGRADED
        state = checkpoint_state(trainer)
        assert state["global_step"] == 4 and "net.1.weight" in state["state_dict"], UPGRADED
        request_stop(trainer)
        assert trainer.received_sigterm, f"{UPGRADED}: request_stop no longer reaches trainer.received_sigterm"
    except AttributeError as err:
        raise AssertionError(f"{UPGRADED}: {err}") from err


def test_only_the_compat_module_touches_lightnings_private_parts():
    """Private Lightning names imported, or private attributes read off Lightning's objects (the
    trainer, its strategy, loops, connectors, launcher; a LightningModule; ``super()`` in a
    subclass), anywhere in src/ but lightning_compat.py."""
    import ast
    from pathlib import Path

    lightning_objects = ("trainer", "strategy", "loop", "connector", "launcher", "pl_module", "super()")
    found = []
    for path in sorted((Path(__file__).resolve().parents[1] / "src").rglob("*.py")):
        if path.name == "lightning_compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lightning"):
                names = [node.module, *(alias.name for alias in node.names)]
                found += [f"{where} imports {n}" for n in names if any(p.startswith("_") for p in n.split("."))]
            private = isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
            if private and any(word in ast.unparse(node.value) for word in lightning_objects):
                found.append(f"{where} reads {ast.unparse(node)}")
    assert not found, "move these into alexnet/lightning_compat.py:\n" + "\n".join(found)


def test_the_ddp_process_observer_can_still_be_told_to_exit_1():
    """``exit_1_when_a_process_fails`` replaces the ``_terminate_all`` of the observer class that
    Lightning's launcher starts, which keeps ``_child_processes`` and ``_termination_signal``."""
    import subprocess
    import sys

    from lightning.fabric.strategies.launchers import subprocess_script

    from alexnet import lightning_compat

    observer_class = getattr(subprocess_script, "_ChildProcessObserver", None)
    assert observer_class is not None and hasattr(observer_class, "_terminate_all"), UPGRADED
    launches = getattr(subprocess_script, "_launch_process_observer", None)
    assert launches is not None and launches.__globals__.get("_ChildProcessObserver") is observer_class, UPGRADED
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    observer = observer_class(main_pid=0, child_processes=[child])
    assert observer._child_processes == [child] and observer._termination_signal, UPGRADED
    lightning_compat.exit_1_when_a_process_fails(L.Trainer(logger=False))  # every run does (perhaps already here)
    assert observer_class._terminate_all is lightning_compat._stop_the_others_then_exit_1


def test_the_observer_exits_1_for_a_failed_process_and_stands_down_while_this_one_stops(monkeypatch):
    """A child that failed on its own: the others are stopped and this process exits 1. Children that
    this process killed itself (Lightning does on Ctrl-C, once ``trainer.interrupted`` is set): nothing,
    so that this process goes on to record the interrupt and exit 130."""
    from types import SimpleNamespace

    from lightning.pytorch.trainer.states import TrainerStatus

    from alexnet import lightning_compat

    exits, signals = [], []
    monkeypatch.setattr(lightning_compat.os, "_exit", exits.append)
    child = SimpleNamespace(pid=1, returncode=1, send_signal=signals.append)
    observer = SimpleNamespace(_child_processes=[child], _termination_signal=9)
    trainer = L.Trainer(logger=False, enable_progress_bar=False)
    lightning_compat.exit_1_when_a_process_fails(trainer)
    lightning_compat._stop_the_others_then_exit_1(observer)
    assert (exits, signals) == ([1], [9])
    trainer.state.status = TrainerStatus.INTERRUPTED  # what Lightning sets first on Ctrl-C or an error here
    lightning_compat._stop_the_others_then_exit_1(observer)
    assert (exits, signals) == ([1], [9])  # nothing more


def test_a_failed_sigterm_broadcast_fails_the_step_instead_of_being_ignored():
    """Lightning's loop still broadcasts rank 0's SIGTERM before each step, through the method that
    ``fail_when_a_sigterm_broadcast_fails`` replaces; Lightning's own swallows the broadcast's error
    (here: no process group), the replacement lets it through."""
    import inspect

    import pytest
    from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop

    from alexnet import lightning_compat

    assert "self._broadcast_sigterm_tensor()" in inspect.getsource(_TrainingEpochLoop.advance), UPGRADED
    loop = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).fit_loop.epoch_loop
    original = _TrainingEpochLoop.__dict__["_broadcast_sigterm_tensor"]
    if original is not lightning_compat._broadcast_sigterm_or_fail:  # not yet replaced in this process
        original(loop)  # no process group: ignored
    lightning_compat.fail_when_a_sigterm_broadcast_fails()
    with pytest.raises(ValueError, match="process group"):
        loop._broadcast_sigterm_tensor()


def test_ddp_keeps_its_gradient_buckets_from_3_processes_on():
    """``keep_gradient_buckets`` reaches the kwargs Lightning's DDP strategy gives DDP, from 3
    processes on (tests/test_multinode.py resumes 4 bit-equal), and leaves a user's choice alone."""
    from alexnet.lightning_compat import keep_gradient_buckets

    four = L.Trainer(accelerator="cpu", devices=4, logger=False, enable_progress_bar=False)
    assert keep_gradient_buckets(four), UPGRADED
    assert four.strategy._ddp_kwargs["find_unused_parameters"] is True, UPGRADED
    two = L.Trainer(accelerator="cpu", devices=2, logger=False, enable_progress_bar=False)
    assert not keep_gradient_buckets(two) and "find_unused_parameters" not in two.strategy._ddp_kwargs
    mine = L.Trainer(accelerator="cpu", devices=4, strategy="ddp_find_unused_parameters_false", logger=False)
    keep_gradient_buckets(mine)
    assert mine.strategy._ddp_kwargs["find_unused_parameters"] is False
