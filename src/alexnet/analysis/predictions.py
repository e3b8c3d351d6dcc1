"""What the network predicts and what it sees as alike, as the paper's Fig. 4 shows: test images
with their five most probable classes, and the training images nearest to test images in fc7's
feature space."""

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from alexnet.analysis.plotting import displayable, pyplot, save
from alexnet.models.scores import class_scores

EVAL_BATCH = 256
BatchTransform = Callable[[tuple[torch.Tensor, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]


def batches(dataset: Dataset, device: torch.device, transform: BatchTransform | None) -> Iterable[tuple]:
    """``dataset`` in batches on ``device``, through the data module's batch transform
    (``on_after_batch_transfer``: e.g. ImageNet's uint8 -> normalised floats)."""
    for images, labels in DataLoader(dataset, batch_size=EVAL_BATCH):
        batch = (images.to(device), labels.to(device))
        yield transform(batch) if transform is not None else batch


@torch.no_grad()
def probabilities(
    net: nn.Module, dataset: Dataset, device: torch.device, transform: BatchTransform | None = None
) -> torch.Tensor:
    """Softmax probabilities ``N × classes`` for a (small) dataset, in order: for the pictures of a
    few images. Error rates come from :func:`alexnet.training.evaluation.evaluate`."""
    net.eval()
    return torch.cat(
        [class_scores(net, images).softmax(dim=1).cpu() for images, _ in batches(dataset, device, transform)]
    )


def plot_predictions(
    images: Sequence[torch.Tensor], probs: torch.Tensor, labels: torch.Tensor, names: Sequence[str], path: Path
) -> Path:
    """Images with their five best guesses and probabilities; the true class in green (Fig. 4, left)."""
    plt = pyplot()
    n = len(images)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 4.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    k = min(5, probs.shape[1])
    for ax, image, p, y in zip(axes.flat, images, probs, labels):
        ax.imshow(displayable(image), interpolation="nearest")
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
    return save(fig, path)


@torch.no_grad()
def fc7_features(
    net: nn.Module, dataset: Dataset, device: torch.device, transform: BatchTransform | None = None
) -> Iterable[torch.Tensor]:
    """fc7's output (after its ReLU; dropout off) for ``dataset``, one batch at a time."""
    net.eval()
    for images, _ in batches(dataset, device, transform):
        yield net.fc7(images).cpu()


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
    plt = pyplot()
    rows, k = len(neighbours), len(neighbours[0])
    fig, axes = plt.subplots(rows, k + 1, figsize=(1.6 * (k + 1), 1.8 * rows), squeeze=False)
    for r in range(rows):
        axes[r, 0].imshow(displayable(queries[r]), interpolation="nearest")
        axes[r, 0].set_title(f"test: {query_names[r]}", fontsize=8, color="tab:blue")
        for j in range(k):
            axes[r, j + 1].imshow(displayable(neighbours[r][j]), interpolation="nearest")
            axes[r, j + 1].set_title(neighbour_names[r][j], fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("Test images (left) and the training images nearest in fc7 feature space")
    fig.tight_layout()
    return save(fig, path)
