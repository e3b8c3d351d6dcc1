"""ILSVRC-2012: the data module (:mod:`.datamodule`) over files prepared by :mod:`.prepare`, decoded
by :mod:`.decoding`, checked by :mod:`.scan`, augmented by :mod:`.transforms`."""

from alexnet.data.imagenet.datamodule import ImageNetDataModule

__all__ = ["ImageNetDataModule"]
