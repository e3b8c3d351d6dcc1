"""What every classification data module here shares: uint8 image tensors, a fixed stratified
split, per-sample augmentation, and a global batch size divided across devices."""

import os
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from PIL import UnidentifiedImageError
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from alexnet.data.imagenet.decoding import decode
from alexnet.data.prediction import Skipped, readable_images
from alexnet.data.tensor_loader import TensorBatchLoader
from alexnet.errors import require
from alexnet.lightning_compat import trained_batches


class DataError(RuntimeError):
    """A dataset that is missing, incomplete or inconsistent with the config."""


def per_device_batch_size(global_batch_size: int, trainer: L.Trainer | None) -> int:
    """The batch each data-parallel shard of ``trainer`` (see :func:`data_shard`) loads, so that all
    of them together make ``global_batch_size``. Called before any process starts, by the run, and
    by every data module's ``setup``."""
    shards = data_shard(trainer)[1]
    world = trainer.world_size if trainer is not None else 1
    what = "processes (devices × nodes)" if shards == world else "replicas (devices × nodes ÷ model.columns)"
    allowed = f"the global batch, divided evenly across the {shards} {what}: a multiple of {shards}"
    require(global_batch_size >= 1 and global_batch_size % shards == 0, "data.batch_size", global_batch_size, allowed)
    return global_batch_size // shards


def data_shard(trainer: L.Trainer | None) -> tuple[int, int]:
    """(this process's shard, the number of shards) of the data: one shard per data-parallel
    replica, as the trainer's strategy counts them (the columns of one replica share a shard)."""
    kwargs = getattr(trainer.strategy, "distributed_sampler_kwargs", None) if trainer is not None else None
    return (kwargs["rank"], kwargs["num_replicas"]) if kwargs else (0, 1)


def stratified_split(labels: torch.Tensor, fraction: float | int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, held out) with ``fraction`` of each class held out; fixed by ``seed``.

    An integer ``fraction`` is a count of held-out samples, as in scikit-learn.
    """
    index = torch.arange(len(labels))
    kept, held = train_test_split(index.numpy(), test_size=fraction, stratify=labels.numpy(), random_state=seed)
    return torch.as_tensor(kept), torch.as_tensor(held)


class ImageTensorDataset(Dataset):
    """Images held as one ``uint8`` tensor ``N × C × H × W``; ``transform`` runs per sample."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: v2.Transform) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError("images must be uint8 N×C×H×W with one label per image")
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[index]), self.labels[index]

    def raw(self, index: int) -> torch.Tensor:
        """The stored image, uint8 ``C×H×W``, for display."""
        return self.images[index]


class UnpaddedShardSampler(DistributedSampler):
    """Each process takes every ``world``-th sample, with no padding, so that val and test see every
    image exactly once under DDP (``DistributedSampler`` repeats a few to even out the shards).
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))


def usable_cores() -> int:
    """The CPU cores this process may run on: its affinity (what SLURM's ``--cpus-per-task`` or
    ``taskset`` grant), not every core of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers(processes: int = 1) -> int:
    """Loader workers for each of the ``processes`` on this machine (devices per node): the usable
    cores shared among them, at most 8 each."""
    return max(1, min(8, usable_cores() // max(1, processes)))


class ClassificationDataModule(L.LightningDataModule):
    """What every data module here shares: the global batch divided across processes, the loaders
    (val and test sharded without padding under DDP), the class count checked against the data.

    Subclasses implement ``build()``, which sets ``train_set``, ``val_set``, ``test_set`` and
    ``class_names``, ``evaluation_set(split)`` and ``predict_on(files)``. Datasets provide ``labels``
    and ``raw(i)``, the image as uint8 ``C×H×W`` for display.
    """

    class_names: list[str]

    def __init__(
        self, num_classes: int, batch_size: int = 128, num_workers: int | str = 0, pin_memory: bool = True
    ) -> None:
        super().__init__()
        batch_ok = isinstance(batch_size, int) and batch_size >= 1
        require(batch_ok, "data.batch_size", batch_size, "a positive integer (the global batch)")
        require(isinstance(num_classes, int) and num_classes >= 2, "data.num_classes", num_classes, "an integer >= 2")
        workers_ok = num_workers == "auto" or (isinstance(num_workers, int) and num_workers >= 0)
        auto = "an integer >= 0, or auto (the usable cores shared among this machine's devices)"
        require(workers_ok, "data.num_workers", num_workers, auto)
        self.num_classes, self.batch_size, self.pin_memory = num_classes, batch_size, pin_memory
        self.workers = num_workers
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.predict_set: Dataset | None = None  # see predict_on
        self.batch_size_per_device = batch_size

    def build(self) -> None:
        raise NotImplementedError

    def evaluation_set(self, split: str) -> Dataset:
        """``split``'s images ("train", "val" or "test") as evaluated: no augmentation."""
        raise NotImplementedError

    def predict_on(self, files: Sequence[Path]) -> list[Skipped]:
        """Prepare ``Trainer.predict`` on image ``files``: ``predict_dataloader`` then gives each
        readable file's image as this data's evaluation sees its own images (its transform, its
        normalisation: the test loader's code), labelled with the file's index in ``files``, and
        ``class_names`` are set. Return the files left out, with the reason."""
        raise NotImplementedError

    def preprocessing(self) -> str:
        """How evaluation turns an image file into the network's input, in words (for an export's
        consumers); ``mean`` and ``std`` are the normalisation's."""
        raise NotImplementedError

    def report(self) -> dict:
        """Anything about the data that ``results.json`` should record (e.g. files left out)."""
        return {}

    def setup(self, stage: str | None = None) -> None:
        if self.trainer is not None:
            self.batch_size_per_device = per_device_batch_size(self.batch_size, self.trainer)
        if self.train_set is not None or stage == "predict":  # predict_on prepared what prediction reads
            return
        self.build()
        if len(self.class_names) != self.num_classes:
            raise DataError(
                f"data.num_classes={self.num_classes} but {type(self).__name__} has "
                f"{len(self.class_names)} classes; set data.num_classes={len(self.class_names)}"
            )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, shuffle=False)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        sampler = None
        rank, shards = data_shard(self.trainer)
        if not shuffle and shards > 1:  # Lightning leaves a DistributedSampler as it is
            sampler = UnpaddedShardSampler(dataset, shards, rank)
        return DataLoader(
            dataset,
            batch_size=self.batch_size_per_device,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=dataset.collate if getattr(dataset, "encoded", False) else None,  # JPEG bytes: a list
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            # The workers' seeds from a generator of the loader's own, not training's: a resumed run makes
            # an evaluation loader's iterator at another moment (no sanity check), which would move dropout's.
            generator=None if shuffle else torch.Generator().manual_seed(0),
        )

    @property
    def num_workers(self) -> int:
        """``data.num_workers``; ``auto``: :func:`default_workers` for this machine's processes."""
        if self.workers != "auto":
            return self.workers
        return default_workers(self.trainer.num_devices if self.trainer is not None else 1)


class ImageClassificationDataModule(ClassificationDataModule):
    """Base for data held in memory as uint8 tensors (digits, CIFAR).

    Subclasses implement ``load() -> (train_images, train_labels, test_images, test_labels)`` and
    set ``class_names``; this class carves the validation split out of train and builds the
    transforms.

    Args:
        num_classes: must match the data; the model's fc8 is sized from it.
        image_size: side the model expects; images of another size are resized to it.
        batch_size: global batch (all devices together).
        val_size: held out of train, a fraction or a count, stratified by class.
        split_seed: fixes the split, independently of the run's seed.
        crop_padding: train augmentation: pad by this many pixels, then crop back at random.
        flip: train augmentation: random horizontal flips.
        mean, std: per-channel normalisation in [0, 1] units; None computes them on train.
        pipeline: "tensor" (the default): each split as one uint8 tensor, augmented a whole batch at
            a time (``TensorBatchLoader``); "dataloader": a ``Dataset`` with per-image torchvision
            transforms and a ``DataLoader``, the reference the tensor pipeline is checked against.
        seed: fixes the tensor pipeline's order and augmentation (the run's seed).
    """

    grey = False  # images stored grey (as three equal channels): a colour image to predict on is made grey

    def __init__(
        self,
        num_classes: int,
        image_size: int,
        batch_size: int = 128,
        num_workers: int | str = 0,
        val_size: float | int = 0.1,
        split_seed: int = 0,
        crop_padding: int = 4,
        flip: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pin_memory: bool = True,
        pipeline: str = "tensor",
        seed: int = 0,
    ) -> None:
        require(pipeline in ("tensor", "dataloader"), "data.pipeline", pipeline, "tensor or dataloader")
        super().__init__(num_classes, batch_size, num_workers, pin_memory)
        self.save_hyperparameters(logger=False)

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def build(self) -> None:
        train_x, train_y, test_x, test_y = self.load()
        kept, held = stratified_split(train_y, self.hparams.val_size, self.hparams.split_seed)
        mean, std = self.hparams.mean, self.hparams.std
        if mean is None or std is None:
            pixels = train_x[kept].float().div_(255).transpose(0, 1).flatten(1)
            mean, std = pixels.mean(1).tolist(), pixels.std(1).tolist()
        self.mean, self.std = list(mean), list(std)
        train_tf, eval_tf = self.transforms(native_size=train_x.shape[-1])
        self.train_set = ImageTensorDataset(train_x[kept], train_y[kept], train_tf)
        self.val_set = ImageTensorDataset(train_x[held], train_y[held], eval_tf)
        self.test_set = ImageTensorDataset(test_x, test_y, eval_tf)

    def evaluation_set(self, split: str) -> ImageTensorDataset:
        dataset = getattr(self, f"{split}_set")
        return ImageTensorDataset(dataset.images, dataset.labels, self.val_set.transform)

    def train_dataloader(self):
        return self._split_loader(self.train_set, train=True)

    def val_dataloader(self):
        return self._split_loader(self.val_set, train=False)

    def test_dataloader(self):
        return self._split_loader(self.test_set, train=False)

    def predict_dataloader(self):
        return self._split_loader(self.predict_set, train=False)

    def preprocessing(self) -> str:
        side, size = self.test_set.images.shape[-1], self.hparams.image_size
        grey = ", grey" if self.grey else ""
        then = f", then to {size}×{size} (bilinear, antialiased)" if size != side else ""
        return f"RGB; the central square resized to {side}×{side}{grey}{then}; /255, minus mean, over std"

    def predict_on(self, files: Sequence[Path]) -> list[Skipped]:
        """Each file's central square, resized to the stored images' side (grey for grey data) and
        held like a split, then the test split's loader and transform."""
        self.setup()  # the statistics (mean, std) and class names come from the data
        side = self.test_set.images.shape[-1]
        readable, skipped = readable_images(files, side)
        images, indices = [], []
        for index, path in readable:
            try:
                image = decode(path, side, square=True)
            except (OSError, UnidentifiedImageError, ValueError) as err:
                skipped.append((path, f"cannot decode: {err}"))
                continue
            if self.grey and not (image == image[:1]).all():
                image = TF.rgb_to_grayscale(image, num_output_channels=3)
            images.append(image)
            indices.append(index)
        self.predict_set = None
        if images:
            self.predict_set = ImageTensorDataset(torch.stack(images), torch.tensor(indices), self.val_set.transform)
        return skipped

    def _split_loader(self, dataset: ImageTensorDataset, train: bool):
        if self.hparams.pipeline == "tensor":
            return self.tensor_loader(dataset, train)
        return self._loader(dataset, shuffle=train)

    def tensor_loader(self, dataset: ImageTensorDataset, train: bool) -> TensorBatchLoader:
        """``data.pipeline=tensor``'s loader over ``dataset``: on the trainer's device, this process's
        shard, following the trainer's epoch and (training) its count of trained batches."""
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        rank, shards = data_shard(trainer)
        images = dataset.images if device.type == "cpu" else self._on_device(dataset, device)
        return TensorBatchLoader(
            images,
            dataset.labels,
            self.batch_size_per_device,
            train,
            self.mean,
            self.std,
            size=self.hparams.image_size,
            padding=self.hparams.crop_padding,
            flip=self.hparams.flip,
            seed=self.hparams.seed,
            rank=rank,
            world=shards,
            epoch=self._trainer_epoch if trainer is not None else None,
            progress=self._trained_batches if trainer is not None and train else None,
        )

    def _trainer_epoch(self) -> int:
        return self.trainer.current_epoch

    def _trained_batches(self) -> int:
        return trained_batches(self.trainer)

    def _on_device(self, dataset: ImageTensorDataset, device: torch.device) -> torch.Tensor:
        """The split's images on ``device``, copied there once."""
        cache = self.__dict__.setdefault("_device_images", {})
        key = (id(dataset), str(device))
        if key not in cache:
            cache[key] = dataset.images.to(device)
        return cache[key]

    def transforms(self, native_size: int) -> tuple[v2.Transform, v2.Transform]:
        """(train, eval) transforms from uint8 ``C×H×W`` to a normalised float image."""
        size = self.hparams.image_size
        resize = [v2.Resize(size, antialias=True)] if native_size != size else []
        finish = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]
        augment = []
        if self.hparams.crop_padding:
            augment.append(v2.RandomCrop(size, padding=self.hparams.crop_padding))
        if self.hparams.flip:
            augment.append(v2.RandomHorizontalFlip())
        return v2.Compose(resize + augment + finish), v2.Compose(resize + finish)
