"""Callbacks of this repo's own (Lightning's cover the rest)."""

from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from alexnet.visualize import plot_filters


class Conv1Filters(L.Callback):
    """Save conv1's kernels as a picture every ``every_n_epochs`` epochs (0: never), and log it to W&B.

    The end-of-run pictures (``visualize_run``) include the final grid; this shows how it forms.
    """

    def __init__(self, dirpath: str, every_n_epochs: int = 5) -> None:
        self.dirpath, self.every_n_epochs = Path(dirpath), every_n_epochs

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self.every_n_epochs <= 0 or epoch % self.every_n_epochs or trainer.sanity_checking:
            return
        self.dirpath.mkdir(parents=True, exist_ok=True)
        net = pl_module.net
        path = plot_filters(
            net.features.conv1.conv.weight,
            net.columns,
            self.dirpath / f"conv1_epoch{epoch:03d}.png",
            title=f"conv1 kernels after epoch {epoch}",
        )
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="visuals/conv1_during_training", images=[str(path)], step=trainer.global_step)
