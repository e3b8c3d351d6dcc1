"""Writing ImageNet's shards: each image's central 256 square, encoded once as a JPEG, into
litdata's chunks (``optimize``), in parts that a rerun keeps once complete. The layout is
:mod:`alexnet.data.imagenet.shards`; ``src/prepare_imagenet.py --format shards`` runs it."""

import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from alexnet.data.base import DataError
from alexnet.data.imagenet.decoding import encode_square
from alexnet.data.imagenet.folder import list_samples, read_classes
from alexnet.data.imagenet.scan import find_bad_images_cached
from alexnet.data.imagenet.shards import CHUNK_BYTES, PREPARED, QUALITY, SIDE, SPLITS, is_remote, read_prepared
from alexnet.files import write_atomically


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
