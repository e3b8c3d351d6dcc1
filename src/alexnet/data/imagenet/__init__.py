"""ILSVRC-2012: the data module (:mod:`.datamodule`) over files prepared by :mod:`.prepare` (a file
tree) and :mod:`.shards` (litdata shards), decoded by :mod:`.decoding`, checked by :mod:`.scan`,
augmented by :mod:`.transforms`. Imported on first use, like :mod:`alexnet.data`."""


def __getattr__(name: str):
    if name == "ImageNetDataModule":
        from alexnet.data.imagenet.datamodule import ImageNetDataModule

        return ImageNetDataModule
    raise AttributeError(f"module 'alexnet.data.imagenet' has no attribute {name!r}")


__all__ = ["ImageNetDataModule"]
