"""Summarise a sweep directory into report.md, runs.csv and plots (see alexnet/run/sweep.py).

python src/report.py outputs/multiruns/<date>/<time>-<id> [--wandb auto|online|offline|disabled]
"""

import argparse
import sys
from pathlib import Path

from alexnet.run.sweep import report_sweep
from alexnet.training.loggers import wandb_mode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory: outputs/multiruns/<date>/<time>-<id>")
    parser.add_argument(
        "--wandb",
        default="auto",
        choices=["auto", "online", "offline", "disabled"],
        help="log the table and plots to W&B (auto: as training runs do)",
    )
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir() or not list(args.sweep_dir.glob("*/.hydra/overrides.yaml")):
        print(
            f"error: {args.sweep_dir} holds no sweep jobs (folders with .hydra/overrides.yaml); "
            "pass a directory under outputs/multiruns/",
            file=sys.stderr,
        )
        return 2
    written = report_sweep(args.sweep_dir, wandb_mode(args.wandb))
    print(written["report"].read_text())
    for path in written.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
