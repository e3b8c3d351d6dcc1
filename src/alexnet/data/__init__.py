"""Data modules: the embedded digits set, CIFAR-10/100, ImageNet (ILSVRC-2012)."""

from alexnet.data.base import DataError, ImageClassificationDataModule, per_device_batch_size
from alexnet.data.cifar import CIFARDataModule
from alexnet.data.digits import DigitsDataModule
from alexnet.data.imagenet import ImageNetDataModule

__all__ = [
    "CIFARDataModule",
    "DataError",
    "DigitsDataModule",
    "ImageClassificationDataModule",
    "ImageNetDataModule",
    "per_device_batch_size",
]
