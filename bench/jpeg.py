"""jpeg_pipeline: ImageNet training images per second on one core, ImageFolder + PIL + torchvision
transforms against this repo's pipeline, both doing the paper's recipe (shorter side 256, centre
256, random 227 crop, flip, PCA colour noise, normalisation)."""

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from sklearn.datasets import load_sample_images
from torch.utils.data import DataLoader
from torchvision import transforms as T

from alexnet.data import ImageNetDataModule
from alexnet.data.imagenet.transforms import IMAGENET_MEAN, IMAGENET_STD, lighting, to_normalised_floats
from bench.harness import Result

IMAGES, BATCH = 240, 16


def write_image_folder(root: Path, scale: float) -> None:
    """``IMAGES`` JPEGs cut from scikit-learn's two photos, at ``scale`` × ImageNet's typical 500×375."""
    photos = [Image.fromarray(p) for p in load_sample_images().images]
    size = (round(500 * scale), round(375 * scale))
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(IMAGES if split == "train" else 8):
            folder = root / split / f"n{i % 4:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            photo = photos[i % 2]
            x, y = int(rng.integers(0, 140)), int(rng.integers(0, 52))
            photo.crop((x, y, x + 500, y + 375)).resize(size, Image.BILINEAR).save(folder / f"{i}.JPEG", quality=90)


def pca_noise(image: torch.Tensor) -> torch.Tensor:
    return lighting(image[None], 0.1)[0]


def images_per_second(loader, finish=lambda batch: batch) -> float:
    start, count = time.perf_counter(), 0
    for batch in loader:
        images, _ = finish(batch)
        count += len(images)
    return count / (time.perf_counter() - start)


def run(device: torch.device) -> list[Result]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per core: both sides on one thread, torch's resizes and arithmetic included
    try:
        return measure()
    finally:
        torch.set_num_threads(threads)


def jpeg_loaders(root: Path):
    """(the reference loader, ours, ours' batch step) over the ImageFolder tree in ``root``."""
    reference = T.Compose(
        [
            T.Resize(256),
            T.CenterCrop(256),
            T.RandomCrop(227),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            pca_noise,
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    folder = torchvision.datasets.ImageFolder(str(root / "train"), transform=reference)
    dm = ImageNetDataModule(root=str(root), num_classes=4, image_size=227, batch_size=BATCH, num_workers=0, scan=False)
    dm.setup("fit")
    return (
        DataLoader(folder, batch_size=BATCH, num_workers=0),
        DataLoader(dm.train_set, batch_size=BATCH, num_workers=0),
        lambda batch: (to_normalised_floats(batch[0], 0.1), batch[1]),
    )


def measure() -> list[Result]:
    results = []
    for scale, label in ((1.0, "500×375 (ImageNet's typical size)"), (2.0, "1000×750 (ImageNet's larger photos)")):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_image_folder(root, scale)
            reference, ours, finish = jpeg_loaders(root)
            baseline, ours = images_per_second(reference), images_per_second(ours, finish)
        results.append(
            Result(
                f"jpeg_pipeline_{scale:g}x",
                baseline,
                ours,
                "img/s",
                ">= 2.0",
                f"ImageFolder + PIL + torchvision transforms, one core, {label}",
                "ImageFolderDataset (simplejpeg, reduced-size decode when large, uint8) + batch noise, normalisation",
            )
        )
    return results
