"""What a Lightning checkpoint leaves out and an exact resume needs: the random number generators,
the training metrics' accumulated states, and how far the metrics CSV had got."""

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric


def rng_states(cuda: bool, torch_only: bool = False) -> dict[str, Any]:
    """The random number generators' states, as tensors and plain values (``weights_only``-loadable):
    torch's (and with ``cuda``, each GPU's), and unless ``torch_only``, numpy's and Python's. A
    training step draws from torch's alone, which costs about a microsecond to copy."""
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if cuda:
        states["cuda"] = torch.cuda.get_rng_state_all()
    if not torch_only:
        kind, keys, position, has_gauss, cached = np.random.get_state()
        states["numpy"] = [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached]
        states["python"] = random.getstate()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if "numpy" in states:
        kind, keys, position, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    if "python" in states:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))


def training_metrics(module: torch.nn.Module, prefix: str = "train_") -> dict[str, Metric]:
    """The torchmetrics a training step updates (named ``train_*`` in
    :class:`~alexnet.training.system.ClassificationSystem`), by ``state_dict`` prefix."""
    return {name: m for name, m in module.named_modules() if isinstance(m, Metric) and name.startswith(prefix)}


def metric_states(metrics: dict[str, Metric]) -> dict[str, torch.Tensor]:
    """Copies of the metrics' accumulated states, by ``state_dict`` key."""
    return {
        f"{name}.{key}": value.detach().clone()
        for name, metric in metrics.items()
        for key, value in metric.metric_state.items()
        if isinstance(value, torch.Tensor)
    }


def to_cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.cpu() for k, v in tensors.items()}


def csv_rows(metrics_csv: Path) -> int:
    """Data rows in a metrics CSV (0 if there is none yet)."""
    if not metrics_csv.is_file():
        return 0
    with open(metrics_csv, newline="") as f:
        return max(0, sum(1 for _ in f) - 1)
