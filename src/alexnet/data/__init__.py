"""Data modules: the embedded digits set, CIFAR-10/100."""

from alexnet.data.base import DataError, ImageClassificationDataModule, per_device_batch_size
from alexnet.data.cifar import CIFARDataModule
from alexnet.data.digits import DigitsDataModule

__all__ = [
    "CIFARDataModule",
    "DataError",
    "DigitsDataModule",
    "ImageClassificationDataModule",
    "per_device_batch_size",
]
