"""Layer factories for the AlexNet builder.

Every ablation axis is a factory the builder calls, in the manner of timm's ``norm_layer`` and
``act_layer`` arguments: a normalisation factory is called as ``norm(channels, groups)``, a pooling
factory as ``pool()``, an activation factory as ``act()``. Hydra builds them from the config groups
with ``_partial_: true``; from Python, pass a name from the maps below or any callable.
"""

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from alexnet.errors import is_number, require
from alexnet.models.fast_lrn import IMPLS, local_response_norm

NormFactory = Callable[[int, int], nn.Module]
PoolFactory = Callable[[], nn.Module]
ActFactory = Callable[[], nn.Module]


class LocalResponseNorm(nn.Module):
    """Local response normalisation across channels (§3.3), constants in the paper's terms.

    ``b_c = a_c / (k + alpha * S_c) ** beta`` where ``S_c`` sums ``a_j ** 2`` over the ``size``
    channels centred on ``c``.

    The paper prints ``S_c`` as a plain sum (``alpha_over_n=False``, the default here). Alex's
    cuda-convnet2 code, Caffe and ``torch.nn.LocalResponseNorm`` all divide ``alpha`` by ``size``
    (``alpha_over_n=True``), so the same "alpha = 1e-4" means a five times weaker normalisation
    there.

    With ``groups > 1`` the window stays inside each group of channels, as it did on each of the
    paper's two GPUs: a channel of one column is never normalised by the other column.

    ``impl`` picks the code, all with the same numbers: "torch" (``F.local_response_norm``),
    "eager" (``fast_lrn``'s hand-written gradient), "fused" (the same, compiled into fused
    kernels) or "auto" (fused on a GPU, eager on a CPU).
    """

    def __init__(
        self,
        num_channels: int,
        groups: int = 1,
        size: int = 5,
        alpha: float = 1e-4,
        beta: float = 0.75,
        k: float = 2.0,
        alpha_over_n: bool = False,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        odd = isinstance(size, int) and size >= 1 and size % 2 == 1
        require(odd, "norm.size", size, "an odd positive integer (a window centred on each channel; the paper: 5)")
        for key, value in (("alpha", alpha), ("beta", beta), ("k", k)):
            require(is_number(value) and value >= 0, f"norm.{key}", value, "a number >= 0")
        if num_channels % groups:
            raise ValueError(f"LRN channels ({num_channels}) must divide into {groups} groups")
        self.num_channels, self.groups = num_channels, groups
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        self.alpha_over_n = alpha_over_n
        require(impl in IMPLS, "norm.impl", impl, f"one of {list(IMPLS)}")  # now, not at the first batch
        self.impl = impl

    @property
    def torch_alpha(self) -> float:
        """``alpha`` in ``torch.nn.LocalResponseNorm``'s convention, which divides it by ``size``."""
        return self.alpha if self.alpha_over_n else self.alpha * self.size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.torch_alpha / self.size  # what multiplies the plain window sum
        n, c, h, w = x.shape
        grouped = x.reshape(n * self.groups, c // self.groups, h, w)
        return local_response_norm(grouped, self.size, alpha, self.beta, self.k, self.impl).reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return (
            f"{self.num_channels}, groups={self.groups}, size={self.size}, alpha={self.alpha}, "
            f"beta={self.beta}, k={self.k}, alpha_over_n={self.alpha_over_n}, impl={self.impl}"
        )


def batch_norm(num_channels: int, groups: int = 1) -> nn.Module:
    """BatchNorm2d at LRN's site; per channel, so the column structure needs nothing special.

    Under DDP the trainer's ``sync_batchnorm`` turns it into ``SyncBatchNorm``.
    """
    return nn.BatchNorm2d(num_channels)


NORM_LAYERS: dict[str, NormFactory | None] = {
    "lrn": LocalResponseNorm,
    "batchnorm": batch_norm,
    "none": None,
}
POOL_LAYERS: dict[str, PoolFactory] = {
    "overlap": partial(nn.MaxPool2d, kernel_size=3, stride=2),  # §3.4: z = 3, s = 2
    "nonoverlap": partial(nn.MaxPool2d, kernel_size=2, stride=2),  # the traditional s = z
}
ACT_LAYERS: dict[str, ActFactory] = {
    "relu": partial(nn.ReLU, inplace=True),
    "tanh": nn.Tanh,
}


def resolve(kind: str, value, table: dict):
    """A factory from a name in ``table``, or ``value`` itself when it is already a callable."""
    if value is None or callable(value):
        return value
    require(value in table, kind, value, f"one of {sorted(table)}")
    return table[value]
