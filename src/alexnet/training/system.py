"""The Lightning system: the network, its loss, top-1/top-5 metrics per split, and the optimiser."""

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassStatScores

from alexnet.errors import is_number, require
from alexnet.models.scores import class_scores

MONITOR = "val/err1"  # what the LR schedule watches and the checkpoint keeps the best of (§5)


class TopKError(MulticlassAccuracy):
    """``1 - top-k accuracy``, micro-averaged: the error rate the paper reports. A metric of its own,
    so that Lightning's logging computes it, on every rank in the same order, rather than a
    ``compute()`` in an epoch-end hook (a collective that a rank-0-only progress bar can interleave
    with others: a DDP hang)."""

    higher_is_better = False

    def compute(self) -> torch.Tensor:
        return 1 - super().compute()


def per_class_rows(top1: torch.Tensor, top5: torch.Tensor, names: Sequence[str]) -> list[dict[str, Any]]:
    """Top-1 and top-5 error of each class over its images (None for a class without any), from
    per-class stat scores ``class × (tp, fp, tn, fn, support)`` as ``MulticlassStatScores(average=None)``
    gives them (with ``top_k=1`` and ``top_k=5``)."""
    rows = []
    for c, name in enumerate(names):
        n = int(top1[c, 4])
        errors = {f"err{k}": 1 - int(stats[c, 0]) / n if n else None for k, stats in ((1, top1), (5, top5))}
        rows.append({"class": c, "name": name, "n": n, **errors})
    return rows


def error_metrics(num_classes: int) -> MetricCollection:
    """Top-1 and top-5 error, micro-averaged (the fraction of all images, as the paper counts).
    Accuracy is one minus these, so it is not counted again: each step runs one top-k count for
    each k (two more metrics for the accuracies doubled the metrics' time per step: 3.7 against
    1.8 ms at batch 128 and 1,000 classes on this repo's CPU)."""
    return MetricCollection(
        {
            "err1": TopKError(num_classes, top_k=1, average="micro"),
            "err5": TopKError(num_classes, top_k=min(5, num_classes), average="micro"),
        },
        compute_groups=False,  # grouping compares states after one batch, where top-1 and top-5 can agree
    )


def metrics_of(module: nn.Module) -> list[Metric]:
    return [m for m in module.modules() if isinstance(m, Metric)]


class ClassificationSystem(L.LightningModule):
    """Cross-entropy training of ``net`` with top-1/top-5 error (one minus accuracy) for each split.

    Logged: ``{train,val,test}/{loss,err1,err5}`` per epoch, ``train/loss_step`` per step
    and ``train/lr``. Epoch values are torchmetrics states, synchronised across processes once per
    epoch, never per step, and only by Lightning's logging: no hook here calls a collective (a
    ``compute()`` there once met a rank-0-only progress bar's sync: a DDP hang), so every rank runs
    the same collectives in the same order whichever callbacks read the values.

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
        lr = getattr(optimizer, "keywords", {}).get("lr")  # a partial, as conf/optimizer makes it
        require(lr is None or (is_number(lr) and lr > 0), "optimizer.lr", lr, "a number > 0")
        # Only plain values go into checkpoints; the factories are code, rebuilt from the config.
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.memory_format)
        if compile:
            self.net.compile()  # in place: state_dict names stay net.<layer>
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        metrics = error_metrics(num_classes)
        # One metric object per split (Lightning's advice); e.g. self.val_err logs val/err1, val/err5.
        for split in ("train", "val", "test"):
            setattr(self, f"{split}_err", metrics.clone(prefix=f"{split}/"))
            setattr(self, f"{split}_loss", MeanMetric())
        self._lr_logged_for = -1
        # The processes whose metric states add up to the whole batch: all (None), except when each
        # replica's columns run in processes of their own and see the same images (column_parallel).
        self.metric_process_group = None
        self.per_class_split: str | None = None  # see track_per_class
        self.predict_top_k = 5  # the classes predict_step returns per image
        for metric in metrics_of(self):
            metric.persistent(True)  # in checkpoints: a run resumed mid-epoch ends with the same numbers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self._lr_logged_for != self.current_epoch:  # once an epoch (the first batch, or the first after a resume)
            lr = self.trainer.optimizers[0].param_groups[0]["lr"]
            # The same on every rank; sync_dist silences Lightning's warning.
            self.log("train/lr", lr, on_step=False, on_epoch=True, sync_dist=True)
            self._lr_logged_for = self.current_epoch
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> tuple[torch.Tensor, ...]:
        """(top-k probabilities, their classes, the batch's labels as given) for ``predict_top_k``:
        the softmax of the scores evaluation computes (over several patches: their mean softmax)."""
        images, labels = batch
        if images.ndim == 4:
            images = images.contiguous(memory_format=self.memory_format)
        probs = class_scores(self.net, images).float().softmax(dim=-1)
        top = probs.topk(min(self.predict_top_k, probs.shape[-1]), dim=-1)
        return top.values, top.indices, labels

    def track_per_class(self, split: str) -> None:
        """From now on, also count each class's top-1 and top-5 hits and the top-1 confusions on
        ``split`` (``val`` or ``test``), for :meth:`per_class_results`. Off in training: it costs a
        little each step. (See :func:`alexnet.training.evaluation.evaluate`.)"""
        k, group = self.hparams.num_classes, {"process_group": self.metric_process_group}
        self.per_class = MetricCollection(
            {
                "top1": MulticlassStatScores(k, top_k=1, average=None, **group),
                "top5": MulticlassStatScores(k, top_k=min(5, k), average=None, **group),
                "confusion": MulticlassConfusionMatrix(k, **group),
            },
            compute_groups=False,
        ).to(self.device)
        self.per_class_split = split

    def per_class_results(self, names: Sequence[str]) -> tuple[list[dict[str, Any]], torch.Tensor]:
        """(:func:`per_class_rows`, the top-1 confusion counts ``[true, predicted]``) since
        :meth:`track_per_class`. Under DDP it syncs: call it on every rank."""
        stats = {key: value.cpu() for key, value in self.per_class.compute().items()}
        return per_class_rows(stats["top1"], stats["top5"], names), stats["confusion"]

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        images, labels = batch
        if images.ndim == 4:
            images = images.contiguous(memory_format=self.memory_format)
        logits = class_scores(self.net, images)
        loss = F.cross_entropy(logits, labels)
        errors, mean_loss = getattr(self, f"{split}_err"), getattr(self, f"{split}_loss")
        errors.update(logits, labels)
        mean_loss.update(loss.detach(), weight=len(labels))
        if split == self.per_class_split:
            self.per_class.update(logits, labels)
        if split == "train":
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        self.log(f"{split}/loss", mean_loss, on_step=False, on_epoch=True)
        for name, metric in errors.items():  # the bar shows those of val and test
            self.log(name, metric, on_step=False, on_epoch=True, prog_bar=split != "train")
        return loss

    def configure_optimizers(self) -> dict:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            # strict=False: an epoch without validation (check_val_every_n_epoch > 1) skips the update
            "lr_scheduler": {"scheduler": scheduler, "monitor": MONITOR, "interval": "epoch", "strict": False},
        }
