"""A faster local response normalisation with the same numbers as ``F.local_response_norm``.

``F.local_response_norm`` builds the channel-window sum with a 3-D average pool over a padded copy
and lets autograd differentiate it: on a CPU that costs about 8× a ``BatchNorm2d`` (forward +
backward at conv1's shape; ``make bench``). Here the window sum is five shifted adds, ``d**-beta``
for the paper's ``beta = 0.75`` is ``rsqrt(d) * sqrt(rsqrt(d))`` (no exp/log), and the gradient is
written out by hand::

    y = x * d**-beta,  d = k + a * S(x**2)     (S: sum over the window, a = alpha as applied)
    dx = g * d**-beta - 2 * a * beta * x * S(g * x * d**(-beta - 1))

(``S`` is its own transpose: a centred window.) ``impl="fused"`` compiles the forward and backward
bodies with ``torch.compile``: inductor fuses each into one loop, a Triton kernel on a GPU and
vectorised C++ on a CPU (which needs a C++ compiler). Where compiling fails (no compiler, no
Triton), that device type alone falls back to the eager formula, with the same numbers, and the
reason is logged once and kept in ``FALLBACKS``; ``RUNS`` counts which kernel ran.
"""

import logging
from collections import Counter
from collections.abc import Callable

import torch
import torch.nn.functional as F

IMPLS = ("auto", "fused", "eager", "torch")


def window_sum(t: torch.Tensor, size: int) -> torch.Tensor:
    """Sum over the ``size`` channels centred on each channel (zeros beyond the edges), ``N×C×H×W``."""
    half, channels = size // 2, t.shape[1]
    padded = F.pad(t, (0, 0, 0, 0, half, half))
    total = padded[:, :channels].clone()
    for shift in range(1, size):
        total += padded[:, shift : shift + channels]
    return total


def _inverse_power(d: torch.Tensor, beta: float) -> torch.Tensor:
    """``d ** -beta``; for 0.75 (the paper's) with square roots, far cheaper than pow."""
    if beta == 0.75:
        r = torch.rsqrt(d)
        return r.mul_(torch.sqrt(r))
    return d.pow(-beta)


# In-place steps on fresh temporaries: fewer passes over memory when eager; inductor fuses either way.
def _forward(x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> tuple[torch.Tensor, torch.Tensor]:
    d = window_sum(x * x, size).mul_(alpha).add_(k)
    return x * _inverse_power(d, beta), d


def _backward(g: torch.Tensor, x: torch.Tensor, d: torch.Tensor, size: int, alpha: float, beta: float) -> torch.Tensor:
    scale = _inverse_power(d, beta)
    inner = window_sum((g * x).mul_(scale).div_(d), size)
    return (g * scale).addcmul_(x, inner, value=-2 * alpha * beta)


log = logging.getLogger(__name__)

_KERNELS: dict[str, tuple[Callable, Callable]] = {"eager": (_forward, _backward)}
FALLBACKS: dict[str, str] = {}  # device type -> why the fused kernel could not be compiled there
RUNS: Counter[str] = Counter()  # forward calls per kernel ("fused", "eager") in this process
_FUSED_RAN_ON: set[str] = set()  # device types where the compiled kernel has run: errors there are real


def _kernels(impl: str) -> tuple[Callable, Callable]:
    if impl not in _KERNELS:  # "fused": compiled once per process, on first use
        _KERNELS[impl] = (torch.compile(_forward), torch.compile(_backward))
    return _KERNELS[impl]


def kernel_for(impl: str, device: torch.device) -> str:
    """The kernel ``impl`` runs on ``device``: "torch", "eager", "fused", or
    "eager (fused failed to compile: <reason>)"."""
    impl = resolve_impl(impl, device)
    if impl == "fused" and device.type in FALLBACKS:
        return f"eager (fused failed to compile: {FALLBACKS[device.type]})"
    return impl


class _LRNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, size, alpha, beta, k, impl):  # noqa: D102 (autograd's signature)
        forward, _ = _kernels(impl)
        y, d = forward(x, size, alpha, beta, k)
        ctx.save_for_backward(x, d)
        ctx.constants = (size, alpha, beta, impl)
        return y

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, d = ctx.saved_tensors
        size, alpha, beta, impl = ctx.constants
        _, backward = _kernels(impl)
        return backward(grad.contiguous(), x, d, size, alpha, beta), None, None, None, None, None


def resolve_impl(impl: str, device: torch.device) -> str:
    """``auto``: fused (compiled) on a GPU, where compiling pays off at once; the eager formula on a
    CPU, where compiling takes a while (``fused`` asks for it there too)."""
    if impl not in IMPLS:
        raise ValueError(f"LRN impl {impl!r}; choose one of {IMPLS}")
    if impl == "auto":
        return "fused" if device.type == "cuda" else "eager"
    return impl


def local_response_norm(
    x: torch.Tensor, size: int, alpha: float, beta: float, k: float, impl: str = "auto"
) -> torch.Tensor:
    """``F.local_response_norm(x, size, alpha * size, beta, k)``'s result, faster: ``alpha`` here
    multiplies the plain window sum (the convention of §3.3 as printed)."""
    if torch.compiler.is_exporting():  # torch.export (the ONNX exporter): one named operator, not autograd code
        return torch.ops.alexnet.lrn(x, size, alpha * size, beta, k)
    impl = resolve_impl(impl, x.device)
    if impl == "torch":
        return F.local_response_norm(x, size, alpha * size, beta, k)
    device = x.device.type
    # A shape-only pass (the meta device: the builder's probe) has nothing to compile for.
    if impl == "fused" and device != "meta" and device not in FALLBACKS:
        try:
            y = _LRNFunction.apply(x, size, alpha, beta, k, "fused")
        except Exception as err:  # the first call compiles: no C++ compiler, no Triton, ...
            if device in _FUSED_RAN_ON:
                raise  # it compiled and ran here before: this error is not about compiling
            FALLBACKS[device] = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300]}"
            log.warning(
                "fused LRN could not be compiled for %s (%s); using the eager formula there (same numbers, slower)",
                device,
                FALLBACKS[device],
            )
        else:
            _FUSED_RAN_ON.add(device)
            _count("fused")
            return y
    y = _LRNFunction.apply(x, size, alpha, beta, k, "eager")
    _count("eager")
    return y


@torch.library.custom_op("alexnet::lrn", mutates_args=())
def lrn(x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """LRN as one operator for exported graphs, ``alpha`` in torch's (and ONNX's) convention, divided
    by ``size``; ``alexnet.models.export`` maps it to ONNX's ``LRN``."""
    return F.local_response_norm(x, size, alpha, beta, k)


@lrn.register_fake
def _(x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    return torch.empty_like(x)


def _count(kernel: str) -> None:
    if not torch.compiler.is_compiling():  # inside a compiled network (system.compile) no Python side effects
        RUNS[kernel] += 1
