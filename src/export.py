"""Export a trained network to ONNX: python src/export.py ckpt_path=<run dir or checkpoint> [output=<file>.onnx]

The network is the run's, rebuilt as it trained (:mod:`alexnet.run.trained`, as ``src/eval.py``
does), or torchvision's AlexNet weights with ``model=one_column data=imagenet_torchvision``; a
column-parallel run exports as the whole network. The file has one input, ``images`` (``N×3×S×S``
normalised floats, N free), and one output, ``logits``; beside it, ``<name>.json`` holds what a
consumer needs: the input size, channel order and normalisation, the preprocessing in words, the
class names and the run it came from.

Then the file checks itself: ONNX Runtime and PyTorch on the same real images (``images=``, or
scikit-learn's two sample photos) through the run's own evaluation transform; the largest logit
difference is printed, and above ``tolerance`` (1e-4) the export fails (exit 1). ``onnx.checker``
passes on every file written. Needs the export extra: ``pip install -e '.[export]'``.
"""

import json
import sys
import warnings
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from sklearn.datasets import load_sample_images

from alexnet.data.prediction import find_images
from alexnet.models.export import INPUT, OUTPUT, ExportError, export_onnx, largest_difference, require_onnx
from alexnet.run.trained import MACHINE, Trained, checkpoint_arguments, load_trained
from alexnet.training.prediction import prediction_batch

OWN = (*MACHINE, "paths", "ckpt_path", "output", "images", "tolerance", "tta", "system.compile")

# Lightning 2.6's own pytree helper warns on every run with this torch; nothing for a user to act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    require_onnx()  # before anything is built
    if cfg.images is None:
        files = [Path(f) for f in load_sample_images().filenames]  # china.jpg, flower.jpg: real photos
    else:
        files = find_images(cfg.images)
    trained = load_trained(cfg, OWN)
    net, datamodule = trained.system.net.eval(), trained.datamodule
    out = Path(HydraConfig.get().runtime.output_dir)
    path = Path(cfg.output) if cfg.output else out / "alexnet.onnx"
    images, skipped = prediction_batch(datamodule, files)
    for file, reason in skipped:
        print(f"skipped {file}: {reason}", file=sys.stderr)
    export_onnx(net, path, cfg.model.input_size)
    difference = largest_difference(path, net, images)
    verdict = "ok" if difference <= cfg.tolerance else "FAILED"
    print(
        f"parity: ONNX Runtime vs PyTorch on {len(images)} image(s) ({', '.join(f.name for f in files[:3])}"
        f"{', …' if len(files) > 3 else ''}): largest logit difference {difference:.2e} "
        f"(tolerance {cfg.tolerance:.0e}) {verdict}"
    )
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps(describe(cfg, trained, path, difference, len(images)), indent=2) + "\n")
    if difference > cfg.tolerance:
        raise ExportError(
            f"{path} computes logits up to {difference:.2e} away from PyTorch's (tolerance {cfg.tolerance:.0e}); "
            "do not use it. Please report the model config and this line"
        )
    print(f"wrote {path} and {sidecar}")


def describe(cfg: DictConfig, trained: Trained, path: Path, difference: float, images: int) -> dict:
    """The sidecar: what a consumer of the ONNX file needs, and where it came from."""
    import onnxruntime

    datamodule, size = trained.datamodule, cfg.model.input_size
    return {
        "onnx": path.name,
        "input": {"name": INPUT, "shape": ["batch", 3, size, size], "dtype": "float32", "layout": "NCHW"},
        "output": {"name": OUTPUT, "shape": ["batch", len(datamodule.class_names)], "meaning": "logits"},
        "input_size": size,
        "channels": "RGB",
        "mean": [float(m) for m in datamodule.mean],
        "std": [float(s) for s in datamodule.std],
        "preprocessing": datamodule.preprocessing(),
        "classes": list(datamodule.class_names),
        "source": {
            "run": str(trained.run) if trained.run else None,
            "checkpoint": str(trained.checkpoint),
            "kind": trained.kind,
            "model": OmegaConf.to_container(cfg.model, resolve=True),
        },
        "check": {"images": images, "largest_difference": difference, "tolerance": cfg.tolerance},
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
    }


if __name__ == "__main__":
    sys.argv[1:] = checkpoint_arguments(sys.argv[1:])
    main()
