"""make bench: every benchmark against its baseline, in one process; a table and outputs/bench/latest.json.

python -m bench.run [--only lrn|loaders|jpeg|shards|overhead|memory ...] [--out outputs/bench/latest.json]
"""

import argparse
import sys
from pathlib import Path

import torch

from bench import jpeg, loaders, lrn, memory, overhead, shards
from bench.harness import report

BENCHMARKS = {
    "lrn": lrn.run,
    "loaders": loaders.run,
    "jpeg": jpeg.run,
    "shards": shards.run,
    "overhead": overhead.run,
    "memory": memory.run,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="run only these")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/latest.json"))
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = []
    for name in args.only or BENCHMARKS:
        print(f"running {name} on {device} ...", flush=True)
        results += BENCHMARKS[name](device)
    report(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
