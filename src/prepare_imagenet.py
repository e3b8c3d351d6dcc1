"""Prepare ILSVRC-2012 for training: python src/prepare_imagenet.py --archives DIR --root DIR

Streams the official archives into <root>/train/<wnid>/, <root>/val/<wnid>/ and classes.tsv,
resumes where an interrupted run stopped, and checks the counts. See alexnet/data/imagenet/prepare.py.
"""

import argparse
import sys
from pathlib import Path

from alexnet.data.imagenet.prepare import OFFICIAL, prepare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archives", type=Path, required=True, help="folder holding the three ILSVRC2012 archives")
    parser.add_argument("--root", type=Path, required=True, help="where to write the layout (data.root)")
    subset = parser.add_mutually_exclusive_group()
    subset.add_argument("--classes", help="comma-separated wnids to prepare (a subset)")
    subset.add_argument("--num-classes", type=int, help="prepare the first N classes in wnid order (a subset)")
    args = parser.parse_args(argv)
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
    print(
        f"train with: python src/train.py model=paper data=imagenet data.root={args.root}"
        + (f" data.num_classes={result.classes}" if result.classes != OFFICIAL["classes"] else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
