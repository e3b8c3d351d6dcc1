"""shard_loader: ImageNet training images per second on one core, from prepared shards to a
normalised training batch (and, the feed rows, to the uint8 batch a worker hands a GPU), against
ImageFolder + PIL + torchvision transforms on the raw JPEGs; the disk bytes per image of both
formats; the loader's memory.

``python -m bench.shards --quality`` prints the JPEG quality table of bench/README.md: bytes per
image and pixel error of the stored square against the square before encoding, per quality.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.harness import Result
from bench.jpeg import BATCH, images_per_second, jpeg_loaders, write_image_folder
from bench.memory import BATCHES, drain, peak_mb

SIDE, QUALITY = 256, 90


def write_tree(root: Path, scale: float) -> None:
    """``bench.jpeg``'s ImageFolder tree (photos at ``scale`` × 500×375), with its class table."""
    write_image_folder(root, scale)
    wnids = sorted(p.name for p in (root / "train").iterdir())
    rows = "".join(f"{i}\t{w}\t{w}\n" for i, w in enumerate(wnids))
    (root / "classes.tsv").write_text("index\twnid\tname\n" + rows)


def shard_loaders(root: Path):
    """(ours: the shard loader over ``root/shards``, the batch step), one core, in this process."""
    from alexnet.data import ImageNetDataModule
    from alexnet.data.imagenet.transforms import to_normalised_floats

    dm = ImageNetDataModule(
        root=str(root), num_classes=4, image_size=227, batch_size=BATCH, num_workers=0, format="shards"
    )
    dm.setup("fit")
    return dm.train_dataloader(), lambda batch: (to_normalised_floats(batch[0], 0.1), batch[1])


def prepare(root: Path) -> dict:
    from alexnet.data.imagenet.shard_writer import write_shards
    from alexnet.data.imagenet.shards import read_prepared

    write_shards(root, root / "shards", SIDE, QUALITY, workers=1, log=lambda *_: None)
    return read_prepared(root / "shards")


def run(device: torch.device) -> list[Result]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per core, as bench.jpeg
    try:
        return measure()
    finally:
        torch.set_num_threads(threads)


def measure() -> list[Result]:
    results = []
    for scale, label in ((1.0, "500×375 (ImageNet's typical size)"), (2.0, "1000×750 (ImageNet's larger photos)")):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_tree(root, scale)
            prepared = prepare(root)
            reference, _, _ = jpeg_loaders(root)
            ours, finish = shard_loaders(root)
            images_per_second(ours, finish)  # a first pass: the page cache and litdata's index, as in training
            # Medians over passes (a pass of ours takes a tenth of a second: one alone is noisy).
            baseline = statistics.median(images_per_second(reference) for _ in range(3))
            rate = statistics.median(images_per_second(ours, finish) for _ in range(7))
            feed = statistics.median(images_per_second(ours) for _ in range(7))
            reference_label = f"ImageFolder + PIL + torchvision transforms on the raw JPEGs, one core, {label}"
            loader_label = (
                f"data.format=shards: litdata's StreamingDataLoader, the stored {SIDE}×{SIDE} JPEG (quality "
                f"{QUALITY}) decoded by simplejpeg, uint8 crop and flip"
            )
            results += [
                Result(
                    f"shard_loader_{scale:g}x",
                    baseline,
                    rate,
                    "img/s",
                    ">= 4.0",
                    reference_label,
                    f"{loader_label}, then the batch's noise and normalisation on the same core (training on a CPU)",
                ),
                # Training on a GPU, the loader's workers stop at the uint8 batch: the device adds the noise and
                # normalises; torchvision's transforms do all of their work in the workers either way.
                Result(
                    f"shard_loader_feed_{scale:g}x",
                    baseline,
                    feed,
                    "img/s",
                    ">= 4.0",
                    reference_label,
                    f"{loader_label}: what a worker does when a GPU trains (noise and normalisation on the device)",
                ),
            ]
            if scale == 1.0:
                train = prepared["splits"]["train"]
                results.append(
                    Result(
                        "shard_bytes_per_image",
                        train["source_bytes"] / train["images"],
                        train["bytes"] / train["images"],
                        "B/img",
                        None,
                        f"the JPEG files, {label}",
                        f"the shards: {SIDE}×{SIDE} squares at quality {QUALITY}, 4:2:0",
                    )
                )
                python = sys.executable
                measured = [
                    peak_mb([python, "-m", "bench.shards", "--job", side, str(root)]) for side in ("folder", "shards")
                ]
                results.append(
                    Result(
                        "memory_shard_loader",
                        *measured,
                        "MB",
                        None,
                        f"the ImageFolder baseline, {BATCHES} batches",
                        f"the shard loader, {BATCHES} batches",
                    )
                )
    return results


def job(side: str, root: str) -> None:
    """One loader for ``BATCHES`` batches, in the process being measured (``bench.memory.peak_mb``)."""
    if side == "folder":
        loader, finish = jpeg_loaders(Path(root))[0], lambda batch: batch
    else:
        loader, finish = shard_loaders(Path(root))
    drain(loader, finish)


def write_square_shards(root: Path, images: int, workers: int) -> None:
    """``images`` 256×256 squares cut from scikit-learn's photos, as preparation stores them, in
    shards at ``root/shards`` (train and val), with a 1000-class table: for ``shard_feed_rate``."""
    import simplejpeg
    from sklearn.datasets import load_sample_images

    from alexnet.data.imagenet.shard_writer import optimize_part

    photos = load_sample_images().images
    folder = root / "squares"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(min(images, 64)):  # 64 distinct files, repeated: decoding costs the same
        photo = photos[i % 2]
        y, x = (i * 37) % (photo.shape[0] - SIDE), (i * 53) % (photo.shape[1] - SIDE)
        path = folder / f"{i}.JPEG"
        path.write_bytes(simplejpeg.encode_jpeg(np.ascontiguousarray(photo[y : y + SIDE, x : x + SIDE])))
        paths.append(path)
    inputs = [(paths[i % len(paths)], i % 1000, f"{i}") for i in range(images)]
    for split in ("train", "val"):
        optimize_part(inputs, root / "shards" / split, SIDE, QUALITY, workers)
    (root / "classes.tsv").write_text("index\twnid\tname\n" + "".join(f"{i}\tn{i:08d}\tc{i}\n" for i in range(1000)))


def shard_feed_rate(device: torch.device, batch: int, steps: int, width: float = 1.0, warmup: int = 3) -> float:
    """Training images/s of ``model=paper`` (bf16 + channels-last on a GPU) fed by the shard loader
    (``data.format=shards``, its default workers), against the same network on a synthetic batch in
    ``bench.gpu``: how far the loader keeps up with the GPU."""
    from hydra.utils import instantiate

    from alexnet.data.base import default_workers
    from bench.harness import compose_config, trainer_step_seconds

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_square_shards(root, batch * (warmup + steps + 1), default_workers())
        cfg = compose_config(
            [
                "model=paper",
                "data=imagenet",
                f"model.width={width}",
                f"data.root={root}",
                "data.format=shards",
                f"data.batch_size={batch}",
                f"system.channels_last={device.type == 'cuda'}",
            ]
        )
        torch.manual_seed(0)
        system = instantiate(cfg.system, net=instantiate(cfg.model), scheduler=None)
        dm = instantiate(cfg.data)
        precision = "bf16-mixed" if device.type == "cuda" else "32-true"
        seconds = trainer_step_seconds(system, dm, device, warmup, steps=warmup + steps, precision=precision)
    return batch / seconds


def quality_table(qualities=(75, 85, 90, 95), subsamplings=("420", "444")) -> None:
    """Bytes per image and pixel error of the stored square, per JPEG quality, over the photos of
    ``bench.jpeg`` (500×375) fitted to 256×256 as preparation fits them."""
    import simplejpeg

    from alexnet.data.imagenet.decoding import decode

    with tempfile.TemporaryDirectory() as tmp:
        write_image_folder(Path(tmp), 1.0)
        squares = [
            np.ascontiguousarray(decode(p, SIDE, square=True).permute(1, 2, 0).numpy())
            for p in sorted(Path(tmp, "train").rglob("*.JPEG"))[:120]
        ]
    print("| quality | chroma | kB an image | decode (ms) | PSNR (dB) | mean abs error (of 255) |")
    print("|---:|---|---:|---:|---:|---:|")
    for sub in subsamplings:
        for q in qualities:
            encoded = [simplejpeg.encode_jpeg(s, quality=q, colorspace="RGB", colorsubsampling=sub) for s in squares]
            start = time.perf_counter()
            decoded = [simplejpeg.decode_jpeg(data, "RGB") for data in encoded]
            ms = (time.perf_counter() - start) * 1000 / len(encoded)
            err = np.stack([d.astype(np.float64) - s for d, s in zip(decoded, squares)])
            psnr = 10 * np.log10(255**2 / np.mean(err**2))
            kb = np.mean([len(e) for e in encoded]) / 1e3
            print(f"| {q} | {sub} | {kb:.1f} | {ms:.2f} | {psnr:.1f} | {np.mean(np.abs(err)):.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", action="store_true", help="print the JPEG quality table")
    parser.add_argument("--job", nargs=2, metavar=("SIDE", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        job(*args.job)
    else:
        quality_table() if args.quality else print(run(torch.device("cpu")))
