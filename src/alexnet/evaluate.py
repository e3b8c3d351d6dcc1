"""Load a checkpoint for evaluation: this repo's, or torchvision's alexnet weights (``src/eval.py``
evaluates through ``Trainer.test``)."""

from pathlib import Path

import torch
from torch import nn

from alexnet.models import load_torchvision_weights


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
