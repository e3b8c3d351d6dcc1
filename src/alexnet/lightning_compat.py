"""What this repo needs from Lightning beyond its public API, in one place: no other module touches
a private attribute of Lightning's.

Tested with Lightning 2.6 (``pyproject.toml`` bounds it); ``tests/test_lightning_compat.py`` fails
with the installed version's number if an upgrade removes what is used here.
"""

import contextlib
import logging
import os
import sys
import weakref
from datetime import timedelta
from typing import Any

import lightning as L
import torch
from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from lightning.pytorch.strategies import DDPStrategy, Strategy
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from lightning.pytorch.utilities.exceptions import SIGTERMException

TESTED = "2.6"
log = logging.getLogger(__name__)


def set_collective_timeout(strategy: Strategy, seconds: float) -> bool:
    """Set how long a collective may wait before it fails, on a strategy that creates a process
    group (DDP, FSDP); return whether it applied. The constructors take ``timeout=`` but are built
    from ``trainer.strategy=auto``; the value is read when the process group is created, in
    ``fit``/``test``, so setting it on the built trainer's strategy is enough."""
    if not hasattr(strategy, "_timeout"):
        return False
    strategy._timeout = timedelta(seconds=seconds)
    return True


def keep_gradient_buckets(trainer: L.Trainer) -> bool:
    """Make DDP reduce gradients in the same buckets at every step of a run of 3 processes or more,
    resumed or not; return whether it applied (not where the user set ``find_unused_parameters``).

    DDP rebuilds its buckets after a process's first step, in the order the gradients became ready.
    A resumed process's first step uses the initial buckets where the uninterrupted run used the
    rebuilt ones: with 3 processes or more, each gradient's sum over the processes is added up in
    another order, and the resumed run drifts from the uninterrupted one by rounding (2 processes
    are safe: a + b == b + a). DDP does not rebuild with ``find_unused_parameters=True``, at the
    cost of one pass over the autograd graph a step (not measured on a GPU); torch then logs, once
    per process, that no parameter was unused."""
    strategy = trainer.strategy
    if not isinstance(strategy, DDPStrategy) or trainer.world_size < 3:
        return False
    strategy._ddp_kwargs.setdefault("find_unused_parameters", True)
    return True


def own_launcher(trainer: L.Trainer) -> _SubprocessScriptLauncher | None:
    """Lightning's DDP launcher when it started this run's other processes (``trainer.devices>1``
    without torchrun or SLURM), else None. Its ``kill(signal)`` stops them."""
    launcher = trainer.strategy.launcher
    return launcher if isinstance(launcher, _SubprocessScriptLauncher) else None


def request_stop(trainer: L.Trainer) -> None:
    """Make Lightning stop at the next step boundary with ``SIGTERMException``, as on SIGTERM,
    without its signal handler (which runs a collective inside the handler)."""
    trainer._signal_connector.received_sigterm = True


def fail_when_a_sigterm_broadcast_fails() -> None:
    """Make the broadcast Lightning runs before every training step under DDP (rank 0 telling the
    others whether it got SIGTERM) fail the run when it fails, as every other collective does.

    Lightning 2.6 catches any error of that broadcast and carries on: with a peer lost (a node
    gone), rank 0's broadcast fails, rank 0 goes on to the step's next collective, and a rank still
    waiting for the broadcast's data never gets it, so the two wait for each other until the
    collective timeout, and the error that named the lost peer is gone. Seen with two torchrun
    nodes and one killed (``tests/test_multinode.py``), one kill in four to six."""
    _TrainingEpochLoop._broadcast_sigterm_tensor = _broadcast_sigterm_or_fail


def _broadcast_sigterm_or_fail(loop: _TrainingEpochLoop) -> None:
    trainer = loop.trainer
    flag = torch.tensor([1 if trainer.received_sigterm else 0], device=trainer.strategy.root_device)
    torch.distributed.broadcast(flag, src=0)  # Lightning's, less its `except Exception: flag = 0`
    if flag.item() == 1:
        with contextlib.suppress(Exception):
            torch.distributed.barrier()  # as Lightning: every rank here before each stops
        raise SIGTERMException()


def checkpoint_state(trainer: L.Trainer) -> dict[str, Any]:
    """Everything Lightning puts in a checkpoint (weights, optimiser, loops, callbacks' states), as
    a dict, without writing it: ``Trainer.save_checkpoint`` would add a barrier, which a rank that
    writes alone (after another failed) must not wait in."""
    return trainer._checkpoint_connector.dump_checkpoint(weights_only=False)


def logging_step(trainer: L.Trainer) -> int:
    """The step loggers are given: optimiser steps taken, counted by the fit loop."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def set_logging_step(trainer: L.Trainer, step: int) -> None:
    """Set the loggers' step. After a resume from a checkpoint saved at a batch start, Lightning
    adds one (it assumes a save at a batch end); this puts it back."""
    trainer.fit_loop.epoch_loop._batches_that_stepped = step


def exit_1_when_a_process_fails(trainer: L.Trainer) -> None:
    """Make a run under Lightning's own DDP launcher exit with code 1 when one of its processes fails.

    A thread of rank 0 (``_ChildProcessObserver``) checks ranks 1…N-1 every 5 s; when one has exited
    non-zero, it SIGKILLs the others and then rank 0 itself. Rank 0's exit code, the run's, was then
    -9 (137 in a shell), or 1 when rank 0 failed first on the broken connection: a race. Here the
    thread stops the others as before, then ends rank 0 with code 1 (``os._exit``, as abrupt as the
    kill was: checkpoints and ``results.json`` are written by rename, so none is left half-written;
    the failed rank has written ``results.json``). It stands down when ``trainer`` is stopping on its
    own (Ctrl-C, an error on rank 0: ``trainer.interrupted``, set before Lightning kills the others),
    so that rank 0 records that and exits with its own code (130, 1)."""
    global _watched
    _watched = weakref.ref(trainer)
    _ChildProcessObserver._terminate_all = _stop_the_others_then_exit_1


_watched: "weakref.ref[L.Trainer] | None" = None  # the trainer of this process's current run


def _stop_the_others_then_exit_1(observer: _ChildProcessObserver) -> None:
    trainer = _watched() if _watched is not None else None
    if trainer is not None and trainer.interrupted:
        return  # rank 0 is stopping already, and stops the others itself
    for process in observer._child_processes:
        process.send_signal(observer._termination_signal)
    failed = {p.pid: p.returncode for p in observer._child_processes if p.returncode}
    log.error("A DDP process exited with an error %s: stopped the others; this one exits with code 1", failed)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def trained_batches(trainer: L.Trainer) -> int:
    """Training batches finished in the current epoch, as the fit loop counts them (and restores on
    resume): where a data pipeline that resumes mid-epoch starts again."""
    return trainer.fit_loop.epoch_loop.batch_progress.current.completed


def batch_half_done(trainer: L.Trainer) -> bool:
    """Whether the fit loop has started a training batch that it has not finished."""
    progress = trainer.fit_loop.epoch_loop.batch_progress.current
    return progress.started != progress.completed
