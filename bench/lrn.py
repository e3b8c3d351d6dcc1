"""lrn_vs_batchnorm: forward + backward of the paper's LRN at conv1's output shape, against BatchNorm2d."""

import torch
from torch import nn

from alexnet.models import LocalResponseNorm
from bench.harness import Result, median_time

SHAPE = (32, 96, 55, 55)  # a batch of 32 at conv1's output (96 × 55 × 55)


def forward_backward_ms(module: nn.Module, x: torch.Tensor) -> float:
    grad = torch.ones_like(x)

    def step() -> None:
        leaf = x.detach().requires_grad_(True)
        module(leaf).backward(grad)

    return 1000 * median_time(step)


def run(device: torch.device) -> list[Result]:
    torch.manual_seed(0)
    x = torch.randn(SHAPE, device=device) * 5
    batchnorm = forward_backward_ms(nn.BatchNorm2d(SHAPE[1]).to(device), x)
    torch_lrn = forward_backward_ms(LocalResponseNorm(SHAPE[1], impl="torch"), x)
    eager = forward_backward_ms(LocalResponseNorm(SHAPE[1], impl="eager"), x)
    fused = forward_backward_ms(LocalResponseNorm(SHAPE[1], impl="fused"), x)  # warm-up runs absorb compiling
    shape = "×".join(map(str, SHAPE))
    torch_label = f"F.local_response_norm fwd+bwd {shape}"
    return [
        Result(
            "lrn_vs_batchnorm",
            batchnorm,
            fused,
            "ms",
            "<= 2.0",
            f"BatchNorm2d fwd+bwd {shape}",
            "LocalResponseNorm(impl=fused) fwd+bwd",
        ),
        Result("fused_lrn_vs_torch_lrn", torch_lrn, fused, "ms", "<= 1.0", torch_label, "impl=fused"),
        Result(
            "eager_lrn_vs_torch_lrn",
            torch_lrn,
            eager,
            "ms",
            "<= 1.0",
            torch_label,
            "impl=eager (what impl=auto runs on a CPU: no compiling)",
        ),
    ]
