"""conv1's kernels as the paper's Fig. 3 shows them, one block per column, and how colourful each
column's kernels are."""

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from alexnet.analysis.plotting import pyplot, save


def filter_blocks(weight: torch.Tensor, columns: int) -> list[torch.Tensor]:
    """conv1's kernels as displayable tiles ``n × k × k × 3`` in [0, 1], one block per column.

    Each kernel is scaled to [0, 1] on its own (min to max over its three channels), as in Fig. 3.
    Block ``i`` holds the kernels of column ``i``: output channels ``i·C/columns … (i+1)·C/columns``,
    the channels that column's grouped layers read.
    """
    w = weight.detach().float().cpu()
    low = w.amin(dim=(1, 2, 3), keepdim=True)
    high = w.amax(dim=(1, 2, 3), keepdim=True)
    tiles = ((w - low) / (high - low).clamp_min(1e-12)).permute(0, 2, 3, 1)
    return list(tiles.chunk(columns, dim=0))


def chromatic_fraction(weight: torch.Tensor, columns: int) -> list[float]:
    """Per column, the mean share of each kernel's variance that is colour rather than brightness.

    For a kernel ``w`` (3 channels × pixels) with per-pixel channel mean ``m``: ``|w - m|² /
    |w - mean(w)|²``. 0 for a grey kernel (all channels equal); the paper's Fig. 3 shows one
    column of mostly colour-agnostic kernels and one of colour-specific ones.
    """
    w = weight.detach().double().cpu().flatten(2)  # C_out × 3 × pixels
    chroma = (w - w.mean(dim=1, keepdim=True)).pow(2).sum(dim=(1, 2))
    total = (w - w.mean(dim=(1, 2), keepdim=True)).pow(2).sum(dim=(1, 2)).clamp_min(1e-24)
    return [block.mean().item() for block in (chroma / total).chunk(columns)]


def plot_filters(weight: torch.Tensor, columns: int, path: Path, title: str = "conv1 kernels") -> Path:
    plt = pyplot()
    blocks = filter_blocks(weight, columns)
    fractions = chromatic_fraction(weight, columns)
    fig, axes = plt.subplots(1, columns, figsize=(5 * columns, 5.4), squeeze=False)
    for i, (ax, tiles) in enumerate(zip(axes[0], blocks)):
        ax.imshow(tile_grid(tiles).numpy(), interpolation="nearest")
        label = f"column {i + 1}" if columns > 1 else "one column"
        ax.set_title(f"{label}: {len(tiles)} kernels, chromatic {fractions[i]:.2f}")
        ax.axis("off")
    fig.suptitle(f"{title} ({weight.shape[2]}×{weight.shape[3]}, each scaled to its own range)")
    fig.tight_layout()
    return save(fig, path)


def tile_grid(tiles: torch.Tensor, pad: int = 1) -> torch.Tensor:
    """Arrange ``n × h × w × 3`` tiles in a near-square grid with white gaps."""
    n, h, w, _ = tiles.shape
    cols = max(1, round(n**0.5))
    rows = -(-n // cols)
    grid = torch.ones(rows * (h + pad) + pad, cols * (w + pad) + pad, 3)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = tiles[i]
    return grid


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
