"""Looking inside a trained network, as the paper's Figures 3 and 4 do.

- conv1's kernels as a picture, one block per column (Fig. 3), and a number for how colourful
  each column's kernels are;
- per-class top-1/top-5 errors, the most confused pairs and a confusion matrix;
- test images with their five best guesses (Fig. 4, left);
- for a few test images, the training images nearest in fc7 feature space (Fig. 4, right).

``visualize_run`` writes all of it to a folder; ``src/visualize.py`` does so for a finished run.
Plots use matplotlib's Agg backend: no display needed.
"""

import csv
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.functional.classification import multiclass_stat_scores

from alexnet.system import class_scores, per_class_rows

EVAL_BATCH = 256


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------- conv1 filters (Fig. 3)


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
    plt = _pyplot()
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
    return _save(fig, path)


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


# ---------------------------------------------------------------- predictions and errors by class


BatchTransform = Callable[[tuple[torch.Tensor, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]


def batches(dataset: Dataset, device: torch.device, transform: BatchTransform | None) -> Iterable[tuple]:
    """``dataset`` in evaluation batches on ``device``, through the data module's batch transform
    (``on_after_batch_transfer``: e.g. ImageNet's uint8 -> normalised floats)."""
    for images, labels in DataLoader(dataset, batch_size=EVAL_BATCH):
        batch = (images.to(device), labels.to(device))
        yield transform(batch) if transform is not None else batch


@torch.no_grad()
def predict(
    net: nn.Module, dataset: Dataset, device: torch.device, transform: BatchTransform | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities ``N × classes`` and labels ``N`` for a whole dataset, in order."""
    net.eval()
    probs, labels = [], []
    for images, y in batches(dataset, device, transform):
        probs.append(class_scores(net, images).softmax(dim=1).cpu())
        labels.append(y.cpu())
    return torch.cat(probs), torch.cat(labels)


def per_class_errors(probs: torch.Tensor, labels: torch.Tensor, names: Sequence[str]) -> list[dict[str, Any]]:
    """Top-1 and top-5 error of each class (over the images of that class): :func:`per_class_rows`
    from the same per-class counts the system's metrics keep."""
    stats = [multiclass_stat_scores(probs, labels, len(names), top_k=min(k, len(names)), average=None) for k in (1, 5)]
    return per_class_rows(*stats, names)


def confusion_matrix(probs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``[true, predicted]`` of top-1 predictions."""
    index = labels * num_classes + probs.argmax(dim=1)
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def most_confused(confusion: torch.Tensor, names: Sequence[str], k: int = 10) -> list[dict[str, Any]]:
    """The ``k`` largest off-diagonal cells: images of ``true`` classified as ``predicted``."""
    off = confusion.clone()
    off.fill_diagonal_(0)
    counts, flat = off.flatten().topk(min(k, off.numel()))
    n = confusion.shape[0]
    return [
        {"true": names[i // n], "predicted": names[i % n], "count": int(c)}
        for c, i in zip(counts.tolist(), flat.tolist())
        if c > 0
    ]


def plot_confusion(confusion: torch.Tensor, names: Sequence[str], path: Path, max_classes: int = 20) -> Path:
    """The confusion matrix; with many classes, the block of the ``max_classes`` most confused ones."""
    plt = _pyplot()
    shown = list(range(len(names)))
    title = "Confusion matrix (test, top-1)"
    if len(names) > max_classes:
        off = confusion.clone()
        off.fill_diagonal_(0)
        involvement = off.sum(0) + off.sum(1)
        shown = sorted(involvement.topk(max_classes).indices.tolist())
        title += f": the {max_classes} most confused of {len(names)} classes"
    block = confusion[shown][:, shown].float()
    rates = block / block.sum(dim=1, keepdim=True).clamp_min(1)
    size = 3 + 0.35 * len(shown)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(shown)), [names[i] for i in shown], rotation=90, fontsize=8)
    ax.set_yticks(range(len(shown)), [names[i] for i in shown], fontsize=8)
    if len(shown) <= 20:
        for r in range(len(shown)):
            for c in range(len(shown)):
                if block[r, c] > 0:
                    ax.text(
                        c,
                        r,
                        int(block[r, c]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if rates[r, c] > 0.5 else "black",
                    )
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    fig.tight_layout()
    return _save(fig, path)


def plot_predictions(
    images: Sequence[torch.Tensor], probs: torch.Tensor, labels: torch.Tensor, names: Sequence[str], path: Path
) -> Path:
    """Images with their five best guesses and probabilities; the true class in green (Fig. 4, left)."""
    plt = _pyplot()
    n = len(images)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 4.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    k = min(5, probs.shape[1])
    for ax, image, p, y in zip(axes.flat, images, probs, labels):
        ax.imshow(_displayable(image), interpolation="nearest")
        top_p, top_i = p.topk(k)
        correct = int(top_i[0]) == int(y)
        ax.set_title(f"{names[y]} {'✓' if correct else '✗'}", color="green" if correct else "red", fontsize=10)
        lines = [f"{names[i]}: {q:.2f}" for q, i in zip(top_p.tolist(), top_i.tolist())]
        for j, (line, i) in enumerate(zip(lines, top_i.tolist())):
            ax.text(
                0.02,
                -0.04 - 0.075 * j,
                line,
                transform=ax.transAxes,
                fontsize=8,
                va="top",
                color="green" if i == int(y) else "black",
            )
    fig.suptitle("Test images and the five most probable classes")
    fig.tight_layout(rect=(0, 0.03, 1, 0.97), h_pad=6)
    return _save(fig, path)


# ---------------------------------------------------------------- nearest neighbours in fc7 space (Fig. 4)


@torch.no_grad()
def fc7_features(
    net: nn.Module, dataset: Dataset, device: torch.device, transform: BatchTransform | None = None
) -> Iterable[torch.Tensor]:
    """fc7's output (after its ReLU, dropout off) for ``dataset``, one batch at a time."""
    captured: list[torch.Tensor] = []
    handle = net.classifier.fc7.act.register_forward_hook(lambda m, i, out: captured.append(out.detach().clone()))
    net.eval()
    try:
        for images, _ in batches(dataset, device, transform):
            net(images)
            yield captured.pop().cpu()
    finally:
        handle.remove()


def nearest_neighbours(
    queries: torch.Tensor, batches: Iterable[torch.Tensor], k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean ``k`` nearest rows to each query over ``batches`` seen one at a time.

    Returns (distances, indices into the concatenation of the batches), each ``Q × k``, nearest
    first. Only ``Q × k`` candidates are kept between batches, never the whole set.
    """
    best_d = torch.full((len(queries), 0), float("inf"), dtype=torch.float64)
    best_i = torch.empty((len(queries), 0), dtype=torch.long)
    offset = 0
    for batch in batches:
        d = torch.cdist(queries.double(), batch.double())
        index = torch.arange(offset, offset + len(batch)).expand(len(queries), -1)
        best_d, order = torch.cat([best_d, d], dim=1).topk(min(k, best_d.shape[1] + len(batch)), largest=False)
        best_i = torch.cat([best_i, index], dim=1).gather(1, order)
        offset += len(batch)
    return best_d, best_i


def plot_neighbours(
    queries: Sequence[torch.Tensor],
    neighbours: Sequence[Sequence[torch.Tensor]],
    query_names: Sequence[str],
    neighbour_names: Sequence[Sequence[str]],
    path: Path,
) -> Path:
    """Each row: a test image, then its nearest training images in fc7 space (Fig. 4, right)."""
    plt = _pyplot()
    rows, k = len(neighbours), len(neighbours[0])
    fig, axes = plt.subplots(rows, k + 1, figsize=(1.6 * (k + 1), 1.8 * rows), squeeze=False)
    for r in range(rows):
        axes[r, 0].imshow(_displayable(queries[r]), interpolation="nearest")
        axes[r, 0].set_title(f"test: {query_names[r]}", fontsize=8, color="tab:blue")
        for j in range(k):
            axes[r, j + 1].imshow(_displayable(neighbours[r][j]), interpolation="nearest")
            axes[r, j + 1].set_title(neighbour_names[r][j], fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("Test images (left) and the training images nearest in fc7 feature space")
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------- everything for one run


def visualize_run(
    net: nn.Module,
    datamodule: Any,
    out_dir: Path,
    columns: int,
    n_predictions: int = 16,
    n_queries: int = 6,
    n_neighbours: int = 6,
    confusion_max_classes: int = 20,
    neighbour_pool: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Write every picture and table for a trained ``net`` into ``out_dir``; return a summary.

    ``datamodule`` must be set up and provide ``class_names`` and ``evaluation_set(split)``
    (images without augmentation; datasets with ``labels`` and ``raw(i)`` for display).
    ``neighbour_pool`` caps how many training images (a seeded random sample) the neighbour
    search looks through; None searches them all.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    device = next(net.parameters()).device
    transform = partial(datamodule.on_after_batch_transfer, dataloader_idx=0)
    names = list(datamodule.class_names)
    files: dict[str, Path] = {}
    conv1 = net.features.conv1.conv.weight
    files["filters"] = plot_filters(conv1, columns, out_dir / "conv1_filters.png")

    summary: dict[str, Any] = {"conv1_chromatic_fraction": chromatic_fraction(conv1, columns)}
    for split in ("val", "test"):
        dataset = datamodule.evaluation_set(split)
        probs, labels = predict(net, dataset, device, transform)
        files[f"per_class_{split}"] = write_csv(
            out_dir / f"per_class_{split}.csv", per_class_errors(probs, labels, names)
        )
    # From here on, dataset, probs and labels are the test split's.
    confusion = confusion_matrix(probs, labels, len(names))
    summary["most_confused"] = most_confused(confusion, names)
    files["confusion"] = plot_confusion(confusion, names, out_dir / "confusion.png", confusion_max_classes)
    picked = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n_predictions]
    sampled = [dataset.raw(i) for i in picked.tolist()]
    files["predictions"] = plot_predictions(sampled, probs[picked], labels[picked], names, out_dir / "predictions.png")
    summary["sampled"] = {"images": sampled, "probs": probs[picked], "labels": labels[picked]}

    queries_index = picked[:n_queries]
    queries = torch.cat(
        list(fc7_features(net, torch.utils.data.Subset(dataset, queries_index.tolist()), device, transform))
    )
    train_set = datamodule.evaluation_set("train")
    pool = torch.arange(len(train_set))
    if neighbour_pool is not None and neighbour_pool < len(pool):
        pool = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:neighbour_pool].sort().values
    pool_features = fc7_features(net, torch.utils.data.Subset(train_set, pool.tolist()), device, transform)
    _, index = nearest_neighbours(queries, pool_features, n_neighbours)
    index = pool[index]
    files["neighbours"] = plot_neighbours(
        [dataset.raw(i) for i in queries_index.tolist()],
        [[train_set.raw(i) for i in row] for row in index.tolist()],
        [names[y] for y in dataset.labels[queries_index]],
        [[names[y] for y in train_set.labels[row]] for row in index],
        out_dir / "neighbours.png",
    )  # fmt: skip
    summary["files"] = files
    return summary


def visualize_from_config(
    cfg: Any, net: nn.Module, datamodule: Any, out_dir: Path, loggers: Sequence[Any]
) -> dict[str, Any]:
    """The end-of-run pictures (filters, confusions, predictions, neighbours); their numbers for results.json."""
    summary = visualize_run(
        net, datamodule, out_dir, columns=cfg.model.columns, n_predictions=cfg.visuals.predictions,
        n_queries=cfg.visuals.neighbour_queries, n_neighbours=cfg.visuals.neighbours,
        confusion_max_classes=cfg.visuals.confusion_max_classes, neighbour_pool=cfg.visuals.neighbour_pool,
        seed=cfg.seed,
    )  # fmt: skip
    log_visuals(loggers, summary, datamodule.class_names)
    return {
        "conv1_chromatic_fraction": summary["conv1_chromatic_fraction"],
        "most_confused": summary["most_confused"],
        "files": {key: str(path) for key, path in summary["files"].items()},
    }


def log_visuals(loggers: Sequence[Any], summary: dict[str, Any], names: Sequence[str]) -> None:
    """Log the pictures, and the sampled predictions as a table, to any W&B logger among ``loggers``."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        import wandb

        for key, path in summary["files"].items():
            if path.suffix == ".png":
                logger.log_image(key=f"visuals/{key}", images=[str(path)])
        sampled = summary["sampled"]
        table = wandb.Table(columns=["image", "true", "top-5 (probability)", "correct"])
        for image, p, y in zip(sampled["images"], sampled["probs"], sampled["labels"]):
            top_p, top_i = p.topk(min(5, len(p)))
            guesses = ", ".join(f"{names[i]} ({q:.2f})" for q, i in zip(top_p.tolist(), top_i.tolist()))
            table.add_data(wandb.Image(_displayable(image)), names[y], guesses, int(top_i[0]) == int(y))
        logger.experiment.log({"visuals/predictions_table": table})


def _displayable(image: torch.Tensor) -> np.ndarray:
    """uint8 ``C×H×W`` tensor -> ``H×W×3`` array for imshow (grey images as RGB)."""
    return image.expand(3, -1, -1).permute(1, 2, 0).numpy()


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
