"""matplotlib without a display (the Agg backend), and images as it shows them."""

from pathlib import Path

import numpy as np
import torch


def pyplot():
    """matplotlib's pyplot on the Agg backend: no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` and close it."""
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def displayable(image: torch.Tensor) -> np.ndarray:
    """uint8 ``C×H×W`` tensor -> ``H×W×3`` array for imshow (grey images as RGB)."""
    return image.expand(3, -1, -1).permute(1, 2, 0).numpy()
