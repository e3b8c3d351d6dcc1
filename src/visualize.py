"""Draw the pictures of a finished run: python src/visualize.py run=outputs/runs/<date>/<time>-<id>

Writes <run>/visuals/: conv1's kernels per column, per-class errors (CSV), the confusion matrix,
test predictions with their top-5, and fc7 nearest neighbours, from the run's best checkpoint.
The network, data and trainer are the run's own (its config recovered: :mod:`alexnet.run.recover`),
on one device of this machine. The errors come from the same evaluation as training's
(``Trainer.test`` with the system's metrics).
"""

import hydra
from omegaconf import DictConfig, open_dict

from alexnet.analysis.visuals import visualize_from_config
from alexnet.config import build, validate
from alexnet.run.layout import RunDir
from alexnet.run.recover import recover_config
from alexnet.training.evaluation import evaluate, load_any_checkpoint
from alexnet.training.loggers import wandb_logger


@hydra.main(version_base="1.3", config_path="../conf", config_name="visualize")
def main(args: DictConfig) -> None:
    run = RunDir(args.run)
    cfg = recover_config(run)
    checkpoint = run.checkpoint(args.checkpoint)
    datamodule, system = validate(cfg)
    load_any_checkpoint(system.net, checkpoint)
    with open_dict(cfg):  # the pictures are drawn by one process: this machine's device, not the run's
        cfg.trainer.update(accelerator=args.accelerator, devices=1, num_nodes=1, strategy="auto")
    trainer = build(
        cfg.trainer, "trainer", logger=False, callbacks=[], default_root_dir=str(run.visuals), sync_batchnorm=False
    )
    evaluation = evaluate(trainer, system, datamodule, "test")
    loggers = []
    if args.wandb_mode != "disabled":
        name = f"visualize-{run.path.parent.name}-{run.path.name}"
        loggers.append(
            wandb_logger(args.wandb_mode, save_dir=str(run), project="alexnet", job_type="visualize", name=name)
        )
    try:
        net = system.net.to(trainer.strategy.root_device)
        summary = visualize_from_config(cfg, net, datamodule, evaluation, run.visuals, loggers)
    finally:
        for logger in loggers:
            logger.experiment.finish()
    print(f"from {checkpoint}: test top-1 error {100 * evaluation.err1:.2f}%, top-5 {100 * evaluation.err5:.2f}%")
    for path in summary["files"].values():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
