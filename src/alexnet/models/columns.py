"""The paper's two GPUs as two processes: one AlexNet column per process (§3.2, Fig. 2).

``AlexNet(columns=2)`` reproduces the paper's *connectivity* on one device with grouped
convolutions. :class:`ColumnParallelAlexNet` is the same network split across a process group of
``columns`` processes: each holds its column's half of every layer's kernels (the output units,
dim 0 of every weight, bias and BatchNorm buffer), and the columns talk only where the paper's GPUs
did. The 2012 code's own split (cuda-convnet2, ``layers/layers-imagenet-2gpu-model.cfg``) agrees
on conv1-fc7:

- conv1, conv2: own column only (conv1 reads the image, which every column has);
- conv3: reads both columns' conv2 maps (one all-gather);
- conv4, conv5: own column only;
- fc6: reads both columns' conv5 maps; fc7: both columns' fc6 units; fc8: both columns' fc7 units;
- fc8 is split by output units too, and the logits gathered; cuda-convnet2 put all 1,000 on GPU 0,
  which left GPU 1 idle there (ours: half the classes per column, the same result).

LRN stays within each column, as in the grouped model. Dropout is applied after a gather, to the
whole layer: the columns draw the same mask from the same seed (Lightning seeds every process
alike), so the split network computes exactly what the grouped one does.

The gathers are autograd functions. Backward sums the gradients of the gathered tensor over the
columns (a reduce-scatter: each column's layer above read all of it), except at the logits, where
every column computes the same loss, so each keeps its own slice.
"""

import copy
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from alexnet.models.alexnet import AlexNet
from alexnet.models.layers import LocalResponseNorm

# Where the columns exchange activations (§3.2): (the layer that reads both columns, what it reads).
CROSSINGS = (("conv3", "conv2's maps"), ("fc6", "conv5's maps"), ("fc7", "fc6's units"), ("fc8", "fc7's units"))


@dataclass(frozen=True)
class Exchange:
    """One gather: what each process sends (and receives) per training step."""

    layer: str
    reads: str
    shape: tuple[int, ...]  # this column's part, one process's batch
    forward_bytes: int  # received in the all-gather
    backward_bytes: int  # sent in the gradient's reduce-scatter (0 at the logits)


class ColumnParallelAlexNet(nn.Module):
    """Column ``column`` of ``net``, run together with the other columns in ``group``.

    Args:
        net: the whole network, ``AlexNet(columns=k)``; its weights are split, not re-drawn, so the
            columns start as the grouped model they came from.
        column: this process's column, its rank in ``group``.
        group: the column processes of one replica (``None``: shapes only, no communication, for
            :meth:`exchanges` on the meta device).

    Parameter names and their order are ``net``'s, each tensor holding this column's rows, so a
    whole-network state dict is the columns' tensors concatenated along dim 0 (see
    :func:`split_state` and :func:`is_split`).
    """

    def __init__(self, net: AlexNet, column: int, group: dist.ProcessGroup | None) -> None:
        super().__init__()
        k = net.columns
        if not 0 <= column < k:
            raise ValueError(f"column {column} of a {k}-column network")
        self.columns, self.column, self.group = k, column, group
        self.features = copy.deepcopy(net.features)
        self.avgpool = copy.deepcopy(net.avgpool)
        self.classifier = copy.deepcopy(net.classifier)
        like = next(net.parameters())
        with torch.device(like.device):  # the columns' layers where the network is, in its dtype (below)
            for block in self.features:
                block.conv = _column_conv(block.conv, k)
                if isinstance(getattr(block, "norm", None), LocalResponseNorm):
                    block.norm = _column_lrn(block.norm, k)
                elif isinstance(getattr(block, "norm", None), nn.BatchNorm2d):
                    block.norm = nn.BatchNorm2d(block.norm.num_features // k, block.norm.eps, block.norm.momentum)
            for name, block in self.classifier.named_children():
                fc = block.fc if isinstance(block, nn.Sequential) else block
                local = nn.Linear(fc.in_features, fc.out_features // k)
                if isinstance(block, nn.Sequential):
                    block.fc = local
                else:
                    setattr(self.classifier, name, local)
        self.to(like.dtype)  # new layers are float32; load_state_dict would cast a float64 network's weights down
        self.load_state_dict(split_state(net.state_dict(), self.state_dict(), column, k))
        self._log: list[Exchange] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._gather(self.classifier.fc8(self.fc7(x)), "logits", "fc8's outputs (the loss on every column)")

    def fc7(self, x: torch.Tensor) -> torch.Tensor:
        """Both columns' fc7 units, as :meth:`AlexNet.fc7` gives them."""
        f = self.features
        x = f.conv2(f.conv1(x))  # own column only
        x = self._gather(x, *CROSSINGS[0])  # conv3 reads both columns
        x = self.avgpool(f.conv5(f.conv4(f.conv3(x))))  # conv4, conv5: own column only
        x = torch.flatten(self._gather(x, *CROSSINGS[1]), 1)  # fc6 reads both columns
        x = self._hidden(self.classifier.fc6, x, CROSSINGS[2])
        return self._hidden(self.classifier.fc7, x, CROSSINGS[3])

    def _hidden(self, block: nn.Sequential, x: torch.Tensor, crossing: tuple[str, str]) -> torch.Tensor:
        """fc6 or fc7 on the whole input ``x``: this column's units, gathered into the whole layer;
        dropout on whole layers only (see the module docstring)."""
        drop = getattr(block, "drop", None)
        before = drop is not None and next(iter(block.children())) is drop
        if before:
            x = drop(x)
        x = self._gather(block.act(block.fc(x)), *crossing)
        return drop(x) if drop is not None and not before else x

    def _gather(self, x: torch.Tensor, layer: str, reads: str) -> torch.Tensor:
        """The columns' parts of ``x`` side by side along dim 1, in column order."""
        last = layer == "logits"
        if self._log is not None:
            sent = (self.columns - 1) * x.numel() * x.element_size()
            self._log.append(Exchange(layer, reads, tuple(x.shape), sent, 0 if last else sent))
        if self.group is None:
            return torch.cat([x] * self.columns, dim=1)
        return _Gather.apply(x, self.group, not last)

    def exchanges(self, batch_size: int, input_size: int) -> list[Exchange]:
        """What one process sends per training step at ``batch_size`` images per replica, from a
        forward pass on the meta device (no compute, no communication)."""
        probe = copy.deepcopy(self, memo={id(self.group): None}).to("meta")  # a process group does not copy
        probe._log = []
        probe.train()
        probe(torch.empty(batch_size, 3, input_size, input_size, device="meta"))
        return probe._log


# torch 2.14 renamed the tensor-to-tensor collectives (the old names warn); older versions have the old.
_ALL_GATHER = getattr(dist, "all_gather_single", dist.all_gather_into_tensor)
_REDUCE_SCATTER = getattr(dist, "reduce_scatter_single", dist.reduce_scatter_tensor)


def exchange_report(net: AlexNet, batch_size: int, input_size: int, replicas: int = 1) -> str:
    """What ``model.parallel=columns`` moves per training step, layer by layer, at ``batch_size``
    images per replica in ``net``'s dtype, beside the gradient all-reduce of data parallelism."""
    column = ColumnParallelAlexNet(copy.deepcopy(net).to("meta"), 0, None)
    rows = column.exchanges(batch_size, input_size)
    mb = 1e6
    lines = [
        f"Column-parallel exchanges per training step, per process ({net.columns} columns, "
        f"{batch_size} images per replica; gathers forward, reduce-scatters backward):",
        f"  {'layer':<7} {'reads both columns of':<42} {'part':>18} {'forward MB':>11} {'backward MB':>12}",
    ]
    for r in rows:
        part = "×".join(map(str, r.shape))
        lines.append(
            f"  {r.layer:<7} {r.reads:<42} {part:>18} {r.forward_bytes / mb:>11.3f} {r.backward_bytes / mb:>12.3f}"
        )
    total = sum(r.forward_bytes + r.backward_bytes for r in rows)
    lines.append(f"  total {total / mb:.3f} MB per step (gloo has no reduce-scatter: it sends the backward part twice)")
    params = sum(p.numel() * p.element_size() for p in net.parameters())
    if replicas > 1:
        lines.append(
            f"  gradient all-reduce over {replicas} replicas: {ring(replicas) * params / net.columns / mb:.3f} MB per "
            f"process per step (each column's {params / net.columns / mb:.1f} MB)"
        )
    lines.append(
        f"  for scale: data parallelism over {net.columns} whole-network processes would all-reduce "
        f"{ring(net.columns) * params / mb:.1f} MB per process per step ({params / mb:.1f} MB of gradients)"
    )
    return "\n".join(lines)


def ring(processes: int) -> float:
    """The share of a buffer each process sends in a ring all-reduce: 2(n - 1)/n."""
    return 2 * (processes - 1) / processes


class _Gather(torch.autograd.Function):
    """All-gather along dim 1. Backward: the sum over columns of the gradient of this column's
    part (``reduce``), or this column's part of one gradient that every column computed alike."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group: dist.ProcessGroup, reduce: bool) -> torch.Tensor:
        ctx.group, ctx.reduce = group, reduce
        k, ctx.rank = dist.get_world_size(group), dist.get_rank(group)
        return gather_rows(x, group).unflatten(0, (k, -1)).movedim(0, 1).flatten(1, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        k = dist.get_world_size(ctx.group)
        parts = grad.unflatten(1, (k, -1)).movedim(1, 0).contiguous()
        if not ctx.reduce:
            return parts[ctx.rank], None, None
        if dist.get_backend(ctx.group) == dist.Backend.NCCL:
            own = parts.new_empty(parts.shape[1:])
            _REDUCE_SCATTER(own, parts.flatten(0, 1), group=ctx.group)
            return own, None, None
        dist.all_reduce(parts, group=ctx.group)  # gloo has no reduce-scatter: twice the bytes, same sum
        return parts[ctx.rank], None, None


def gather_rows(tensor: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """The group's tensors one after another along dim 0, in rank order (not differentiable)."""
    out = tensor.new_empty((dist.get_world_size(group) * tensor.shape[0], *tensor.shape[1:]))
    _ALL_GATHER(out, tensor.contiguous(), group=group)
    return out


def column_groups(world_size: int, columns: int) -> tuple[dist.ProcessGroup, dist.ProcessGroup]:
    """(this process's column group, its replica group) for ``world_size = replicas × columns``
    processes: ranks ``r·k … r·k + k − 1`` are replica ``r``'s columns; the replica group holds the
    same column of every replica (data parallelism's gradient all-reduce). Every process calls it."""
    rank, k = dist.get_rank(), columns
    column_group = replica_group = None
    for replica in range(world_size // k):  # every process creates every group, in the same order
        group = dist.new_group(list(range(replica * k, replica * k + k)))
        column_group = group if rank // k == replica else column_group
    for column in range(k):
        group = dist.new_group(list(range(column, world_size, k)))
        replica_group = group if rank % k == column else replica_group
    return column_group, replica_group


def whole_optimizer_state(state: dict, params: list[torch.Tensor], group: dist.ProcessGroup) -> dict:
    """An optimiser's ``state_dict()`` over column parameters ``params`` (in its order) as it would
    be over the whole network: each tensor shaped like its parameter (SGD's momentum) gathered along
    dim 0. A collective over the column ``group``."""
    own = state["state"]
    whole = {
        i: {name: gather_rows(t, group) if _like(t, params[i]) else t for name, t in entry.items()}
        for i, entry in own.items()
    }
    return {**state, "state": whole}


def column_optimizer_state(state: dict, params: list[torch.Tensor], column: int, columns: int) -> dict:
    """The inverse of :func:`whole_optimizer_state`: each tensor cut to ``column``'s rows where its
    parameter is a column's share."""

    def cut(t, param):
        whole = isinstance(t, torch.Tensor) and t.ndim > 0 and t.shape[0] == columns * param.shape[0]
        return t.chunk(columns, dim=0)[column] if whole and t.shape[1:] == param.shape[1:] else t

    own = {i: {name: cut(t, params[i]) for name, t in entry.items()} for i, entry in state["state"].items()}
    return {**state, "state": own}


def _like(value: object, param: torch.Tensor) -> bool:
    return isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape == param.shape


def is_split(key: str, tensor: torch.Tensor) -> bool:
    """Whether a whole-network state-dict entry is split across columns: every tensor of the
    network with a dim 0 (weights, biases, BatchNorm statistics); not BatchNorm's step count."""
    return tensor.ndim > 0 and not key.endswith("num_batches_tracked")


def split_state(whole: dict[str, torch.Tensor], local: dict[str, torch.Tensor], column: int, columns: int) -> dict:
    """``whole``'s entries cut to ``column``'s rows where ``local`` (that column's own state dict,
    same keys) holds a split tensor."""
    out = {}
    for key, tensor in whole.items():
        if key in local and is_split(key, tensor) and local[key].shape != tensor.shape:
            tensor = tensor.chunk(columns, dim=0)[column]
        out[key] = tensor
    return out


def _column_conv(conv: nn.Conv2d, k: int) -> nn.Conv2d:
    """This column's kernels of ``conv``: a grouped conv (conv2/4/5) reads its own group's input
    only; an ungrouped one (conv1, conv3) reads all of its input."""
    if conv.groups not in (1, k):
        raise ValueError(f"a conv with {conv.groups} groups in a {k}-column network")
    c_in = conv.in_channels // conv.groups
    return nn.Conv2d(c_in, conv.out_channels // k, conv.kernel_size, conv.stride, conv.padding)


def _column_lrn(norm: LocalResponseNorm, k: int) -> LocalResponseNorm:
    """LRN over this column's channels alone, as the grouped model's window stays in its group."""
    return LocalResponseNorm(
        norm.num_channels // k, 1, norm.size, norm.alpha, norm.beta, norm.k, norm.alpha_over_n, norm.impl
    )
