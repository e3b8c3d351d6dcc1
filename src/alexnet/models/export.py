"""The network as an ONNX file, for those who do not run this repo, and the check that it computes
what PyTorch does.

Export goes through PyTorch's current exporter (``torch.onnx.export(..., dynamo=True)``, which traces
with ``torch.export``), with a dynamic batch dimension. Every layer maps to a standard ONNX operator:
the two columns' grouped convolutions to ``Conv`` with ``group=2``, pooling to ``MaxPool`` /
``GlobalAveragePool``, and LRN to ONNX's own ``LRN``. ONNX's ``LRN`` divides ``alpha`` by the window
size, as ``torch.nn.LocalResponseNorm`` does, while this repo's default follows the paper's printed
formula (``alpha_over_n=False``): the exported node carries ``alpha × size`` (see
``LocalResponseNorm.torch_alpha``), and :func:`largest_difference` on real images proves the two agree.

``onnx``, ``onnxscript`` and ``onnxruntime`` are an optional extra (``pip install -e '.[export]'``),
imported here only when used.
"""

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

INPUT, OUTPUT = "images", "logits"  # the graph's names: N×3×H×W normalised floats in, N×classes out
TOLERANCE = 1e-4  # the largest |ONNX Runtime - PyTorch| logit difference an export may have


class ExportError(RuntimeError):
    """An export that cannot be made, or whose file does not compute what the network does."""


def require_onnx() -> None:
    """Raise :class:`ExportError` with the install command when the export extra is missing."""
    missing = []
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ExportError(
            f"exporting to ONNX needs {', '.join(missing)}: pip install -e '.[export]' (make install does)"
        )


def _onnx_lrn(x, size: int, alpha: float, beta: float, k: float):
    """``alexnet::lrn`` as ONNX's ``LRN`` (both divide ``alpha`` by ``size``)."""
    from onnxscript import opset18 as op

    return op.LRN(x, size=size, alpha=alpha, beta=beta, bias=k)


def export_onnx(net: nn.Module, path: Path, input_size: int) -> Path:
    """Write ``net`` (in eval mode: dropout off, BatchNorm's running statistics) to ``path`` as ONNX,
    with input ``images`` ``N×3×input_size×input_size`` (N dynamic) and output ``logits``, and check
    it with ``onnx.checker``."""
    require_onnx()
    import onnx

    for chatty in ("onnxscript", "onnx_ir"):  # a line per optimisation pass at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    net = net.eval().cpu()
    example = torch.zeros(2, 3, input_size, input_size)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        program = torch.onnx.export(
            net,
            (example,),
            dynamo=True,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes={"x": {0: batch}},
            custom_translation_table={torch.ops.alexnet.lrn.default: _onnx_lrn},
            verbose=False,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path))
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def onnx_logits(path: Path, images: torch.Tensor) -> np.ndarray:
    """The ONNX file's logits for a batch of normalised images, from ONNX Runtime on the CPU."""
    require_onnx()
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT], {INPUT: images.detach().cpu().float().numpy()})[0]


@torch.no_grad()
def largest_difference(path: Path, net: nn.Module, images: torch.Tensor) -> float:
    """``max |ONNX Runtime's logits - PyTorch's|`` over ``images`` (normalised, ``N×3×H×W``)."""
    expected = net.eval().cpu()(images.cpu().float()).numpy()
    return float(np.abs(onnx_logits(path, images) - expected).max())


def operators(path: Path) -> list[str]:
    """The ONNX operator of each node of the graph, in order (e.g. to see ``LRN`` and grouped ``Conv``)."""
    import onnx

    return [node.op_type for node in onnx.load(str(path)).graph.node]
