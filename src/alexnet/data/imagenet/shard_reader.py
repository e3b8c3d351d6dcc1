"""Reading ImageNet's shards (layout: :mod:`alexnet.data.imagenet.shards`): the training split
streamed through litdata, with each image's crop and flip a function of (seed, epoch, image) and a
loader that resumes mid-epoch from the trainer's count; the evaluation splits by index.

Imported only for ``data.format=shards``: litdata takes seconds to import.
"""

import os
from collections.abc import Callable
from itertools import cycle
from typing import Any

import numpy as np
import simplejpeg
import torch
from litdata import StreamingDataLoader, StreamingDataset
from litdata.streaming.resolver import Dir
from litdata.utilities.env import _DistributedEnv
from torch.utils.data import Dataset

from alexnet.data.imagenet.shards import is_remote
from alexnet.data.seeds import mix


def crop_and_flip(seed: int, epoch: int, index: int, room_h: int, room_w: int) -> tuple[int, int, bool]:
    """The training crop's top-left corner and flip for image ``index`` in ``epoch``: uniform over the
    ``(room_h + 1) × (room_w + 1)`` positions, flipped half the time (§4.1), fixed by its arguments."""
    h = mix(seed, epoch, index)
    return h % (room_h + 1), (h >> 21) % (room_w + 1), bool((h >> 42) & 1)


def decode_square(data: bytes | memoryview) -> np.ndarray:
    """A stored square, ``H×W×3`` uint8."""
    return simplejpeg.decode_jpeg(data, "RGB")


def to_chw(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)


def collate_crops(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Training crops (``size×size×3`` views) -> a uint8 ``B×3×size×size`` batch, channels-last in
    memory: stacking whole pixel rows is one copy, about a twentieth of a stack into ``B×3×H×W``
    (the transpose is left to the normalisation, which writes a contiguous batch anyway)."""
    images = torch.stack([image for image, _ in batch]).permute(0, 3, 1, 2)
    return images, torch.tensor([label for _, label in batch])


def location_for_litdata(location: str, cache_dir: str | None) -> Any:
    """A local folder as it is; a remote one with its local cache, if one is named."""
    if is_remote(location) and cache_dir:
        return Dir(path=cache_dir, url=location)
    return location


class EvalShards(Dataset):
    """A stored split for evaluation: ``(transform(square), label)`` by index, so that a sampler can
    give every image to exactly one process. With ``encoded``, the JPEG's bytes instead."""

    def __init__(self, location: str, transform: Callable, encoded: bool = False, cache_dir: str | None = None):
        self.location, self.cache_dir, self.transform, self.encoded = location, cache_dir, transform, encoded
        self.shorter_side, self.square = None, False
        self._store, self._pid = None, None
        self._length = len(self.store)
        self.labels = LazyLabels(self)

    @property
    def store(self):
        """litdata's reader of the split, opened once in each process: a forked loader worker must not
        use its parent's, whose download thread it does not have."""
        if self._store is None or self._pid != os.getpid():
            store = StreamingDataset(location_for_litdata(self.location, self.cache_dir), cache_dir=self.cache_dir)
            # Whole chunks into the cache, not each image by a ranged read: evaluation reads them in order.
            store._on_demand_bytes = False  # read by the cache it creates (litdata <0.3)
            self._store, self._pid = store, os.getpid()
        return self._store

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_store": None, "_pid": None}

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.store[int(index)]
        if self.encoded:
            return torch.frombuffer(bytearray(item["image"]), dtype=torch.uint8), item["label"]
        return self.transform(to_chw(decode_square(item["image"]))), item["label"]

    def label(self, index: int) -> int:
        return self.store[int(index)]["label"]

    def raw(self, index: int) -> torch.Tensor:
        """The stored square, uint8 ``3×256×256``, for display."""
        return to_chw(decode_square(self.store[int(index)]["image"]))

    @staticmethod
    def collate(batch):
        return [image for image, _ in batch], torch.tensor([label for _, label in batch])

    def with_transform(self, transform: Callable) -> "EvalShards":
        copy = EvalShards.__new__(EvalShards)
        copy.__dict__.update(self.__getstate__())
        copy.transform, copy.encoded = transform, False
        copy.labels = LazyLabels(copy)
        return copy


class LazyLabels:
    """The labels of a stored split, read when asked for (a picture needs a few, not 1.28 M)."""

    def __init__(self, dataset: EvalShards) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index) -> torch.Tensor:
        index = torch.as_tensor(index)
        values = [self.dataset.label(i) for i in index.flatten().tolist()]
        return torch.tensor(values, dtype=torch.long).reshape(index.shape)


class TrainShards(StreamingDataset):
    """The training split, streamed: litdata's ``StreamingDataset`` yielding ``(uint8 size×size×3,
    label)`` (batched by :func:`collate_crops`): a random ``size`` crop of the stored square, flipped
    half the time, by :func:`crop_and_flip`. With ``encoded``, the stored JPEG's bytes instead, for
    the device to decode and transform (``transform``). ``shard`` is (this replica, replicas).
    """

    shorter_side, square = None, False  # what decode_on_device needs: the square is stored

    def __init__(
        self,
        location: str,
        size: int,
        seed: int,
        shard: tuple[int, int],
        encoded: bool = False,
        transform: Callable | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(
            location_for_litdata(location, cache_dir), shuffle=True, drop_last=True, seed=seed, cache_dir=cache_dir
        )
        self.size, self.augment_seed, self.encoded, self.transform_on_device = size, seed, encoded, transform
        rank, replicas = shard
        detected = _DistributedEnv.detect()
        if (detected.global_rank, detected.world_size) != (rank, replicas):  # columns of a replica share its data
            self.distributed_env = _DistributedEnv(replicas, rank, 1)

    def __getitem__(self, index):
        item = super().__getitem__(index)
        if self.encoded:
            return torch.frombuffer(bytearray(item["image"]), dtype=torch.uint8), item["label"]
        pixels = torch.from_numpy(decode_square(item["image"]))
        room_h, room_w = pixels.shape[0] - self.size, pixels.shape[1] - self.size
        top, left, flip = crop_and_flip(self.augment_seed, self.current_epoch, index.index, room_h, room_w)
        patch = pixels[top : top + self.size, left : left + self.size]  # a view: collate_crops copies it
        return (patch.flip(1) if flip else patch), item["label"]


class ShardLoader(StreamingDataLoader):
    """litdata's ``StreamingDataLoader`` over :class:`TrainShards`, following the trainer: each pass
    is the trainer's ``epoch()``, and a pass that starts after ``progress()`` trained batches of it
    (a resumed run) skips exactly the samples those batches took."""

    def __init__(
        self,
        dataset: TrainShards,
        batch_size: int,
        num_workers: int,
        epoch: Callable[[], int],
        progress: Callable[[], int],
        collate_fn: Callable | None = None,
        pin_memory: bool = False,
    ) -> None:
        kwargs = {"collate_fn": collate_fn} if collate_fn is not None else {}
        # Each pass's iterator seeds its workers (which draw nothing: crops are hashed) from this
        # generator, not training's: a resumed run makes iterators at other moments than an
        # uninterrupted one, which would otherwise move dropout's random numbers.
        super().__init__(
            dataset,
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            generator=torch.Generator().manual_seed(0),
            **kwargs,
        )
        self._trainer_epoch, self._trainer_progress = epoch, progress

    def __iter__(self):
        self._follow_trainer()
        yield from super().__iter__()

    # Lightning saves a stateful loader's state in its checkpoints and loads it on resume; here the
    # position follows the trainer's count instead, so there is nothing to save or load.
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def _follow_trainer(self) -> None:
        current, trained = self._trainer_epoch(), self._trainer_progress()
        if trained == 0:
            self.current_epoch, self.restore = current, False  # litdata's __iter__ counts it to current + 1
            return
        # litdata's own resume, from the state it would have saved after ``trained`` batches; built
        # here, as it is a function of the trainer's count (the state at save time would count the
        # batch Lightning fetched ahead). Its batches come from the workers in turn.
        workers, samples = max(1, self.num_workers), trained * self.batch_size
        self.dataset.reset_state_dict()
        self.dataset.set_epoch(current + 1)
        self.dataset.load_state_dict(self.dataset.state_dict(samples, self.num_workers, self.batch_size))
        self.current_epoch = current + 1
        self._num_samples_yielded_streaming = samples
        self._latest_worker_idx = (trained - 1) % workers + 1
        self._worker_idx = cycle(range(workers))
        self._worker_idx_iter = iter(self._worker_idx)
        for _ in range(self._latest_worker_idx):
            next(self._worker_idx_iter)
        self.restore = True
