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
# Values that tell runs apart, by config key -> their name in a run's W&B ``axes`` node.
VALUES = {"dropout.p": "dropout", "model.columns": "columns", "model.width": "width", "seed": "seed"}
PAPER_CHOICES = {**{axis: option for axis, option in AXES.items() if option is not None}, **PAPER_VALUES}


def ablation_choices(choices: Mapping[str, str | None]) -> dict[str, str | None]:
    """A run's option on each axis, from Hydra's choices (``HydraConfig.runtime.choices``)."""
    return {axis: choices.get(axis) for axis in AXES}


def axis_name(key: str) -> str:
    """An override key's name in a run's W&B ``axes`` node: the group itself (``norm``), a known
    value's name (``dropout.p`` -> ``dropout``), else the key with underscores (``optimizer_lr``)."""
    if key in AXES:
        return key
    return VALUES.get(key, key.replace(".", "_"))
