"""Data modules: the embedded digits set, CIFAR-10/100, ImageNet (ILSVRC-2012).

Imported on first use (PEP 562), so that a process that needs only a light part (the ImageNet
shard writer's worker processes, say) does not import Lightning."""

from importlib import import_module

_WHERE = {
    "CIFARDataModule": "alexnet.data.cifar",
    "DataError": "alexnet.data.base",
    "DigitsDataModule": "alexnet.data.digits",
    "ImageClassificationDataModule": "alexnet.data.base",
    "ImageNetDataModule": "alexnet.data.imagenet.datamodule",
    "per_device_batch_size": "alexnet.data.base",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'alexnet.data' has no attribute {name!r}")
