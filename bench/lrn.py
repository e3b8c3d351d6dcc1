"""lrn_vs_batchnorm: forward + backward of the paper's LRN at conv1's output shape, against BatchNorm2d.

Each LRN is conv1's, taken from ``model=paper norm.impl=<impl>`` built from the real config, as
training runs it: a kernel that building a model switched off would show here.
"""

import torch
from hydra.utils import instantiate
from torch import nn

from bench.harness import Result, compose_config, median_time

SHAPE = (32, 96, 55, 55)  # a batch of 32 at conv1's output (96 × 55 × 55)


def forward_backward_ms(module: nn.Module, x: torch.Tensor) -> float:
    grad = torch.ones_like(x)

    def step() -> None:
        leaf = x.detach().requires_grad_(True)
        module(leaf).backward(grad)

    return 1000 * median_time(step)


def lrn_in_model(impl: str, device: torch.device) -> nn.Module:
    """conv1's LRN layer of the paper's network, built from the config with ``norm.impl=impl``."""
    cfg = compose_config(["model=paper", "data=imagenet", f"norm.impl={impl}"])
    return instantiate(cfg.model).features.conv1.norm.to(device)


def run(device: torch.device, shape: tuple[int, ...] = SHAPE) -> list[Result]:
    """The three comparisons at ``shape`` (conv1's output at batch 32 unless told: smaller in smoke runs)."""
    torch.manual_seed(0)
    x = torch.randn(shape, device=device) * 5
    batchnorm = forward_backward_ms(nn.BatchNorm2d(shape[1]).to(device), x)
    torch_lrn = forward_backward_ms(lrn_in_model("torch", device), x)
    eager = forward_backward_ms(lrn_in_model("eager", device), x)
    fused = forward_backward_ms(lrn_in_model("fused", device), x)  # warm-up runs absorb compiling
    size = "×".join(map(str, shape))
    torch_label = f"F.local_response_norm fwd+bwd {size}"
    return [
        Result(
            "lrn_vs_batchnorm",
            batchnorm,
            fused,
            "ms",
            "<= 2.0",
            f"BatchNorm2d fwd+bwd {size}",
            "conv1's LRN in model=paper norm.impl=fused, fwd+bwd",
        ),
        Result("fused_lrn_vs_torch_lrn", torch_lrn, fused, "ms", "<= 1.0", torch_label, "norm.impl=fused"),
        Result(
            "eager_lrn_vs_torch_lrn",
            torch_lrn,
            eager,
            "ms",
            "<= 1.0",
            torch_label,
            "norm.impl=eager (what auto runs on a CPU: no compiling)",
        ),
    ]
