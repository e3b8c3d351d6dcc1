"""From the network's outputs to class scores, for one view of an image or several."""

import torch
from torch import nn


def class_scores(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Logits for ``B×3×H×W`` images; for ``B×P×3×H×W`` (several patches per image, e.g. the paper's
    10), the log of the softmax averaged over the patches (§4.1), so cross-entropy stays the NLL."""
    if images.ndim == 4:
        return net(images)
    b, p = images.shape[:2]
    probs = net(images.flatten(0, 1)).softmax(dim=-1).view(b, p, -1).mean(dim=1)
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
