"""The one hash that seeds per-sample and per-step randomness (crops, flips, order, colour noise)."""

import torch

MASK = (1 << 64) - 1


def mix(*values: int) -> int:
    """A 64-bit hash of integers (SplitMix64's finaliser, chained): the same in every process, so
    that what it seeds (a crop, a step's colour noise) does not depend on a process's generator."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & MASK)) * 0xBF58476D1CE4E5B9 & MASK
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & MASK
        h ^= h >> 29
    return h


def generator(*values: int) -> torch.Generator:
    """A CPU generator seeded by :func:`mix` of ``values`` (63 bits: torch takes a signed seed)."""
    return torch.Generator().manual_seed(mix(*values) >> 1)
