"""Never lose a run: atomic checkpoints, exact resume, preemption and failure checkpoints.

One file per run holds the state to resume from, ``<run dir>/checkpoints/resume.ckpt``, written by
:class:`ResumeCheckpoint`:

- every ``every_n_steps`` training steps and at the start of every epoch, at the start of a batch,
  when everything before it (metrics included) is logged and nothing of it has run yet;
- on SIGTERM (and SIGUSR1 or SIGUSR2, SLURM's warning before preemption) at the next step boundary, after
  which the process exits with ``128 + signal`` (143 for SIGTERM), and on SLURM requeues the job.
  Under DDP a signal to any process is shared at the next batch start, where every rank stops
  before that batch and the file gets each rank's state;
- on any other error during fit, if the weights are not half-updated: the state before the batch
  that failed. A diverged run keeps the last good one.

Besides Lightning's own state (weights, optimiser, scheduler, loops, callbacks) the file holds each
rank's random number generators and training-metric states (:mod:`alexnet.training.exact_state`)
and the training loader's position
(counted in trained, not prefetched, batches), so that on CPU a resumed run ends with the same
weights and metrics as one never interrupted, and the number of rows of the metrics CSV at that
point, so the resumed run continues the file without duplicates. ``src/train.py resume=<run dir>`` uses it.
Files are written to a temporary name beside the target, synced, then renamed over it
(:class:`alexnet.training.checkpoint_io.AtomicCheckpointIO`), so a kill mid-write leaves the previous checkpoint intact.
"""

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities.exceptions import SIGTERMException

from alexnet.errors import require
from alexnet.lightning_compat import (
    batch_half_done,
    checkpoint_state,
    logging_step,
    request_stop,
    set_logging_step,
)
from alexnet.training.column_parallel import ColumnParallelStrategy
from alexnet.training.exact_state import (
    csv_rows,
    metric_states,
    rng_states,
    set_rng_states,
    to_cpu,
    training_metrics,
)
from alexnet.training.slurm import SLURM_SIGNALS, noted_slurm_signal, requeue_slurm_job
from alexnet.training.stops import Diverged, TrialPruned

log = logging.getLogger(__name__)


class ResumeCheckpoint(L.Callback):
    """Writes the resume checkpoint (see the module docstring) and restores what Lightning's
    checkpoint leaves out: each rank's random number generators and training-metric states, and
    the logging step.

    Args:
        path: the file (``conf/callbacks`` puts it where ``RunDir.resume_checkpoint`` reads it).
        every_n_steps: training steps between resume checkpoints (0: only at epoch starts and on
            signals and errors). Each write blocks training: 0.4-1.4 s for model=paper's 0.5 GB
            (weights and momentum) on this repo's 2-core test machine, disk-bound.
    """

    def __init__(self, path: str, every_n_steps: int = 500) -> None:
        every = "an integer >= 0 (0: only at epoch starts, signals, errors)"
        key = "callbacks.resume_checkpoint.every_n_steps"
        require(isinstance(every_n_steps, int) and every_n_steps >= 0, key, every_n_steps, every)
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self.signal: int | None = None  # the signal that stopped the run
        self._pending: int = 0  # a signal this process received, not yet shared with the others
        self._saved_every_rank_at: int | None = None  # the step whose state the file holds, every rank's
        self._rng_at_batch_start: dict[str, Any] = {}
        self._metrics_at_batch_start: dict[str, torch.Tensor] = {}
        self._in_batch = False  # between a batch's start and its end
        self._stepped = False  # the optimiser has run in the current batch
        self._to_restore: dict[str, Any] | None = None  # this rank's RNG and metric states, after a resume
        self._restored_every_rank = False  # the file resumed from held every rank's states
        self._logging_step: int | None = None
        self._rank_states: list[dict[str, Any]] | None = None  # every rank's, for the file being written
        self._previous_handlers: dict[int, Any] = {}
        self._cuda, self._metrics = False, {}

    # -- signals -----------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Registered before Lightning's own handlers, which then leave SIGUSR1 to this one.
        self._cuda = trainer.strategy.root_device.type == "cuda"
        self._metrics = training_metrics(pl_module)
        if stage == "fit" and _in_main_thread():
            for signum in SLURM_SIGNALS:
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
            self._trainer = trainer

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if _in_main_thread():
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, handler)
            self._previous_handlers = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning's SIGTERM handler (registered at fit's start) runs a broadcast inside the handler,
        # wherever the main thread is: with another rank in another collective, both wait forever.
        # This one only marks the stop; on_train_batch_start shares it in every rank's order.
        if _in_main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)  # Lightning restores the original at teardown
        early = noted_slurm_signal()  # a warning that came while the run started: act on it now
        if early is not None and self._trainer is not None:
            self._on_signal(early, None)

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.info(
            "Received %s: checkpointing at the end of this step, then %s",
            signal.Signals(signum).name,
            "requeueing (SLURM) or exiting" if signum in SLURM_SIGNALS else "exiting",
        )
        self._pending = self._pending or signum
        if self._trainer.world_size == 1:
            self.signal = signum
            request_stop(self._trainer)  # Lightning stops at the next step boundary

    def _share_signal(self, trainer: L.Trainer) -> bool:
        """Under DDP, one all-reduce a step, at its start on every rank: whether any rank got a
        signal (Lightning alone stops on rank 0's signals only)."""
        flag = torch.tensor([self._pending or 0], device=trainer.strategy.root_device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        signum = int(flag.item())
        if signum and self.signal is None:
            self.signal = signum
        return bool(signum)

    # -- periodic checkpoints ----------------------------------------------------------------
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int):
        due = batch_idx == 0 or (self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0)
        if self._to_restore is not None:  # the first batch after a resume: the file is this state
            set_rng_states(self._to_restore["rng_states"])
            for key, value in self._to_restore.get("metrics", {}).items():
                name, state = key.rsplit(".", 1)
                setattr(self._metrics[name], state, value.to(pl_module.device))
            self._to_restore = None
            self._saved_every_rank_at = trainer.global_step if self._restored_every_rank else None
            if self._logging_step is not None:  # Lightning assumes a save at a batch end and adds one
                set_logging_step(trainer, self._logging_step)
        if trainer.world_size > 1 and torch.distributed.is_initialized() and self._share_signal(trainer):
            # Every rank is here, at the same batch start, none of it run: save with each rank's
            # generators and metric states (exact, as a periodic save), and stop before this batch.
            if not self._holds_this_step(trainer):
                self.save(trainer, every_rank=True)
            raise SIGTERMException()
        if due and trainer.global_step > 0 and not self._holds_this_step(trainer):
            self.save(trainer, every_rank=True)
        self._rng_at_batch_start = rng_states(self._cuda, torch_only=True)
        self._metrics_at_batch_start = metric_states(self._metrics)
        self._in_batch, self._stepped = True, False

    def _holds_this_step(self, trainer: L.Trainer) -> bool:
        """Whether the file already holds the state at this step's start, with every rank's."""
        return self._saved_every_rank_at == trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer, every_rank=True)  # the final state: resuming a finished run does nothing more

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        self._stepped = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        self._in_batch = False

    def _consistent(self, trainer: L.Trainer) -> bool:
        """Whether the weights and the loop's count of finished batches describe the same moment:
        no batch half done, or one that failed before its optimiser step (then the state is that
        before it)."""
        return not batch_half_done(trainer) or (self._in_batch and not self._stepped)

    def save(self, trainer: L.Trainer, every_rank: bool = False) -> None:
        """Write ``resume.ckpt``. Rank 0 writes it alone, without a barrier, so it cannot deadlock
        when another rank has failed (every rank holds the same weights). With ``every_rank`` (all
        ranks are here at the same step), each rank's random generators and training-metric states
        are gathered first, so that under DDP each rank resumes with its own."""
        split = isinstance(trainer.strategy, ColumnParallelStrategy)  # the weights are gathered from every rank
        if split and not every_rank:
            log.warning("Column-parallel: a save needs every process, so %s keeps the last one", self.path)
            return
        own = self._rank_state()
        if every_rank and trainer.world_size > 1 and torch.distributed.is_initialized():
            ranks: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(ranks, own)
        else:
            ranks = [own]
        self._saved_every_rank_at = trainer.global_step if len(ranks) == trainer.world_size else None
        if trainer.is_global_zero or split:
            self._rank_states = ranks
            try:
                checkpoint = checkpoint_state(trainer)
            finally:
                self._rank_states = None
            if trainer.is_global_zero:
                trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, self.path)

    def _rank_state(self) -> dict[str, Any]:
        """This rank's generators and training-metric states; inside a batch (an error), those
        from before it, since the state to resume from is the one before the failed batch."""
        now = rng_states(self._cuda)
        if not self._in_batch:
            return {"rng_states": now, "metrics": to_cpu(metric_states(self._metrics))}
        return {"rng_states": {**now, **self._rng_at_batch_start}, "metrics": to_cpu(self._metrics_at_batch_start)}

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        states = self._rank_states or [self._rank_state()]
        checkpoint["rank_states"] = states
        checkpoint["state_dict"].update(states[0]["metrics"])  # rank 0's, as of the state saved
        checkpoint["logging_step"] = logging_step(trainer)
        for logger in trainer.loggers:
            logger.save()  # flush buffered metric rows: the file must hold everything up to this point
        metrics_csv = [
            Path(lg.log_dir) / ExperimentWriter.NAME_METRICS_FILE for lg in trainer.loggers if isinstance(lg, CSVLogger)
        ]
        checkpoint["csv_rows"] = csv_rows(metrics_csv[0]) if metrics_csv else None

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn != "fit":
            return
        states = checkpoint.get("rank_states") or [None]
        if len(states) != trainer.world_size:  # another world size, or saved after an error: rank 0's
            log.warning(
                "%s holds the generator and metric states of %d process(es), not %d: every process resumes "
                "with rank 0's (the weights are exact; this epoch's train metrics are not)",
                self.path,
                len(states),
                trainer.world_size,
            )
        self._restored_every_rank = len(states) == trainer.world_size
        self._to_restore = states[trainer.global_rank] if self._restored_every_rank else states[0]
        self._logging_step = checkpoint.get("logging_step")

    # -- signals and errors ------------------------------------------------------------------
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            self.signal = self.signal or signal.SIGTERM
            if not self._holds_this_step(trainer):  # it does when every rank stopped at a batch start (DDP)
                # Rank 0 alone, no gather: a rank that has not stopped with the others must not hang
                # the save within the scheduler's grace period.
                self.save(trainer)
            log.info("Stopped by signal %d; state saved to %s", self.signal, self.path)
            if self.signal in SLURM_SIGNALS and trainer.is_global_zero:
                requeue_slurm_job()
        elif isinstance(exception, Diverged | TrialPruned) or trainer.state.stage != "train":
            return  # the last resume checkpoint is the last good state (a pruned trial is not resumed)
        elif not self._consistent(trainer):
            log.warning("The error came after the optimiser step of a batch: %s keeps the last save", self.path)
        elif self._holds_this_step(trainer):
            log.info("Error during training; %s holds the state before it, with every rank's", self.path)
        else:
            self.save(trainer)
            log.info("Error during training; the state before it is saved to %s", self.path)

    @property
    def exit_code(self) -> int:
        """What schedulers expect from a process stopped by a signal: 128 + its number."""
        return 128 + int(self.signal or signal.SIGTERM)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
