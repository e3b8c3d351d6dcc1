"""Evaluation through Trainer.test with the system's torchmetrics: overall, per class, confusions."""

from functools import partial

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from alexnet.training.evaluation import evaluate
from alexnet.training.system import ClassificationSystem

CLASSES, IMAGES = 7, 200


def scores_as_images() -> tuple[torch.Tensor, torch.Tensor, L.LightningDataModule]:
    """Random class scores, shaped as 1×1 'images' that ``nn.Flatten`` turns back into logits."""
    torch.manual_seed(0)
    logits, labels = torch.randn(IMAGES, CLASSES), torch.randint(0, CLASSES, (IMAGES,))
    dataset = TensorDataset(logits[:, :, None, None], labels)
    datamodule = L.LightningDataModule.from_datasets(val_dataset=dataset, test_dataset=dataset, batch_size=32)
    datamodule.class_names = [f"c{i}" for i in range(CLASSES)]
    return logits, labels, datamodule


@pytest.mark.parametrize("split", ["test", "val"])
def test_evaluation_counts_overall_per_class_and_confusions_alike(split, tmp_path):
    logits, labels, datamodule = scores_as_images()
    system = ClassificationSystem(nn.Flatten(), num_classes=CLASSES, optimizer=partial(torch.optim.SGD, lr=0.1))
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, default_root_dir=tmp_path)
    evaluation = evaluate(trainer, system, datamodule, split)

    top1 = logits.argmax(1)
    overall1 = (top1 != labels).float().mean().item()
    overall5 = 1 - (logits.topk(5).indices == labels[:, None]).any(1).float().mean().item()
    assert (evaluation.split, evaluation.images) == (split, IMAGES)
    assert evaluation.err1 == pytest.approx(overall1) and evaluation.err5 == pytest.approx(overall5)
    rows = evaluation.per_class
    assert [row["n"] for row in rows] == torch.bincount(labels, minlength=CLASSES).tolist()
    assert sum(r["n"] * r["err1"] for r in rows) / IMAGES == pytest.approx(overall1)
    assert sum(r["n"] * r["err5"] for r in rows) / IMAGES == pytest.approx(overall5)
    expected = torch.bincount(labels * CLASSES + top1, minlength=CLASSES**2).reshape(CLASSES, CLASSES)
    assert torch.equal(evaluation.confusion, expected)  # [true, predicted]
