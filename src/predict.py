"""Predict on your own images: python src/predict.py ckpt_path=<run dir or checkpoint> images=<files, folders, globs>

The network is the run's, rebuilt as it trained (:mod:`alexnet.run.trained`, as ``src/eval.py``
does), or torchvision's AlexNet weights with ``model=one_column data=imagenet_torchvision``. Each
image goes through the run's own evaluation code: its data module's test transform and
normalisation (digits and CIFAR: the image's central square at the data's stored size; ImageNet:
shorter side to 256, centre crop or, with ``tta=tencrop``, the paper's 10 patches), then
``Trainer.predict`` on one device.

Prints the top-k table and writes one row per image (``predictions.csv`` in
outputs/predictions/<date>/<time>-<id>, or ``output=<file>.csv|.json``). A file that cannot be read
(unreadable, truncated) is named and left out, the others are predicted, and the exit code is 3.
"""

import logging
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from alexnet.config import build
from alexnet.data.prediction import find_images
from alexnet.run.trained import MACHINE, checkpoint_arguments, load_trained
from alexnet.training.prediction import predict, table, write_predictions

log = logging.getLogger("predict")
OWN = (*MACHINE, "paths", "ckpt_path", "images", "top_k", "tta", "output", "show")
SKIPPED_EXIT = 3  # some files could not be read; the others were predicted and written
FEW = 16  # more images than this get a progress bar

# Lightning 2.6's own pytree helper warns on every run with this torch; nothing for a user to act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    files = find_images(cfg.images)  # before the network is built: a wrong path fails at once
    trained = load_trained(cfg, OWN)
    out = Path(HydraConfig.get().runtime.output_dir)
    wants_bar = bool(cfg.trainer.enable_progress_bar and cfg.callbacks.get("progress_bar")) and len(files) > FEW
    bar = [build(cfg.callbacks.progress_bar, "callbacks.progress_bar")] if wants_bar else []
    trainer = build(
        cfg.trainer,
        "trainer",
        logger=False,
        callbacks=bar,
        enable_progress_bar=wants_bar,
        enable_model_summary=False,
        default_root_dir=str(out),
        sync_batchnorm=False,
    )
    predictions, skipped = predict(trainer, trained.system, trained.datamodule, files, cfg.top_k)
    source = trained.run or trained.checkpoint
    print(f"{len(predictions)} image(s), {cfg.tta}, by {source}:")
    print(table(predictions[: cfg.show]))
    if len(predictions) > cfg.show:
        print(f"… and {len(predictions) - cfg.show} more (show={cfg.show})")
    path = write_predictions(Path(cfg.output) if cfg.output else out / "predictions.csv", predictions, skipped)
    print(f"wrote {path}")
    for file, reason in skipped:
        print(f"skipped {file}: {reason}", file=sys.stderr)
    if skipped:
        print(f"{len(skipped)} of {len(files)} file(s) skipped", file=sys.stderr)
        sys.exit(SKIPPED_EXIT)


if __name__ == "__main__":
    sys.argv[1:] = checkpoint_arguments(sys.argv[1:])
    main()
