"""Loading torchvision's ``alexnet`` weights into the ``one_column`` preset.

torchvision numbers its layers (``features.0`` … ``classifier.6``); this repo names them after the
paper (``features.conv1.conv`` … ``classifier.fc8``). Only the names differ: the ``one_column``
preset has torchvision's geometry, so the tensors load unchanged and give the same outputs.
"""

from collections.abc import Mapping

import torch
from torch import nn

# torchvision index -> this repo's module name.
TORCHVISION_NAMES = {
    "features.0": "features.conv1.conv",
    "features.3": "features.conv2.conv",
    "features.6": "features.conv3.conv",
    "features.8": "features.conv4.conv",
    "features.10": "features.conv5.conv",
    "classifier.1": "classifier.fc6.fc",
    "classifier.4": "classifier.fc7.fc",
    "classifier.6": "classifier.fc8",
}


def from_torchvision_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``alexnet`` state dict to this repo's module names."""
    renamed = {}
    for key, tensor in state_dict.items():
        module, _, param = key.rpartition(".")
        if module not in TORCHVISION_NAMES:
            raise KeyError(f"{key!r} is not a parameter of torchvision's alexnet")
        renamed[f"{TORCHVISION_NAMES[module]}.{param}"] = tensor
    return renamed


def load_torchvision_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load torchvision ``alexnet`` weights (e.g. ``AlexNet_Weights.IMAGENET1K_V1``) into ``model``.

    ``model`` must have torchvision's geometry (``model=one_column``); any mismatch raises.
    """
    model.load_state_dict(from_torchvision_state_dict(state_dict), strict=True)
