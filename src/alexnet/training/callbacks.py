"""Callbacks of this repo's own (Lightning's cover the rest)."""

import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, RichModelSummary, RichProgressBar
from lightning.pytorch.utilities.model_summary import get_human_readable_count

from alexnet.models.fast_lrn import kernel_for
from alexnet.models.layer_table import mult_adds_by_layer
from alexnet.models.layers import LocalResponseNorm
from alexnet.training.resume_checkpoint import ResumeCheckpoint
from alexnet.training.stops import Diverged

log = logging.getLogger(__name__)


class ModelSummary(RichModelSummary):
    """Lightning's rich model summary with the network's FLOPs per image, then the kernel the LRN
    layers run on this run's device (``norm.impl``: fused, eager or torch; a fused kernel that
    failed to compile says why).

    Lightning counts FLOPs by running ``example_input_array`` through the system, which this repo
    leaves unset (it would compile a ``system.compile`` network for a batch of one, and run a
    column-parallel network's collectives on rank 0 alone), so it printed "Total FLOPs: 0". The
    counts here are ``make summary``'s multiply-adds (:func:`mult_adds_by_layer`, on the meta
    device), times 2 as torch's ``FlopCounterMode`` counts (a multiply and an add).

    Args:
        max_depth: module depth of the table, as Lightning's.
        input_size: the side of the network's square input (``model.input_size``).
    """

    def __init__(self, max_depth: int = 1, input_size: int = 227, **summarize_kwargs) -> None:
        super().__init__(max_depth, **summarize_kwargs)
        self.depth, self.input_size = max_depth, input_size
        self._flops: dict[str, int] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self.depth:
            by_layer = mult_adds_by_layer(pl_module.net, self.input_size)
            self._flops = {f"net.{name}": 2 * macs for name, macs in by_layer.items()}
        super().on_fit_start(trainer, pl_module)
        device = trainer.strategy.root_device
        impls = sorted({m.impl for m in pl_module.modules() if isinstance(m, LocalResponseNorm)})
        if trainer.is_global_zero and impls:
            kernels = {impl: kernel_for(impl, device) for impl in impls}
            note = " (compiled at the first batch)" if "fused" in kernels.values() else ""
            listing = ", ".join(f"norm.impl={impl}: {kernel}" for impl, kernel in kernels.items())
            log.info("LRN kernel on %s: %s%s", device.type, listing, note)

    def summarize(self, summary_data: list[tuple[str, list[str]]], *args, total_flops: int, **kwargs) -> None:
        """Lightning's table and totals, its FLOPs column and total replaced by the counts above."""
        names = dict(summary_data)["Name"]
        flops = [sum(f for layer, f in self._flops.items() if (layer + ".").startswith(name + ".")) for name in names]
        column = [get_human_readable_count(f) for f in flops]
        summary_data = [(key, column if key == "FLOPs" else values) for key, values in summary_data]
        super().summarize(summary_data, *args, total_flops=sum(self._flops.values()), **kwargs)


class LastCheckpoint(Checkpoint):
    """``last.ckpt`` (``path``): the whole training state at the end of the last finished epoch,
    written at the end of every epoch (after its validation), so ``checkpoint=last`` and a resume
    from it mean what they say.

    Lightning's ``ModelCheckpoint(save_last=True)`` no longer does this: since 2.6 it writes
    ``last.ckpt`` only in a step where it also wrote a top-k checkpoint, which with ``save_top_k=1``
    is when the best improves, so its ``last.ckpt`` was a copy of the best. A ``Checkpoint``: Lightning
    runs it after the other callbacks, so the file holds their states for this epoch (the best so far).
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)  # conf/callbacks puts it where RunDir.last_checkpoint reads it

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path)  # every rank: the strategy writes on rank 0 and waits for it


class DivergenceGuard(L.Callback):
    """Stop a run that has diverged, before the optimiser applies the step that shows it, so the
    weights and the checkpoints already written stay good.

    Without a loss scaler (fp32, bf16): the first step whose gradients are not finite (a NaN/inf
    loss makes them so). With one (``trainer.precision=16-mixed``), overflowing gradients are
    normal, most of all while the scale settles: the scaler skips those steps itself. The run has
    diverged only when the loss itself is not finite, or when the scale falls below
    ``min_loss_scale`` (default 1: the gradients then overflow fp16 even unscaled, so every step
    is skipped and training has stopped in all but name).

    Checks every ``every_n_steps`` steps; each check waits for the step's values (on a GPU, a
    synchronisation), so raise it there if that shows in ``make bench``.
    """

    def __init__(self, every_n_steps: int = 1, min_loss_scale: float = 1.0) -> None:
        self.every_n_steps, self.min_loss_scale = every_n_steps, min_loss_scale

    def _due(self, trainer: L.Trainer) -> bool:
        return self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if _loss_scaler(trainer) is not None and self._due(trainer) and not torch.isfinite(loss.detach()).all():
            self._stop(trainer, "non-finite loss")

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if not self._due(trainer):
            return
        scaler = _loss_scaler(trainer)
        if scaler is not None:  # gradients are unscaled here; the scaler skips this step if they overflowed
            scale = scaler.get_scale()  # a float: one device sync
            if scale < self.min_loss_scale:
                self._stop(trainer, f"fp16 loss scale {scale:g} below {self.min_loss_scale:g}")
            return
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.stack(torch._foreach_norm(grads)).sum()):
            self._stop(trainer, "non-finite loss or gradient")

    @staticmethod
    def _stop(trainer: L.Trainer, what: str) -> None:
        run = trainer.default_root_dir  # the run directory (conf/trainer)
        resume = next((c for c in trainer.callbacks if isinstance(c, ResumeCheckpoint)), None)
        last_good = resume.path if resume is not None else None
        after = (
            f"Last good checkpoint: {last_good}; continue from it with: "
            f"python src/train.py resume={run} optimizer.lr=<lower>"
            if last_good is not None and last_good.is_file()
            else "No checkpoint was written yet."
        )
        raise Diverged(
            f"{what} at step {trainer.global_step} (epoch {trainer.current_epoch}); "
            f"the weights were not updated with it. Likely causes: a learning rate too high for this "
            f"normalisation and init (try a lower optimizer.lr, or norm=batchnorm), or bad input values. {after}"
        )


def _loss_scaler(trainer: L.Trainer) -> torch.amp.GradScaler | None:
    """fp16 mixed precision's gradient scaler, when one is active."""
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    return scaler if scaler is not None and scaler.is_enabled() else None


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar, reading the logged metrics every ``metrics_every`` training
    batches instead of after each: reading them converts the step loss with ``.item()``, which on
    a GPU waits for the step to finish, so a per-batch read stops the CPU from queueing ahead.
    (The loggers read them every ``trainer.log_every_n_steps``, the default here.)"""

    def __init__(self, metrics_every: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metrics_every, self._skip_metrics = max(1, metrics_every), False
        self._shown: dict = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        self._skip_metrics = (batch_idx + 1) % self.metrics_every != 0
        try:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        finally:
            self._skip_metrics = False

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        if not self._skip_metrics:
            self._shown = super().get_metrics(trainer, pl_module)
        return self._shown  # between reads, the bar shows the last values read
