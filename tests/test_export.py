"""ONNX export of every preset and switch, checked against PyTorch on real photos; predict.py with
torchvision's AlexNet architecture against torchvision's own model and transforms."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from sklearn.datasets import load_sample_images
from torchvision.models import AlexNet_Weights
from torchvision.transforms.v2.functional import pil_to_tensor

from alexnet.config import build
from alexnet.data.imagenet.decoding import decode
from alexnet.data.imagenet.transforms import to_normalised_floats
from alexnet.models.export import TOLERANCE, export_onnx, largest_difference, operators
from conftest import ROOT, compose_config, run_script

CASES = {  # config overrides -> the ONNX operators that show the switch
    "paper": (["model=paper"], {"LRN", "MaxPool", "Relu"}),
    "paper, alpha over n": (["model=paper", "norm.alpha_over_n=true"], {"LRN"}),
    "one_column": (["model=one_column"], {"MaxPool"}),
    "blog": (["model=blog"], {"BatchNormalization"}),
    "cifar": (["model=cifar"], {"LRN"}),
    "norm=batchnorm": (["model=paper", "norm=batchnorm"], {"BatchNormalization"}),
    "norm=none": (["model=paper", "norm=none"], {"Relu"}),
    "pool=nonoverlap": (["model=paper", "pool=nonoverlap"], {"MaxPool"}),
    "activation=tanh": (["model=paper", "activation=tanh"], {"Tanh"}),
    "parallel=columns": (["model=paper", "model.parallel=columns"], {"LRN"}),
}


def photos(size: int) -> torch.Tensor:
    """scikit-learn's two sample photos, central squares at ``size``, normalised as ImageNet's."""
    squares = [decode(Path(f), size, square=True) for f in load_sample_images().filenames]
    return to_normalised_floats(torch.stack(squares))


@pytest.mark.parametrize("case", list(CASES))
def test_every_preset_and_switch_exports_and_matches_pytorch(case, tmp_path):
    overrides, shown = CASES[case]
    # A quarter of the width; He init, so that LRN's sum of squares weighs in (N(0, 0.01) leaves it ~0).
    cfg = compose_config([*overrides, "model.width=0.25", "model.init=kaiming"])
    torch.manual_seed(0)
    net = build(cfg.model, "model").eval()
    for module in net.modules():  # running statistics of a trained network, not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    path = export_onnx(net, tmp_path / "net.onnx", cfg.model.input_size)
    difference = largest_difference(path, net, photos(cfg.model.input_size))
    assert difference < TOLERANCE, (case, difference)
    ops = set(operators(path))
    assert shown <= ops, (case, ops)
    assert grouped_convolutions(path) == (3 if cfg.model.columns == 2 else 0), case  # conv2, 4, 5 in the columns


def grouped_convolutions(path: Path) -> int:
    import onnx

    graph = onnx.load(str(path)).graph
    return sum(n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute) for n in graph.node)


def test_the_export_has_a_dynamic_batch(tmp_path):
    cfg = compose_config(["model=cifar", "model.width=0.25"])
    net = build(cfg.model, "model").eval()
    path = export_onnx(net, tmp_path / "net.onnx", 32)
    for batch in (1, 5):
        images = torch.randn(batch, 3, 32, 32)
        assert largest_difference(path, net, images) < TOLERANCE


@pytest.mark.slow
def test_predict_with_torchvisions_architecture_gives_torchvisions_top5(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.alexnet().eval()  # random weights: there are no real ones here
    torch.save(reference.state_dict(), tmp_path / "alexnet.pth")  # torchvision's file format
    photo = tmp_path / "flower.png"  # lossless: both sides decode the same pixels
    Image.open(load_sample_images().filenames[1]).save(photo)

    out = tmp_path / "predictions.json"
    args = [
        str(ROOT / "src" / "predict.py"),
        f"ckpt_path={tmp_path / 'alexnet.pth'}",
        "model=one_column",
        "data=imagenet_torchvision",
        f"data.root={tmp_path / 'no-imagenet-here'}",
        f"images={photo}",
        f"output={out}",
        "trainer.accelerator=cpu",
    ]
    result = run_script(args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (predicted,) = json.loads(out.read_text())["predictions"]

    weights = AlexNet_Weights.IMAGENET1K_V1
    with torch.no_grad():
        image = pil_to_tensor(Image.open(photo).convert("RGB"))  # uint8, as torchvision's weights' transforms take it
        probs = reference(weights.transforms()(image)[None]).softmax(-1)[0]
    top = probs.topk(5)
    assert [c["class"] for c in predicted["top_k"]] == top.indices.tolist()
    assert [c["name"] for c in predicted["top_k"]] == [weights.meta["categories"][i] for i in top.indices]
    assert [c["prob"] for c in predicted["top_k"]] == pytest.approx(top.values.tolist(), abs=1e-4)


def test_weights_that_do_not_fit_the_preset_fail_at_once_with_the_fix(tmp_path):
    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "alexnet.pth")
    shutil.copy(load_sample_images().filenames[0], tmp_path / "china.jpg")
    args = [str(ROOT / "src" / "predict.py"), f"ckpt_path={tmp_path / 'alexnet.pth'}", "model=paper"]
    result = run_script([*args, "data=imagenet", f"images={tmp_path / 'china.jpg'}"], cwd=tmp_path)
    assert result.returncode == 1
    assert "do not fit the network of model=paper" in result.stderr and "model=one_column" in result.stderr
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    result = run_script([args[0], f"ckpt_path={tmp_path / 'other.pt'}", f"images={tmp_path}"], cwd=tmp_path)
    assert result.returncode == 1 and "neither a checkpoint of this repo nor torchvision" in result.stderr
