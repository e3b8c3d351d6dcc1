"""The Lightning system: the network, its loss, top-1/top-5 metrics per split, and the optimiser."""

from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

MONITOR = "val/err1"  # what the LR schedule watches and the checkpoint keeps the best of (§5)


def class_scores(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Logits for ``B×3×H×W`` images; for ``B×P×3×H×W`` (several patches per image, e.g. the paper's
    10), the log of the softmax averaged over the patches (§4.1), so cross-entropy stays the NLL."""
    if images.ndim == 4:
        return net(images)
    b, p = images.shape[:2]
    probs = net(images.flatten(0, 1)).softmax(dim=-1).view(b, p, -1).mean(dim=1)
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


def accuracy_metrics(num_classes: int) -> MetricCollection:
    """Top-1 and top-5 accuracy, micro-averaged (the fraction of all images, as the paper counts)."""
    return MetricCollection(
        {
            "acc1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "acc5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
        }
    )


def metrics_of(module: nn.Module) -> list[Metric]:
    return [m for m in module.modules() if isinstance(m, Metric)]


class ClassificationSystem(L.LightningModule):
    """Cross-entropy training of ``net`` with top-1/top-5 accuracy and error for each split.

    Logged: ``{train,val,test}/{loss,acc1,acc5,err1,err5}`` per epoch, ``train/loss_step`` per step
    ``val/acc1_best``, the best validation top-1 so far, and ``train/lr``. Epoch values are torchmetrics states,
    synchronised across processes once per epoch, never per step.

    Args:
        net: the network.
        num_classes: for the metrics.
        optimizer: ``params -> Optimizer``, e.g. ``partial(torch.optim.SGD, lr=0.01)``.
        scheduler: ``optimizer -> LRScheduler``, or None for a constant rate. A
            ``ReduceLROnPlateau`` watches ``val/err1`` each epoch.
        channels_last: keep the network and its inputs in NHWC memory format (faster convolutions
            on tensor-core GPUs, with ``trainer.precision=bf16-mixed``).
        compile: run the network through ``torch.compile`` (a few minutes of compiling, faster steps).
            The checkpoint keeps the plain network's parameter names.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., object] | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        # Only plain values go into checkpoints; the factories are code, rebuilt from the config.
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.memory_format)
        # Kept out of the module tree (not a submodule), so state_dict names stay net.<layer>.
        self.__dict__["run_net"] = torch.compile(self.net) if compile else self.net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        metrics = accuracy_metrics(num_classes)
        # One metric object per split (Lightning's advice); e.g. self.val_acc logs val/acc1, val/acc5.
        for split in ("train", "val", "test"):
            setattr(self, f"{split}_acc", metrics.clone(prefix=f"{split}/"))
            setattr(self, f"{split}_loss", MeanMetric())
        self.val_acc1_best = MaxMetric()
        self._lr_logged_for = -1
        for metric in metrics_of(self):
            metric.persistent(True)  # in checkpoints: a run resumed mid-epoch ends with the same numbers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_net(x)

    def on_train_start(self) -> None:
        # The sanity check's validation batches must not count as the best epoch.
        self.val_acc1_best.reset()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self._lr_logged_for != self.current_epoch:  # once an epoch (the first batch, or the first after a resume)
            lr = self.trainer.optimizers[0].param_groups[0]["lr"]
            self.log(
                "train/lr", lr, on_step=False, on_epoch=True, sync_dist=True
            )  # same everywhere; silences a warning
            self._lr_logged_for = self.current_epoch
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        images, labels = batch
        logits = class_scores(
            self.run_net, images.contiguous(memory_format=self.memory_format) if images.ndim == 4 else images
        )
        loss = F.cross_entropy(logits, labels)
        accuracy, mean_loss = getattr(self, f"{split}_acc"), getattr(self, f"{split}_loss")
        accuracy.update(logits, labels)
        mean_loss.update(loss.detach(), weight=len(labels))
        if split == "train":
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        self.log(f"{split}/loss", mean_loss, on_step=False, on_epoch=True)
        self.log_dict(accuracy, on_step=False, on_epoch=True, prog_bar=split != "train")
        return loss

    def on_train_epoch_end(self) -> None:
        self._log_errors("train")

    def on_validation_epoch_end(self) -> None:
        acc1 = self._log_errors("val")
        self.val_acc1_best(acc1)
        self.log("val/acc1_best", self.val_acc1_best.compute(), prog_bar=True, sync_dist=True)

    def on_test_epoch_end(self) -> None:
        self._log_errors("test")

    def _log_errors(self, split: str) -> torch.Tensor:
        """Log ``err = 1 - acc`` beside the accuracies (the paper reports errors); return top-1 acc."""
        values = getattr(self, f"{split}_acc").compute()  # synced across processes, cached for the logged metric
        acc1 = values[f"{split}/acc1"]
        # Equal on every process already; sync_dist (one all-reduce an epoch) tells Lightning so.
        self.log(f"{split}/err1", 1 - acc1, sync_dist=True)
        self.log(f"{split}/err5", 1 - values[f"{split}/acc5"], sync_dist=True)
        return acc1

    def configure_optimizers(self) -> dict:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": MONITOR, "interval": "epoch"},
        }
