"""The divergence guard under fp16 mixed precision: overflow steps are the scaler's to skip; a
non-finite loss or a collapsed loss scale is divergence. Driven through Lightning's own
MixedPrecision plugin with a CPU GradScaler, so the hooks come in the order a GPU run has them."""

from functools import partial

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from alexnet.training.callbacks import DivergenceGuard
from alexnet.training.stops import Diverged
from alexnet.training.system import ClassificationSystem


class Overflow(L.Callback):
    """Makes the (scaled) gradients of the chosen steps infinite, as an fp16 overflow does."""

    def __init__(self, steps: set[int] | None = None, loss_at: int | None = None) -> None:
        self.steps, self.loss_at = steps or set(), loss_at

    def on_after_backward(self, trainer, pl_module) -> None:
        if trainer.global_step in self.steps:
            next(pl_module.parameters()).grad.view(-1)[0] = float("inf")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.loss_at:
            pl_module.net[1].weight.data.fill_(float("nan"))


def fit(tmp_path, init_scale: float, overflow: Overflow) -> tuple[L.Trainer, ClassificationSystem]:
    torch.manual_seed(0)
    system = ClassificationSystem(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), 3, partial(torch.optim.SGD, lr=0.1))
    data = DataLoader(TensorDataset(torch.randn(48, 3, 2, 2), torch.randint(0, 3, (48,))), batch_size=4)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=8,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler)],
        callbacks=[DivergenceGuard(), overflow],
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(system, data)
    return trainer, system


def test_overflowing_fp16_steps_are_skipped_by_the_scaler_not_called_divergence(tmp_path):
    trainer, system = fit(tmp_path, init_scale=1024.0, overflow=Overflow(steps={1, 2}))
    assert trainer.global_step == 8 and trainer.state.finished
    assert trainer.precision_plugin.scaler.get_scale() == 256.0  # halved once per overflow, nothing applied
    assert all(torch.isfinite(p).all() for p in system.parameters())


def test_a_non_finite_loss_under_fp16_is_divergence(tmp_path):
    with pytest.raises(Diverged, match=r"non-finite loss at step 3 \(epoch 0\)"):
        fit(tmp_path, init_scale=1024.0, overflow=Overflow(loss_at=3))


def test_a_collapsed_fp16_loss_scale_is_divergence_and_names_the_threshold(tmp_path):
    with pytest.raises(Diverged, match=r"fp16 loss scale 0.5 below 1 at step 3"):
        fit(tmp_path, init_scale=4.0, overflow=Overflow(steps=set(range(8))))  # 4 -> 2 -> 1 -> 0.5
