"""Evaluate a checkpoint (this repo's, or torchvision's alexnet weights) on a data split."""

from pathlib import Path
from typing import Any

import torch
from torch import nn

from alexnet.models import load_torchvision_weights
from alexnet.visualize import BatchTransform, per_class_errors, predict


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


def evaluate(
    net: nn.Module, dataset: Any, names: list[str], device: torch.device, transform: BatchTransform | None = None
) -> dict[str, Any]:
    """Top-1/top-5 error over ``dataset`` (patches averaged when it yields several), and per class.
    ``transform`` is the data module's batch transform (``on_after_batch_transfer``)."""
    probs, labels = predict(net, dataset, device, transform)
    top5 = probs.topk(min(5, probs.shape[1]), dim=1).indices
    return {
        "images": len(labels),
        "err1": 1 - (top5[:, 0] == labels).float().mean().item(),
        "err5": 1 - (top5 == labels[:, None]).any(dim=1).float().mean().item(),
        "per_class": per_class_errors(probs, labels, names),
    }
