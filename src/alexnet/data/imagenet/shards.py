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

Writing is :mod:`~alexnet.data.imagenet.shard_writer`; reading, :mod:`~alexnet.data.imagenet.shard_reader`:

- training (``TrainShards`` through ``ShardLoader``): litdata's own streaming order (chunks
  shuffled per epoch and per rank, items shuffled within them), disjoint shards per
  data-parallel replica, the same number of batches on every rank. Each image's random 227 crop
  and flip come from a hash of (seed, epoch, image), not from a worker's generator, and the loader
  is told how many batches of the epoch were trained, so a resumed run reads and augments exactly
  what an uninterrupted one would have.
- validation and test (:class:`EvalShards`): a map-style dataset, sharded without padding like
  the file tree's, so every image is evaluated exactly once.
"""

import csv
import json
from pathlib import Path

from alexnet.data.base import DataError
from alexnet.data.imagenet.folder import read_classes

PREPARED = "prepared.json"
SIDE = 256  # §2: the shorter side to 256, then the central 256×256 patch
QUALITY = 90  # see bench/README.md: bytes and pixel error by quality
CHUNK_BYTES = "64MB"
SPLITS = ("train", "val")
REMOTE = ("s3://", "gs://", "azure://", "r2://", "hf://", "local:")
# litdata's private parts used by shard_reader.py (its distributed env, the loader's resume counters, the dataset's
# on-demand reads), tested with this version; tests/test_shards.py names the installed one if they go.
LITDATA_TESTED = "0.2.76"


def is_remote(location: str) -> bool:
    return str(location).startswith(REMOTE)


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
