"""The ablation axes: the config groups a run is chosen by, and the paper's option on each.

A run records its option on each axis (``results.json``'s ``choices``, its W&B name and tags); a
sweep's report compares each configuration with the one made of the paper's options.
"""

from collections.abc import Mapping

# axis (a config group) -> the paper's option; data is an axis with no paper's option here.
AXES: dict[str, str | None] = {
    "model": "paper",
    "norm": "lrn",
    "pool": "overlap",
    "dropout": "paper",
    "activation": "relu",
    "data": None,
}
# Values a sweep may vary directly, with the paper's.
PAPER_VALUES = {"dropout.p": "0.5", "model.columns": "2"}
PAPER_CHOICES = {**{axis: option for axis, option in AXES.items() if option is not None}, **PAPER_VALUES}


def ablation_choices(choices: Mapping[str, str | None]) -> dict[str, str | None]:
    """A run's option on each axis, from Hydra's choices (``HydraConfig.runtime.choices``)."""
    return {axis: choices.get(axis) for axis in AXES}
