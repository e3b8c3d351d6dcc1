"""Callbacks that plant a fault in a training run started by a test (``+callbacks.x._target_=planted.<Class>``,
with ``tests/`` on ``PYTHONPATH``). Kept apart from ``conftest.py``, whose import switches W&B off for
the test process: a run under test keeps the W&B mode its test gives it."""

import os
import signal
import time
from pathlib import Path

import lightning as L
import torch

from alexnet.training.slurm import slurm_restarts


class PoisonWeightsAt(L.Callback):
    """For fault tests: fills conv1's weights with NaN before training step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            pl_module.net.features.conv1.conv.weight.data.fill_(float("nan"))


class SignalAt(L.Callback):
    """For fault tests: the process sends itself ``$ALEXNET_TEST_SIGNAL`` (e.g. KILL, TERM) in the
    middle of training step ``$ALEXNET_TEST_SIGNAL_STEP`` (after the forward pass, before the
    backward) on rank ``$ALEXNET_TEST_SIGNAL_RANK`` (default 0); ``RAISE`` raises an error there
    instead. ``$ALEXNET_TEST_SIGNAL_STEP`` ``start`` sends it while the run starts (this callback is
    built) and ``test`` when the test begins, after training. With ``$ALEXNET_TEST_STALL_S``, the
    other ranks sleep that long in the same step first (so that the failed rank has exited before
    they notice). Read from the environment, so a
    resumed run (started without them) runs through."""

    def __init__(self) -> None:  # built while the run starts, before training: ALEXNET_TEST_SIGNAL_STEP=start
        if os.environ.get("ALEXNET_TEST_SIGNAL_STEP") == "start":
            os.kill(os.getpid(), getattr(signal, f"SIG{os.environ['ALEXNET_TEST_SIGNAL']}"))

    def on_test_start(self, trainer, pl_module) -> None:  # after training: ALEXNET_TEST_SIGNAL_STEP=test
        if os.environ.get("ALEXNET_TEST_SIGNAL_STEP") == "test":
            os.kill(os.getpid(), getattr(signal, f"SIG{os.environ['ALEXNET_TEST_SIGNAL']}"))

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        name, step = os.environ.get("ALEXNET_TEST_SIGNAL"), os.environ.get("ALEXNET_TEST_SIGNAL_STEP")
        if not (step or "").isdigit():
            return
        rank = int(os.environ.get("ALEXNET_TEST_SIGNAL_RANK", "0"))
        stall = float(os.environ.get("ALEXNET_TEST_STALL_S", "0"))
        if stall and step is not None and trainer.global_step == int(step) and trainer.global_rank != rank:
            time.sleep(stall)
        if name and step is not None and trainer.global_step == int(step) and trainer.global_rank == rank:
            if name == "RAISE":
                raise RuntimeError(f"planted error on rank {rank} at step {step}")
            os.kill(os.getpid(), getattr(signal, f"SIG{name}"))


class MismatchedCollectivesAt(L.Callback):
    """For hang tests: at the start of training step ``$ALEXNET_TEST_HANG_STEP``, rank 0 enters an
    all-reduce and rank 1 an all-gather, so both wait for the other forever (until the collective
    timeout). Before it, each rank touches ``<run dir>/hung-<rank>``, so a test knows when."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = os.environ.get("ALEXNET_TEST_HANG_STEP")
        if step is None or trainer.global_step != int(step):
            return
        import torch.distributed as dist

        Path(trainer.default_root_dir, f"hung-{trainer.global_rank}").touch()
        if trainer.global_rank == 0:
            dist.all_reduce(torch.ones(3))
        else:
            dist.all_gather([torch.zeros(5) for _ in range(trainer.world_size)], torch.ones(5))


class SpoilLastEpoch(L.Callback):
    """For best-versus-last tests: before the last epoch's validation, negate the network's last
    layer, so that it ranks the classes backwards (top-1 error near 1) and the run's best epoch is
    not its last; at the end of training, save the final weights to ``<run dir>/final-weights.pt``."""

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.current_epoch == trainer.max_epochs - 1:
            last = [m for m in pl_module.net.modules() if isinstance(m, torch.nn.Linear)][-1]
            with torch.no_grad():
                last.weight.neg_()
                last.bias.neg_()

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            torch.save(pl_module.state_dict(), Path(trainer.default_root_dir) / "final-weights.pt")


class FaultAt(L.Callback):
    """For cluster tests, a fault chosen per sweep job (``+callbacks.fault.kind=pause,none``), at the end of
    training step ``step`` of a job's first attempt (not a requeued one), or with ``at=start`` at the
    start of the batch at ``step``, after the resume checkpoint's periodic save there:

    - ``pause``: rank 0 touches ``<run dir>/paused`` and every rank waits, at most ``seconds``, until a
      signal has arrived (the resume checkpoint's handler has it pending) or ``<run dir>/release``
      exists, so that a test can send a signal, or kill a node, mid-epoch at a known step;
    - ``raise``: a ``RuntimeError`` on every rank;
    - ``none``: nothing (the same run, uninterrupted)."""

    def __init__(self, kind: str = "none", step: int = 3, seconds: float = 60.0, at: str = "end") -> None:
        self.kind, self.step, self.seconds, self.at = kind, step, seconds, at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.at == "start":
            self._fault(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.at == "end":
            self._fault(trainer)

    def _fault(self, trainer) -> None:
        if trainer.global_step != self.step or slurm_restarts() > 0:
            return
        if self.kind == "raise":
            raise RuntimeError(f"planted error at step {self.step}")
        if self.kind != "pause":
            return
        if trainer.is_global_zero:
            Path(trainer.default_root_dir, "paused").touch()
        deadline, release = time.monotonic() + self.seconds, Path(trainer.default_root_dir, "release")
        while time.monotonic() < deadline and not release.exists():
            if any(getattr(c, "_pending", None) for c in trainer.callbacks):
                break
            time.sleep(0.1)


class RecordShards(L.Callback):
    """Each rank writes the training images its loader gives it this epoch (their indices, one line,
    in ``<run dir>/shards/epoch<E>-rank<R>.txt``): which rank saw which image."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        indices = trainer.train_dataloader.shard().tolist()
        folder = Path(trainer.default_root_dir, "shards")
        folder.mkdir(exist_ok=True)
        (folder / f"epoch{trainer.current_epoch}-rank{trainer.global_rank}.txt").write_text(" ".join(map(str, indices)))
