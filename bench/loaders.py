"""cifar_loader: CIFAR-10 training batches per second, torchvision's dataset + DataLoader against
the tensor-resident pipeline, both with pad-4 random crops, flips and normalisation."""

import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from hydra.utils import instantiate
from torch.utils.data import DataLoader
from torchvision import transforms as T

from alexnet.data.base import default_workers
from bench.harness import Result, compose_config

BATCH, BATCHES, WARMUP = 128, 120, 10


def write_cifar10(root: Path) -> None:
    """50,000 + 10,000 random images in CIFAR-10's pickle format (the content does not matter for speed)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = {
            "data": rng.integers(0, 256, (10_000, 3072), dtype=np.uint8),
            "labels": list(rng.integers(0, 10, 10_000)),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(data, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)


class UncheckedCIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR10 unchanged, except that it skips the md5 checks (the files here are synthetic)."""

    def _check_integrity(self) -> bool:
        return True

    def _load_meta(self) -> None:
        with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
            self.classes = pickle.load(f)[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


def images_per_second(batches) -> float:
    """Steady-state rate: ``BATCHES`` batches timed after ``WARMUP`` (worker start-up excluded)."""
    iterator = iter(batches)
    for _ in range(WARMUP):
        next(iterator)
    start, count = time.perf_counter(), 0
    for _ in range(BATCHES):
        images, _ = next(iterator)
        count += len(images)
    return count / (time.perf_counter() - start)


def cifar_loaders(root: Path):
    """(torchvision's loader, ours, worker count) over the CIFAR-10 copy in ``root``: ours is
    ``data=cifar10`` from the config, the baseline uses that config's mean, std and padding."""
    overrides = ["model=cifar", "data=cifar10", f"data.root={root}", "data.download=false", "data.checksum=false"]
    data = compose_config([*overrides, f"data.batch_size={BATCH}"]).data
    workers = default_workers()
    augment = T.Compose(
        [
            T.RandomCrop(data.image_size, padding=data.crop_padding),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(list(data.mean), list(data.std)),
        ]
    )
    dataset = UncheckedCIFAR10(str(root), train=True, transform=augment)
    baseline = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=True)
    dm = instantiate(data)
    dm.setup("fit")
    return baseline, dm.tensor_loader(dm.train_set, train=True), workers


def run(device: torch.device) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_cifar10(root)
        baseline_loader, our_loader, workers = cifar_loaders(root)
        baseline = images_per_second(baseline_loader)
        ours = images_per_second(our_loader)
    return [
        Result(
            "cifar_loader",
            baseline,
            ours,
            "img/s",
            ">= 5.0",
            f"torchvision CIFAR10 + DataLoader({workers} workers), RandomCrop(32, 4) + flip + ToTensor + Normalize",
            "data.pipeline=tensor (TensorBatchLoader), same augmentation, in the main process",
        )
    ]
