"""Prediction on image files: ``Trainer.predict`` over the data module's own evaluation code, and the
table, CSV and JSON that ``src/predict.py`` gives."""

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from alexnet.data.base import ClassificationDataModule, DataError
from alexnet.data.prediction import Skipped
from alexnet.errors import require
from alexnet.training.system import ClassificationSystem

FORMATS = (".csv", ".json")


@dataclass
class Prediction:
    """One image's ``top_k`` classes, most probable first."""

    file: Path
    classes: list[int]
    names: list[str]
    probs: list[float]


def predict(
    trainer: L.Trainer,
    system: ClassificationSystem,
    datamodule: ClassificationDataModule,
    files: Sequence[Path],
    top_k: int = 5,
) -> tuple[list[Prediction], list[Skipped]]:
    """(the predictions, in the order of ``files``; the files left out, with the reason). One
    process: ``Trainer.predict`` does not gather the processes' results."""
    require(isinstance(top_k, int) and top_k >= 1, "top_k", top_k, "a positive integer")
    require(trainer.world_size == 1, "trainer.devices", trainer.world_size, "1 (prediction runs in one process)")
    skipped = _predict_on(datamodule, files)
    system.predict_top_k = top_k
    batches = trainer.predict(system, datamodule=datamodule)
    probs, classes, labels = (torch.cat(parts).cpu() for parts in zip(*batches))
    names = datamodule.class_names
    predictions, undecodable = {}, []
    for p, c, label in zip(probs.tolist(), classes.tolist(), labels.tolist()):
        if label < 0:  # decoding failed in the loader (SkipUndecodable)
            undecodable.append((Path(files[-1 - label]), "cannot decode its pixels"))
        else:
            predictions[label] = Prediction(Path(files[label]), c, [names[i] for i in c], p)
    return [predictions[i] for i in sorted(predictions)], skipped + undecodable


def table(predictions: Sequence[Prediction]) -> str:
    """The predictions as a text table: file, rank, class, name, probability."""
    width = max([len("file")] + [len(str(p.file)) for p in predictions])
    lines = [f"{'file':<{width}}  rank  class  {'probability':>11}  name"]
    for p in predictions:
        for rank, (c, name, prob) in enumerate(zip(p.classes, p.names, p.probs), start=1):
            shown = str(p.file) if rank == 1 else ""
            lines.append(f"{shown:<{width}}  {rank:>4}  {c:>5}  {prob:>11.4f}  {name}")
    return "\n".join(lines)


def write_predictions(path: Path, predictions: Sequence[Prediction], skipped: Sequence[Skipped] = ()) -> Path:
    """Write ``path`` as CSV (one row per image: ``file``, then ``class_i``, ``name_i``, ``prob_i``
    for each rank i) or JSON (``{"predictions": [{"file", "top_k": [{"class", "name", "prob"}]}],
    "skipped": [{"file", "reason"}]}``), by its suffix."""
    require(path.suffix.lower() in FORMATS, "output", str(path), f"a file ending in {' or '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        record = {
            "predictions": [
                {"file": str(p.file), "top_k": [{"class": c, "name": n, "prob": q} for c, n, q in _ranks(p)]}
                for p in predictions
            ],
            "skipped": [{"file": str(f), "reason": reason} for f, reason in skipped],
        }
        path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        return path
    k = max((len(p.classes) for p in predictions), default=0)
    header = ["file"] + [f"{field}_{i}" for i in range(1, k + 1) for field in ("class", "name", "prob")]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for p in predictions:
            writer.writerow([str(p.file)] + [value for rank in _ranks(p) for value in rank])
    return path


def _ranks(p: Prediction) -> list[tuple[int, str, float]]:
    return list(zip(p.classes, p.names, p.probs))


def prediction_batch(datamodule: ClassificationDataModule, files: Sequence[Path]) -> tuple[torch.Tensor, list[Skipped]]:
    """(the first batch of ``files``' images as prediction gives them to the network, on the CPU and
    without a trainer: e.g. to check an export on; the files left out)."""
    skipped = _predict_on(datamodule, files)
    images, labels = next(iter(datamodule.predict_dataloader()))
    return datamodule.on_after_batch_transfer((images, labels), 0)[0], skipped


def _predict_on(datamodule: ClassificationDataModule, files: Sequence[Path]) -> list[Skipped]:
    """``datamodule.predict_on(files)``; a :class:`DataError` when no file can be read."""
    skipped = datamodule.predict_on(files)
    if datamodule.predict_set is None:
        raise DataError(f"none of the {len(files)} image file(s) can be read: {skipped[0][0]}: {skipped[0][1]}, …")
    return skipped
