"""Summarise a sweep directory into report.md, runs.csv and plots, and its W&B dashboard (a
workspace view and a report of the sweep's group; see alexnet/run/sweep.py).

python src/report.py outputs/multiruns/<date>/<time>-<id> [--wandb auto|online|offline|disabled]
python src/report.py outputs/multiruns/<date>/<time>-<id> --publish [--entity <team>]
    (save the dashboard written while W&B was offline, after `wandb sync` of the sweep's runs)
"""

import argparse
import sys
from pathlib import Path

from alexnet.analysis.dashboard import WORKSPACE_FILE
from alexnet.run.sweep import publish_dashboard, report_sweep
from alexnet.training.loggers import wandb_mode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory: outputs/multiruns/<date>/<time>-<id>")
    parser.add_argument(
        "--wandb",
        default="auto",
        choices=["auto", "online", "offline", "disabled"],
        help="log the table and plots to W&B and write its dashboard (auto: as training runs do)",
    )
    parser.add_argument("--publish", action="store_true", help="save the dashboard written offline to W&B")
    parser.add_argument("--entity", default=None, help="with --publish: the W&B team or user (default: yours)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir() or not list(args.sweep_dir.glob("*/.hydra/overrides.yaml")):
        print(
            f"error: {args.sweep_dir} holds no sweep jobs (folders with .hydra/overrides.yaml); "
            "pass a directory under outputs/multiruns/",
            file=sys.stderr,
        )
        return 2
    mode = wandb_mode(args.wandb)
    if not args.publish:
        written = report_sweep(args.sweep_dir, mode)
        print(written["report"].read_text())
        for path in written.values():
            print(f"wrote {path}")
        if mode == "disabled":
            return 0
        if mode != "online":
            print(
                f"W&B is offline: the dashboard's specifications are in {args.sweep_dir}. Publish them once the "
                f"runs are uploaded:\n  wandb sync $(find {args.sweep_dir} -type d -name 'offline-run-*') && "
                f"python src/report.py {args.sweep_dir} --publish"
            )
            return 0
    elif not (args.sweep_dir / WORKSPACE_FILE).is_file():
        print(
            f"error: no {WORKSPACE_FILE} in {args.sweep_dir}: run python src/report.py {args.sweep_dir} first",
            file=sys.stderr,
        )
        return 2
    for url in publish_dashboard(args.sweep_dir, args.entity):  # online: saved at once
        print(f"W&B: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
