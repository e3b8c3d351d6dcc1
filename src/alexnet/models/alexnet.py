"""AlexNet: Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional
Neural Networks", NIPS 2012 (§3, Fig. 2).

One builder, every design choice an argument. The paper's two GPUs are two *columns*: conv2, conv4
and conv5 are grouped convolutions that see only their own column's channels; conv3 and the fully
connected layers cross columns (§3.2). Named presets over this builder are config files,
``conf/model/{paper,one_column,blog,cifar}.yaml``.

Departures from the paper, each deliberate:
- the input is 227×227, not the printed 224, which cannot give conv1's 55×55 output;
- LRN constants are the paper's, with its printed formula by default (see ``LocalResponseNorm``);
- biases the paper sets to 1 can be switched to other inits (``init``), since bias 1 is known to
  stall some runs (Caffe used 0.1).
"""

import copy
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from alexnet.errors import is_number, require
from alexnet.models.layers import (
    ACT_LAYERS,
    NORM_LAYERS,
    POOL_LAYERS,
    ActFactory,
    LocalResponseNorm,
    NormFactory,
    PoolFactory,
    resolve,
)

# conv1 geometry per input stem: (kernel, stride, padding).
STEMS: dict[str, tuple[int, int, int]] = {
    "imagenet": (11, 4, 0),  # §3.5: 227 -> 55
    "torchvision": (11, 4, 2),  # torchvision / cuda-convnet2 one-GPU: 224 -> 55
    "cifar": (3, 1, 1),  # ours: 32 -> 32, so three 3/2 pools leave 3×3 (2/2 pools: 4×4)
}
# conv2..conv5: (kernel, padding, grouped by column). conv3 is the one that crosses columns.
LATER_CONVS: tuple[tuple[int, int, bool], ...] = ((5, 2, True), (3, 1, False), (3, 1, True), (3, 1, True))
PAPER_CHANNELS = (96, 256, 384, 384, 256)
INITS = ("paper", "kaiming", "torch")
HEADS = ("flatten", "gap")
PARALLEL = ("none", "columns")
DROPOUT_POSITIONS = ("after", "before")


class AlexNet(nn.Module):
    """AlexNet with each of the paper's design choices as a constructor argument.

    Args:
        num_classes: outputs of fc8.
        input_size: side of the square input; sets fc6's input size for ``head="flatten"``.
        stem: conv1 geometry, a key of ``STEMS``.
        columns: 2 is the paper's two-GPU net (grouped conv2/4/5), 1 a single column.
        width: multiplier on every conv's channels and on the hidden FC units.
        channels: conv1..conv5 channels at ``width=1``.
        hidden: units of fc6 and fc7 at ``width=1``.
        norm: normalisation after the ReLU of the ``norm_after`` convs: "lrn", "batchnorm",
            "none"/None, or a factory ``norm(channels, groups)``.
        pool: max pooling after the ``pool_after`` convs: "overlap" (3/2), "nonoverlap" (2/2),
            or a factory ``pool()``.
        activation: "relu", "tanh" or a factory ``act()``.
        dropout: drop probability on fc6 and fc7 (0 disables it).
        dropout_position: "after" each of fc6/fc7's ReLU (the paper, Caffe) or "before" each of
            fc6/fc7 (torchvision).
        pool_after: 1-based indices of the convs followed by max pooling.
        norm_after: 1-based indices of the convs followed by ``norm``.
        head: "flatten" the last map into fc6 (the paper's 6×6×256) or "gap", global average
            pooling (the blog post).
        init: "paper" (§5: weights N(0, 0.01), bias 1 in conv2/4/5 and fc6/7, else 0),
            "kaiming" (He normal, zero bias) or "torch" (PyTorch's defaults, as torchvision).
        parallel: how training lays the network out: "none" (all of it in each process) or
            "columns" (one process per column, as the paper's GPUs: ``alexnet.models.columns``).
            The network computes the same either way, so its checkpoints load into either.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        input_size: int = 227,
        stem: str = "imagenet",
        columns: int = 2,
        width: float = 1.0,
        channels: Sequence[int] = PAPER_CHANNELS,
        hidden: int = 4096,
        norm: str | NormFactory | None = "lrn",
        pool: str | PoolFactory = "overlap",
        activation: str | ActFactory = "relu",
        dropout: float = 0.5,
        dropout_position: str = "after",
        pool_after: Sequence[int] = (1, 2, 5),
        norm_after: Sequence[int] = (1, 2),
        head: str = "flatten",
        init: str = "paper",
        parallel: str = "none",
    ) -> None:
        super().__init__()
        for key, value, allowed in (
            ("stem", stem, STEMS),
            ("head", head, HEADS),
            ("init", init, INITS),
            ("dropout_position", dropout_position, DROPOUT_POSITIONS),
            ("parallel", parallel, PARALLEL),
        ):
            require(value in allowed, f"model.{key}", value, f"one of {sorted(allowed)}")
        require(len(channels) == 5, "model.channels", list(channels), "conv1..conv5's channels (5 numbers)")
        require(isinstance(columns, int) and columns >= 1, "model.columns", columns, "an integer >= 1 (the paper: 2)")
        require(is_number(width) and width > 0, "model.width", width, "a number > 0")
        require(is_number(dropout) and 0 <= dropout < 1, "dropout.p", dropout, "a probability in [0, 1)")
        require(isinstance(input_size, int) and input_size >= 1, "model.input_size", input_size, "a positive integer")
        norm = resolve("norm", norm, NORM_LAYERS)
        pool = resolve("pool", pool, POOL_LAYERS)
        act = resolve("activation", activation, ACT_LAYERS)

        widths = [scaled_channels(c, width, columns) for c in channels]
        hidden = max(1, round(hidden * width))
        self.columns, self.init, self.parallel = columns, init, parallel

        kernel, stride, padding = STEMS[stem]
        convs = [nn.Conv2d(3, widths[0], kernel, stride, padding)]
        for (kernel, padding, grouped), c_in, c_out in zip(LATER_CONVS, widths, widths[1:]):
            convs.append(nn.Conv2d(c_in, c_out, kernel, padding=padding, groups=columns if grouped else 1))

        blocks = OrderedDict()
        for i, conv in enumerate(convs, start=1):
            layers = OrderedDict(conv=conv, act=act())
            if norm is not None and i in norm_after:
                layers["norm"] = norm(conv.out_channels, columns)
            if i in pool_after:
                layers["pool"] = pool()
            blocks[f"conv{i}"] = nn.Sequential(layers)
        self.features = nn.Sequential(blocks)
        if parallel == "columns":
            _check_splits(columns, hidden, num_classes, [b.norm for b in blocks.values() if hasattr(b, "norm")])
        self.avgpool = nn.AdaptiveAvgPool2d(1) if head == "gap" else nn.Identity()
        smallest = smallest_input(self.features)
        vanishes = (
            f"too small for model.stem={stem} and its pools (the feature map vanishes); the smallest input that "
            f"works is {smallest} (the paper: 227 with stem=imagenet, 32 with stem=cifar)"
        )
        require(input_size >= smallest, "model.input_size", input_size, vanishes)

        flat = self._feature_shape(input_size).numel()
        self.classifier = nn.Sequential(
            OrderedDict(
                fc6=_fc_block(flat, hidden, act, dropout, dropout_position),
                fc7=_fc_block(hidden, hidden, act, dropout, dropout_position),
                fc8=nn.Linear(hidden, num_classes),
            )
        )
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.fc8(self.fc7(x))

    def fc7(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's output: the 4096-d image representation whose distances the
        paper's Fig. 4 (right) compares."""
        x = self.avgpool(self.features(x))
        return self.classifier.fc7(self.classifier.fc6(torch.flatten(x, 1)))

    def reset_parameters(self) -> None:
        """Initialise weights by ``self.init``."""
        if self.init == "torch":
            return
        for name, module in self.named_modules():
            if not isinstance(module, nn.Conv2d | nn.Linear):
                continue
            if self.init == "paper":
                nn.init.normal_(module.weight, 0.0, 0.01)
                # §5: bias 1 in conv2, conv4, conv5 and the hidden FC layers, to feed ReLUs positive inputs.
                ones = any(
                    name.startswith(p)
                    for p in ("features.conv2", "features.conv4", "features.conv5", "classifier.fc6", "classifier.fc7")
                )
                nn.init.constant_(module.bias, 1.0 if ones else 0.0)
            else:
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def _feature_shape(self, input_size: int) -> torch.Size:
        """Shape of one image's pooled features, from a forward pass on the meta device (no compute)."""
        probe = nn.Sequential(copy.deepcopy(self.features), copy.deepcopy(self.avgpool)).to("meta")
        return probe(torch.empty(1, 3, input_size, input_size, device="meta")).shape[1:]


def smallest_input(features: nn.Module) -> int:
    """The smallest square input whose feature map keeps at least 1×1 through every conv and pool
    of ``features``: each window (kernel ``k``, stride ``s``, padding ``p``) needs ``(n - 1) s + k - 2p``
    inputs for ``n`` outputs, worked back from one output."""
    windows = [m for m in features.modules() if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d)]
    size = 1
    for window in reversed(windows):
        kernel, stride, padding = (_side(getattr(window, key)) for key in ("kernel_size", "stride", "padding"))
        size = max(1, (size - 1) * stride + kernel - 2 * padding)
    return size


def _side(value: int | Sequence[int]) -> int:
    return value if isinstance(value, int) else value[0]


def _check_splits(columns: int, hidden: int, num_classes: int, norms: list[nn.Module]) -> None:
    """model.parallel=columns splits every layer's units evenly among the columns."""
    require(columns >= 2, "model.columns", columns, "2 or more with model.parallel=columns (the paper: 2)")
    units = f"a multiple of model.columns={columns}, since each column holds an equal share"
    require(hidden % columns == 0, "model.hidden × model.width", hidden, f"{units} of fc6 and fc7")
    require(num_classes % columns == 0, "data.num_classes", num_classes, f"{units} of fc8 (or model.parallel=none)")
    for norm in norms:  # the column split knows how to cut these two
        known = isinstance(norm, LocalResponseNorm | nn.BatchNorm2d)
        require(known, "norm", type(norm).__name__, "lrn, batchnorm or none with model.parallel=columns")


def scaled_channels(channels: int, width: float, columns: int) -> int:
    """``channels * width``, rounded to a positive multiple of ``columns`` so the groups divide it."""
    return max(columns, round(channels * width / columns) * columns)


def _fc_block(c_in: int, c_out: int, act: ActFactory, dropout: float, position: str) -> nn.Sequential:
    layers = OrderedDict(fc=nn.Linear(c_in, c_out), act=act())
    if dropout > 0:
        drop = nn.Dropout(dropout)
        layers = OrderedDict(drop=drop, **layers) if position == "before" else OrderedDict(**layers, drop=drop)
    return nn.Sequential(layers)
