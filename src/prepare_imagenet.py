"""Prepare ILSVRC-2012 for training: python src/prepare_imagenet.py --archives DIR --root DIR [--format shards]

Streams the official archives into <root>/train/<wnid>/, <root>/val/<wnid>/ and classes.tsv,
resumes where an interrupted run stopped, and checks the counts (alexnet/data/imagenet/prepare.py).
With --format shards it then writes the paper's representation (§2: every image's central square
at 256×256, JPEG-encoded once) into litdata shards at <root>/shards, in parallel and resumably
(alexnet/data/imagenet/shard_writer.py); train on them with data.format=shards.
"""

import argparse
import sys
from pathlib import Path

from alexnet.data.imagenet.prepare import DEVKIT, OFFICIAL, TRAIN_TAR, VAL_TAR, prepare
from alexnet.data.imagenet.shards import QUALITY, SIDE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archives", type=Path, required=True, help="folder holding the three ILSVRC2012 archives")
    parser.add_argument("--root", type=Path, required=True, help="where to write the layout (data.root)")
    subset = parser.add_mutually_exclusive_group()
    subset.add_argument("--classes", help="comma-separated wnids to prepare (a subset)")
    subset.add_argument("--num-classes", type=int, help="prepare the first N classes in wnid order (a subset)")
    parser.add_argument(
        "--format", choices=("folder", "shards"), default="folder", help="shards: also write litdata shards (§2)"
    )
    parser.add_argument("--shards", type=Path, help="where to write the shards (default: <root>/shards)")
    parser.add_argument("--side", type=int, default=SIDE, help=f"the stored square's side (default {SIDE})")
    parser.add_argument("--quality", type=int, default=QUALITY, help=f"JPEG quality of the squares (default {QUALITY})")
    parser.add_argument("--workers", type=int, help="processes writing shards (default: every usable core)")
    args = parser.parse_args(argv)
    if not 1 <= args.quality <= 100 or args.side < 1:
        print(f"error: --quality must be 1-100 and --side positive; got {args.quality}, {args.side}", file=sys.stderr)
        return 2
    try:
        result = prepare(args.archives, args.root, args.classes.split(",") if args.classes else None, args.num_classes)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.summary())
    if result.problems:
        print(f"{len(result.problems)} problem(s); run the same command again to resume:", file=sys.stderr)
        for problem in result.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    if (
        not (args.classes or args.num_classes)
        and result.classes == OFFICIAL["classes"]
        and (result.train, result.val) != (OFFICIAL["train"], OFFICIAL["val"])
    ):
        print(
            f"note: ILSVRC-2012 has {OFFICIAL['train']:,} train and {OFFICIAL['val']:,} val images; "
            "your archives differ",
            file=sys.stderr,
        )
    command = f"python src/train.py model=paper data=imagenet data.root={args.root}" + (
        f" data.num_classes={result.classes}" if result.classes != OFFICIAL["classes"] else ""
    )
    if args.format == "shards":
        from alexnet.data.base import usable_cores
        from alexnet.data.imagenet.shard_writer import size, write_shards

        shards = args.shards or args.root / "shards"
        archives = [args.archives / name for name in (TRAIN_TAR, VAL_TAR, DEVKIT)]
        written = write_shards(
            args.root, shards, args.side, args.quality, args.workers or usable_cores(), archives=archives
        )
        print(written.summary())
        tree = sum(split.source_bytes for split in written.splits.values())
        print(
            f"The shards hold every image that data.format=shards trains and evaluates on: the file tree they "
            f"were written from, {args.root / 'train'} and {args.root / 'val'} ({size(tree)}), may now be deleted "
            f"(keep it for data.format=folder, or to write the shards again at another --side or --quality)"
        )
        command += " data.format=shards" + (f" data.shards={shards}" if args.shards else "")
        command += f" data.resize={args.side}" if args.side != SIDE else ""
    print(f"train with: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
