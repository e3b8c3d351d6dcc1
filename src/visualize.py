"""Draw the pictures of a finished run: python src/visualize.py run=outputs/runs/<date>/<time>

Writes <run>/visuals/: conv1's kernels per column, per-class errors (CSV), the confusion matrix,
test predictions with their top-5, and fc7 nearest neighbours, from the run's best checkpoint.
"""

from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from alexnet.evaluate import load_any_checkpoint
from alexnet.loggers import wandb_logger
from alexnet.runs import find_checkpoint, run_config
from alexnet.visualize import visualize_from_config


@hydra.main(version_base="1.3", config_path="../conf", config_name="visualize")
def main(args: DictConfig) -> None:
    run_dir = Path(args.run)
    cfg = run_config(run_dir)
    checkpoint = find_checkpoint(run_dir, args.checkpoint)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if args.device == "auto"
        else args.device
    )
    net = instantiate(cfg.model)
    load_any_checkpoint(net, checkpoint)
    datamodule = instantiate(cfg.data)
    datamodule.setup("test")
    loggers = []
    if args.wandb_mode != "disabled":
        loggers.append(
            wandb_logger(
                args.wandb_mode,
                save_dir=str(run_dir),
                project="alexnet",
                job_type="visualize",
                name=f"visualize-{run_dir.parent.name}-{run_dir.name}",
            )
        )
    try:
        summary = visualize_from_config(cfg, net.to(device), datamodule, run_dir / "visuals", loggers)
    finally:
        for logger in loggers:
            logger.experiment.finish()
    print(f"from {checkpoint}:")
    for path in summary["files"].values():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
