"""Evaluation, the one way this repo measures a network: ``Trainer.test`` (or ``validate``) with
the system's torchmetrics, counting per class as well. The end of training, ``src/eval.py`` and
``src/visualize.py`` all call :func:`evaluate`, so they report the same numbers, on as many
devices and at the precision the trainer has."""

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from alexnet.errors import require
from alexnet.models import load_torchvision_weights
from alexnet.training.system import ClassificationSystem

SPLITS = ("test", "val")


@dataclass
class Evaluation:
    """One split's numbers: micro-averaged top-1/top-5 error (the paper's), each class's, and the
    top-1 confusion counts ``[true, predicted]``."""

    split: str
    err1: float
    err5: float
    per_class: list[dict[str, Any]]
    confusion: torch.Tensor

    @property
    def images(self) -> int:
        return sum(row["n"] for row in self.per_class)


def evaluate(
    trainer: L.Trainer,
    system: ClassificationSystem,
    datamodule: L.LightningDataModule,
    split: str = "test",
    ckpt_path: str | None = None,
    verbose: bool = False,
) -> Evaluation:
    """Run ``split`` through ``trainer`` (``ckpt_path``: weights to load first, as ``Trainer.test``
    takes them). Call it on every process: the per-class counts are synchronised."""
    require(split in SPLITS, "split", split, f"one of {list(SPLITS)}")
    system.track_per_class(split)
    run = trainer.test if split == "test" else trainer.validate
    (metrics,) = run(system, datamodule=datamodule, ckpt_path=ckpt_path, verbose=verbose)
    per_class, confusion = system.per_class_results(list(datamodule.class_names))
    return Evaluation(split, metrics[f"{split}/err1"], metrics[f"{split}/err5"], per_class, confusion)


def load_any_checkpoint(net: nn.Module, path: Path) -> str:
    """Load weights into ``net`` from a Lightning checkpoint of this repo or a torchvision ``alexnet``
    state dict; return which it was. Tensors only: ``weights_only`` refuses pickled code."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        net.load_state_dict({k.removeprefix("net."): v for k, v in state["state_dict"].items() if k.startswith("net.")})
        return "lightning"
    if isinstance(state, dict) and "features.0.weight" in state:
        load_torchvision_weights(net, state)
        return "torchvision"
    raise ValueError(f"{path} is neither a checkpoint of this repo nor torchvision alexnet weights")


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Rows of one shape (e.g. :attr:`Evaluation.per_class`) as a CSV file with a header."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
