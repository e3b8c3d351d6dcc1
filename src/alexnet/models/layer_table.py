"""Per-layer output shapes, parameters and multiply-adds of a network, without training it."""

import copy
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerInfo:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


def layer_table(model: nn.Module, input_size: int) -> list[LayerInfo]:
    """One row per leaf module, in call order, for a single ``3 × input_size × input_size`` image.

    Multiply-adds are counted for convolutions (output elements × input channels per group ×
    kernel area) and linear layers (in × out); other layers count as zero, the usual convention.
    """
    rows: list[LayerInfo] = []

    def record(name: str):
        def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
            params = sum(p.numel() for p in module.parameters(recurse=False))
            rows.append(LayerInfo(name, type(module).__name__, tuple(output.shape[1:]), params, _macs(module, output)))

        return hook

    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    handles = [m.register_forward_hook(record(n)) for n, m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            # forward, not __call__: a network compiled in place (system.compile) is run, not compiled
            model.forward(torch.zeros(1, 3, input_size, input_size, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return rows


def mult_adds_by_layer(model: nn.Module, input_size: int) -> dict[str, int]:
    """Each leaf layer's multiply-adds for one image (:func:`layer_table`), counted on a copy of
    ``model`` on the meta device: no compute, and no communication for a column-parallel network's
    column (:class:`~alexnet.models.columns.ColumnParallelAlexNet`), whose count is that column's
    share times the columns (they are alike), i.e. the whole network's."""
    from alexnet.models.columns import ColumnParallelAlexNet

    parallel = isinstance(model, ColumnParallelAlexNet)
    memo = {id(model.group): None} if parallel else {}  # a process group does not copy; None: shapes only
    probe = copy.deepcopy(model, memo).to("meta")
    share = model.columns if parallel else 1
    return {row.name: row.macs * share for row in layer_table(probe, input_size)}


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


def print_summary(model: nn.Module, input_size: int) -> tuple[int, int]:
    """Print the layer table with rich; return (total parameters, total multiply-adds)."""
    from rich.console import Console
    from rich.table import Table

    rows = layer_table(model, input_size)
    table = Table(title=f"{type(model).__name__} on 3×{input_size}×{input_size}")
    for column in ("layer", "type", "output", "params", "mult-adds"):
        table.add_column(column, justify="right" if column in ("params", "mult-adds") else "left")
    for row in rows:
        shape = "×".join(map(str, row.output_shape))
        table.add_row(row.name, row.kind, shape, f"{row.params:,}", f"{row.macs:,}")
    params = sum(p.numel() for p in model.parameters())
    macs = sum(row.macs for row in rows)
    table.add_section()
    table.add_row("total", "", "", f"{params:,}", f"{macs:,} ({macs / 1e9:.3f} G)")
    Console().print(table)
    return params, macs
