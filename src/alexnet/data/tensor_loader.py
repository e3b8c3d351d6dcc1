"""A loader that keeps a whole split as one uint8 tensor and augments whole batches.

For data that fits in memory (digits, CIFAR), as the CIFAR speed-record scripts do: no worker
processes, no Python per image. Each batch is gathered from the tensor (on the GPU when training
there), cropped, flipped and normalised in a few vectorised operations.

Deterministic under the seed: epoch ``e`` shuffles with a generator seeded by ``(seed, e)`` and
batch ``b`` augments with one seeded by ``(seed, e, b)``, so a batch's content depends on nothing
else, not on worker timing or on what ran before. Under DDP each process takes its own shard of
the epoch's order: the validation/test shards hold every image exactly once; the training shards
are equal in size (``N // world`` images each), so every process takes the same number of steps,
and the at most ``world - 1`` images left over change from epoch to epoch. ``state_dict`` records
the position within the epoch.
"""

from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from alexnet.data.seeds import generator


def random_crop_flip(images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Pad by ``padding`` (zeros), then crop back to the original size at a random offset per image,
    and mirror each image with probability 1/2: torchvision's RandomCrop(padding) + RandomHorizontalFlip
    for a whole ``B×C×H×W`` batch at once."""
    b, c, h, w = images.shape
    device = images.device
    if padding:
        padded = F.pad(images, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(device)
        dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(device)
        rows = (dy[:, None] + torch.arange(h, device=device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=device))[:, None, None, :]
        batch = torch.arange(b, device=device)[:, None, None, None]
        channel = torch.arange(c, device=device)[None, :, None, None]
        images = padded[batch, channel, rows, cols]
    if flip:
        mirror = (torch.rand(b, generator=generator) < 0.5).to(device)
        images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
    return images


class TensorBatchLoader:
    """Batches ``(images, labels)`` from uint8 ``N×C×H×W`` images, normalised floats out.

    Args:
        images, labels: the whole split (move ``images`` to the GPU to train from there).
        batch_size: per process.
        train: shuffle and augment (crop with ``padding``, ``flip``), equal shards; else in order.
        mean, std: per-channel normalisation, in [0, 1] units.
        size: output side; images of another size are resized per batch.
        seed: fixes the order and the augmentation of every epoch.
        rank, world: this process's shard.
        epoch: a callable giving the current epoch (the trainer's); else ``set_epoch``.
        progress: a callable giving the batches of this epoch already trained on (the trainer's
            count), recorded by ``state_dict``; else the batches given out, which runs ahead of
            training when the trainer prefetches.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        train: bool,
        mean: Sequence[float],
        std: Sequence[float],
        size: int | None = None,
        padding: int = 0,
        flip: bool = False,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        epoch: Callable[[], int] | None = None,
        progress: Callable[[], int] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("images must be one uint8 N×C×H×W tensor")
        self.images, self.labels = images, labels.to(images.device)
        self.batch_size, self.train, self.size = batch_size, train, size or images.shape[-1]
        self.padding, self.flip, self.seed, self.rank, self.world = padding, flip, seed, rank, world
        self.mean = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
        self._epoch_fn, self._epoch, self._progress_fn = epoch, 0, progress
        self._position = 0
        self._resume: dict[str, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch

    @property
    def epoch(self) -> int:
        return self._epoch_fn() if self._epoch_fn is not None else self._epoch

    def shard(self) -> torch.Tensor:
        """This process's sample indices for the current epoch, in order."""
        n = len(self.images)
        if not self.train:
            return torch.arange(self.rank, n, self.world)
        order = torch.randperm(n, generator=generator(self.seed, self.epoch))
        per_process = n // self.world
        return order[self.rank * per_process : (self.rank + 1) * per_process]

    def __len__(self) -> int:
        n = len(self.images)
        shard = n // self.world if self.train else len(range(self.rank, n, self.world))
        return -(-shard // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = self.shard().to(self.images.device)
        epoch, resume, self._resume = self.epoch, self._resume, None
        start = resume["batches_done"] if resume and resume["epoch"] == epoch else 0
        for b in range(start, -(-len(indices) // self.batch_size)):
            index = indices[b * self.batch_size : (b + 1) * self.batch_size]
            images = self.images[index]
            if images.shape[-1] != self.size:
                images = TF.resize(images, [self.size, self.size], antialias=True)
            if self.train and (self.padding or self.flip):
                images = random_crop_flip(images, self.padding, self.flip, generator(self.seed, epoch, b))
            self._position = b + 1
            yield (images.float().div_(255) - self.mean) / self.std, self.labels[index]

    def state_dict(self) -> dict[str, int]:
        """The position in the current epoch: batches done (see ``progress``)."""
        done = self._progress_fn() if self._progress_fn is not None else self._position
        return {"epoch": self.epoch, "batches_done": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume: if the next ``iter`` is in the same epoch, it starts after the batches done."""
        self._resume = dict(state)
