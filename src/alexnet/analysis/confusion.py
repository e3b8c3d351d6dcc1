"""Errors by class: the most confused pairs and the confusion matrix as a picture. The counts come
from :func:`alexnet.training.evaluation.evaluate` (the system's torchmetrics)."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from alexnet.analysis.plotting import pyplot, save


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
    plt = pyplot()
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
    return save(fig, path)
