"""ILSVRC-2012 as streaming shards: the paper's own representation (§2), written once.

The paper down-sampled every image once: shorter side to 256, then the central 256×256 patch.
:func:`write_shards` does the same to a prepared file tree and encodes each square once as a
JPEG, into chunked shards of Lightning's ``litdata`` (``optimize``). Training then decodes a
256×256 JPEG per image, not a 500×375 one, and reads a few hundred large files, not 1.28 M small
ones, from local disk or object storage (``s3://``, ``gs://``; ``local:`` is a local stand-in).

Layout (``<shards>`` is ``data.shards``, by default ``<data.root>/shards``)::

    <shards>/train/index.json, chunk-*.bin    the training images, in a fixed shuffled order
    <shards>/val/index.json, chunk-*.bin      the validation images, in class order
    <shards>/classes.tsv                      as in the file tree
    <shards>/prepared.json                    side, JPEG quality, counts, bytes, files left out

Reading:

- training (:func:`train_shards` through :func:`shard_loader`): litdata's own streaming order
  (chunks shuffled per epoch and per rank, items shuffled within them), disjoint shards per
  data-parallel replica, the same number of batches on every rank. Each image's random 227 crop
  and flip come from a hash of (seed, epoch, image), not from a worker's generator, and the loader
  is told how many batches of the epoch were trained, so a resumed run reads and augments exactly
  what an uninterrupted one would have.
- validation and test (:class:`EvalShards`): a map-style dataset, sharded without padding like
  the file tree's, so every image is evaluated exactly once.
"""

import csv
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import cycle
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
import torch
from torch.utils.data import Dataset

from alexnet.data.base import DataError
from alexnet.data.imagenet.decoding import encode_square
from alexnet.data.imagenet.folder import list_samples, read_classes
from alexnet.data.imagenet.scan import find_bad_images_cached
from alexnet.data.imagenet.transforms import mix
from alexnet.files import write_atomically

PREPARED = "prepared.json"
SIDE = 256  # §2: the shorter side to 256, then the central 256×256 patch
QUALITY = 90  # see bench/README.md: bytes and pixel error by quality
CHUNK_BYTES = "64MB"
SPLITS = ("train", "val")
REMOTE = ("s3://", "gs://", "azure://", "r2://", "hf://", "local:")
# litdata's private parts used here (its distributed env, the loader's resume counters, the dataset's
# on-demand reads), tested with this version; tests/test_shards.py names the installed one if they go.
LITDATA_TESTED = "0.2.76"


def is_remote(location: str) -> bool:
    return str(location).startswith(REMOTE)


# --- preparation ---------------------------------------------------------------------------------


@dataclass
class SplitReport:
    images: int = 0
    shards: int = 0
    bytes: int = 0
    source_bytes: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ShardReport:
    """What :func:`write_shards` wrote (also ``<shards>/prepared.json``)."""

    side: int = SIDE
    quality: int = QUALITY
    classes: int = 0
    splits: dict[str, SplitReport] = field(default_factory=dict)
    archive_bytes: int = 0

    def summary(self) -> str:
        lines = []
        for split, r in self.splits.items():
            per_image = r.bytes / max(1, r.images)
            lines.append(
                f"{split}: {r.images:,} images in {r.shards} shard(s), {size(r.bytes)} "
                f"({size(per_image)} an image; the files: {size(r.source_bytes)}), {len(r.skipped)} file(s) left out"
            )
        total = sum(r.bytes for r in self.splits.values())
        source = self.archive_bytes or sum(r.source_bytes for r in self.splits.values())
        what = "the archives" if self.archive_bytes else "the files"
        lines.append(
            f"{self.side}×{self.side} JPEG quality {self.quality}: {size(total)} against {size(source)} of "
            f"{what} ({total / max(1, source):.1%})"
        )
        return "\n".join(lines)


def size(count: float) -> str:
    """Bytes for people: 1.2 kB, 31.4 GB."""
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return ""


def write_shards(
    root: Path,
    out: Path,
    side: int = SIDE,
    quality: int = QUALITY,
    workers: int | None = None,
    part_size: int = 20_000,
    seed: int = 0,
    archives: Sequence[Path] = (),
    log: Callable[[str], None] = print,
) -> ShardReport:
    """Write the file tree at ``root`` (``train/``, ``val/``, ``classes.tsv``) as shards in ``out``.

    Files that cannot be read (bad headers, JPEGs cut short: the scan the data module runs, then
    any that fail to decode) are left out and listed in the report. Work is done in parts of
    ``part_size`` images, each written by ``workers`` processes; a part is kept once complete, so an
    interrupted preparation resumes with the parts not yet written. Training images are written in a
    shuffled order (``seed``), so that every chunk holds a mix of classes.
    """
    if is_remote(str(out)):
        raise ValueError(f"write the shards to a local folder, then copy them to {out} (e.g. `aws s3 sync`)")
    classes = read_classes(root)
    wnids = [wnid for wnid, _ in classes]
    out.mkdir(parents=True, exist_ok=True)
    if (root / "classes.tsv").is_file():
        shutil.copyfile(root / "classes.tsv", out / "classes.tsv")
    report = ShardReport(side, quality, len(wnids), archive_bytes=sum(p.stat().st_size for p in archives))
    previous = read_prepared(out)
    for split in SPLITS:
        target = out / split
        done = previous.get("splits", {}).get(split) if previous else None
        if done and (target / "index.json").is_file() and (previous["side"], previous["quality"]) == (side, quality):
            report.splits[split] = SplitReport(**{**done, "skipped": [tuple(s) for s in done["skipped"]]})
            log(f"{split}: already written ({done['images']:,} images)")
            continue
        if target.exists():
            shutil.rmtree(target)
        report.splits[split] = write_split(
            root / split, target, wnids, split == "train", side, quality, workers, part_size, seed, log
        )
        write_prepared(out, report)  # a split is done once it is recorded here
    return report


def write_split(
    folder: Path,
    target: Path,
    wnids: Sequence[str],
    shuffle: bool,
    side: int,
    quality: int,
    workers: int | None,
    part_size: int,
    seed: int,
    log: Callable[[str], None],
) -> SplitReport:
    from litdata import merge_datasets

    samples = list_samples(folder, wnids)
    bad = find_bad_images_cached([p for p, _ in samples], folder.parent / f".scan-{folder.name}.json")
    bad_paths = {p for p, _ in bad}
    kept = [(p, label) for p, label in samples if p not in bad_paths]
    if shuffle:
        kept = [kept[i] for i in np.random.default_rng(seed).permutation(len(kept))]
    # Paths as Path objects: litdata takes strings that name files for inputs to fetch into its cache.
    inputs = [(p, label, f"{p.parent.name}/{p.name}") for p, label in kept]
    parts_dir = target.parent / f".{target.name}-parts"
    parts = []
    workers = workers or max(1, (os.cpu_count() or 1))
    for k, start in enumerate(range(0, len(inputs), part_size)):
        part = parts_dir / f"{k:05d}"
        parts.append(part)
        if (part / ".complete").is_file():
            continue
        for unfinished in (part, failures_of(part)):  # an interrupted part is written again
            if unfinished.exists():
                shutil.rmtree(unfinished)
        chunk = inputs[start : start + part_size]
        optimize_part(chunk, part, side, quality, workers)
        (part / ".complete").write_text(str(len(chunk)))
        log(f"{folder.name}: part {k + 1} of {-(-len(inputs) // part_size)} written ({start + len(chunk):,} images)")
    # The writers listed what they could not decode (no second pass over the written images).
    failed = [tuple(line.split("\t", 1)) for part in parts for line in read_failures(failures_of(part))]
    if len(parts) == 1:
        parts[0].rename(target)
    else:
        merge_datasets([str(p) for p in parts], str(target))
    shutil.rmtree(parts_dir, ignore_errors=True)

    index = json.loads((target / "index.json").read_text())
    stored = sum(c["chunk_size"] for c in index["chunks"])  # items per chunk
    if stored != len(inputs) - len(failed):
        raise DataError(
            f"{target}: {stored:,} images written, but {len(inputs):,} were given and {len(failed)} failed; "
            f"delete {target} and run the preparation again"
        )
    skipped = [(str(p), r) for p, r in bad] + sorted(failed)
    report = SplitReport(
        images=stored,
        shards=len(index["chunks"]),
        bytes=sum(c["chunk_bytes"] for c in index["chunks"]),
        source_bytes=sum(p.stat().st_size for p, _ in samples),
        skipped=skipped,
    )
    if skipped:
        listing = "\n".join(f"  {p}: {r}" for p, r in skipped[:10])
        log(f"{folder.name}: {len(skipped)} bad image file(s) left out:\n{listing}")
    return report


def optimize_part(inputs: list, part: Path, side: int, quality: int, workers: int) -> None:
    """Write ``inputs`` as one litdata dataset in ``part``, in their order, with ``workers`` processes."""
    from litdata import optimize

    optimize(
        fn=partial(encode_square, side=side, quality=quality, failures=failures_of(part)),
        inputs=inputs,
        output_dir=str(part),
        chunk_bytes=CHUNK_BYTES,
        num_workers=min(workers, len(inputs)),
        keep_data_ordered=True,
        mode="overwrite",
        verbose=False,
        # Forked workers start in a tenth of a second; spawned ones import torch first (about 7 s a part).
        start_method="fork" if "fork" in multiprocessing.get_all_start_methods() else None,
    )


def failures_of(part: Path) -> Path:
    """Where the writers of ``part`` list the files they could not decode (beside it, not in it:
    litdata owns the part's folder)."""
    return part.with_name(f"{part.name}.failed")


def read_failures(folder: Path) -> list[str]:
    """The lines ``<path>\t<reason>`` the writers of a part recorded (:func:`encode_square`)."""
    files = sorted(folder.glob("*.tsv")) if folder.is_dir() else []
    return [line for f in files for line in f.read_text().splitlines()]


def write_prepared(out: Path, report: ShardReport) -> None:
    write_atomically(out / PREPARED, json.dumps(asdict(report), indent=1))


def read_prepared(location: str | Path) -> dict | None:
    """``prepared.json`` of local shards (None when absent or remote)."""
    path = Path(str(location)) / PREPARED
    if is_remote(str(location)) or not path.is_file():
        return None
    return json.loads(path.read_text())


def read_shard_classes(root: Path, shards: str) -> list[tuple[str, str]]:
    """The class table: ``<data.root>/classes.tsv``, else the one written beside local shards."""
    if (root / "classes.tsv").is_file() or is_remote(shards):
        return read_classes(root)
    table = Path(shards) / "classes.tsv"
    if not table.is_file():
        raise DataError(
            f"no classes.tsv in {root} or {shards}: write the shards with `python src/prepare_imagenet.py "
            f"--format shards`, or point data.shards at them"
        )
    with open(table, newline="") as f:
        return [(row["wnid"], row["name"]) for row in csv.DictReader(f, delimiter="\t")]


# --- reading ---------------------------------------------------------------------------------------


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


def _streaming_dataset():
    from litdata import StreamingDataset

    return StreamingDataset


def collate_crops(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Training crops (``size×size×3`` views) -> a uint8 ``B×3×size×size`` batch, channels-last in
    memory: stacking whole pixel rows is one copy, about a twentieth of a stack into ``B×3×H×W``
    (the transpose is left to the normalisation, which writes a contiguous batch anyway)."""
    images = torch.stack([image for image, _ in batch]).permute(0, 3, 1, 2)
    return images, torch.tensor([label for _, label in batch])


def train_shards(
    location: str,
    size: int,
    seed: int,
    shard: tuple[int, int],
    encoded: bool = False,
    transform: Callable | None = None,
    cache_dir: str | None = None,
):
    """The training split, streamed: litdata's ``StreamingDataset`` yielding ``(uint8 size×size×3,
    label)`` (batched by :func:`collate_crops`): a random ``size`` crop of the stored square, flipped
    half the time, by :func:`crop_and_flip`. With ``encoded``, the stored JPEG's bytes instead, for the device to decode
    and transform (``transform``). ``shard`` is (this replica, replicas)."""
    StreamingDataset = _streaming_dataset()

    class _TrainShards(StreamingDataset):
        def __getitem__(self, index):
            item = super().__getitem__(index)
            if self.encoded:
                return torch.frombuffer(bytearray(item["image"]), dtype=torch.uint8), item["label"]
            pixels = torch.from_numpy(decode_square(item["image"]))
            room_h, room_w = pixels.shape[0] - self.size, pixels.shape[1] - self.size
            top, left, flip = crop_and_flip(self.augment_seed, self.current_epoch, index.index, room_h, room_w)
            patch = pixels[top : top + self.size, left : left + self.size]  # a view: collate_crops copies it
            return (patch.flip(1) if flip else patch), item["label"]

    dataset = _TrainShards(
        location_for_litdata(location, cache_dir), shuffle=True, drop_last=True, seed=seed, cache_dir=cache_dir
    )
    dataset.size, dataset.augment_seed, dataset.encoded, dataset.transform_on_device = size, seed, encoded, transform
    dataset.shorter_side, dataset.square = None, False  # what decode_on_device needs: the square is stored
    rank, replicas = shard
    from litdata.utilities.env import _DistributedEnv

    detected = _DistributedEnv.detect()
    if (detected.global_rank, detected.world_size) != (rank, replicas):  # columns of a replica share its data
        dataset.distributed_env = _DistributedEnv(replicas, rank, 1)
    return dataset


def location_for_litdata(location: str, cache_dir: str | None) -> Any:
    """A local folder as it is; a remote one with its local cache, if one is named."""
    if is_remote(location) and cache_dir:
        from litdata.streaming.resolver import Dir

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
            store = _streaming_dataset()(location_for_litdata(self.location, self.cache_dir), cache_dir=self.cache_dir)
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


def shard_loader(
    dataset,
    batch_size: int,
    num_workers: int,
    epoch: Callable[[], int],
    progress: Callable[[], int],
    collate_fn: Callable | None = None,
    pin_memory: bool = False,
):
    """litdata's ``StreamingDataLoader`` over :func:`train_shards`, following the trainer: each pass
    is the trainer's epoch, and a pass that starts after ``progress()`` trained batches of it (a
    resumed run) skips exactly the samples those batches took."""
    from litdata import StreamingDataLoader

    class ShardLoader(StreamingDataLoader):
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
            current, trained = epoch(), progress()
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

    kwargs = {"collate_fn": collate_fn} if collate_fn is not None else {}
    return ShardLoader(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory, **kwargs)
