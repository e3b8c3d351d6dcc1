"""Looking inside a trained network, as the paper's Figures 3 and 4 do, into one folder:

- conv1's kernels per column (Fig. 3) and how colourful each column's are (:mod:`.filters`);
- per-class errors and the confusion matrix, from the evaluation's counts (:mod:`.confusion`);
- test images with their five best guesses, and the training images nearest in fc7 feature
  space (Fig. 4, :mod:`.predictions`).

:func:`visualize_from_config` runs at the end of training and in ``src/visualize.py``.
"""

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import WandbLogger
from torch import nn
from torch.utils.data import Subset

from alexnet.analysis.confusion import most_confused, plot_confusion
from alexnet.analysis.filters import chromatic_fraction, plot_filters
from alexnet.analysis.plotting import displayable
from alexnet.analysis.predictions import (
    fc7_features,
    nearest_neighbours,
    plot_neighbours,
    plot_predictions,
    probabilities,
)
from alexnet.training.evaluation import Evaluation, write_csv


def visualize_run(
    net: nn.Module,
    datamodule: Any,
    evaluation: Evaluation,
    out_dir: Path,
    columns: int,
    n_predictions: int = 16,
    n_queries: int = 6,
    n_neighbours: int = 6,
    confusion_max_classes: int = 20,
    neighbour_pool: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Write every picture and table for a trained ``net`` and its ``evaluation`` into ``out_dir``;
    return a summary.

    ``datamodule`` must be set up and provide ``class_names`` and ``evaluation_set(split)``
    (images without augmentation; datasets with ``labels`` and ``raw(i)`` for display).
    ``neighbour_pool`` caps how many training images (a seeded random sample) the neighbour
    search looks through; None searches them all.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    device = next(net.parameters()).device
    transform = partial(datamodule.on_after_batch_transfer, dataloader_idx=0)
    names = list(datamodule.class_names)
    conv1 = net.features.conv1.conv.weight
    split = evaluation.split
    files = {
        "filters": plot_filters(conv1, columns, out_dir / "conv1_filters.png"),
        f"per_class_{split}": write_csv(out_dir / f"per_class_{split}.csv", evaluation.per_class),
        "confusion": plot_confusion(evaluation.confusion, names, out_dir / "confusion.png", confusion_max_classes),
    }
    summary: dict[str, Any] = {
        "conv1_chromatic_fraction": chromatic_fraction(conv1, columns),
        "most_confused": most_confused(evaluation.confusion, names),
    }

    dataset = datamodule.evaluation_set(split)
    picked = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n_predictions]
    probs = probabilities(net, Subset(dataset, picked.tolist()), device, transform)
    labels = dataset.labels[picked]
    sampled = [dataset.raw(i) for i in picked.tolist()]
    files["predictions"] = plot_predictions(sampled, probs, labels, names, out_dir / "predictions.png")
    summary["sampled"] = {"images": sampled, "probs": probs, "labels": labels}

    queries_index = picked[:n_queries]
    queries = torch.cat(list(fc7_features(net, Subset(dataset, queries_index.tolist()), device, transform)))
    train_set = datamodule.evaluation_set("train")
    pool = torch.arange(len(train_set))
    if neighbour_pool is not None and neighbour_pool < len(pool):
        pool = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:neighbour_pool].sort().values
    pool_features = fc7_features(net, Subset(train_set, pool.tolist()), device, transform)
    _, index = nearest_neighbours(queries, pool_features, n_neighbours)
    index = pool[index]
    files["neighbours"] = plot_neighbours(
        [dataset.raw(i) for i in queries_index.tolist()],
        [[train_set.raw(i) for i in row] for row in index.tolist()],
        [names[y] for y in dataset.labels[queries_index]],
        [[names[y] for y in train_set.labels[row]] for row in index],
        out_dir / "neighbours.png",
    )
    summary["files"] = files
    return summary


def visualize_from_config(
    cfg: Any, net: nn.Module, datamodule: Any, evaluation: Evaluation, out_dir: Path, loggers: Sequence[Any]
) -> dict[str, Any]:
    """The pictures of a run (``cfg.visuals`` says how many of each); their numbers for results.json."""
    visuals = cfg.visuals
    summary = visualize_run(
        net,
        datamodule,
        evaluation,
        out_dir,
        columns=cfg.model.columns,
        n_predictions=visuals.predictions,
        n_queries=visuals.neighbour_queries,
        n_neighbours=visuals.neighbours,
        confusion_max_classes=visuals.confusion_max_classes,
        neighbour_pool=visuals.neighbour_pool,
        seed=cfg.seed,
    )
    log_visuals(loggers, summary, datamodule.class_names)
    return {
        "conv1_chromatic_fraction": summary["conv1_chromatic_fraction"],
        "most_confused": summary["most_confused"],
        "files": {key: str(path) for key, path in summary["files"].items()},
    }


def log_visuals(loggers: Sequence[Any], summary: dict[str, Any], names: Sequence[str]) -> None:
    """Log the pictures, and the sampled predictions as a table, to any W&B logger among ``loggers``."""
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
            table.add_data(wandb.Image(displayable(image)), names[y], guesses, int(top_i[0]) == int(y))
        logger.experiment.log({"visuals/predictions_table": table})
