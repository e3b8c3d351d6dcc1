"""The network: the AlexNet builder, its layer factories and tools to inspect it."""

from alexnet.models.alexnet import AlexNet
from alexnet.models.layers import LocalResponseNorm
from alexnet.models.torchvision_weights import load_torchvision_weights

__all__ = ["AlexNet", "LocalResponseNorm", "load_torchvision_weights"]
