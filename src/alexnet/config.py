"""A composed config checked before any data is loaded or any process is started.

Each value is checked once, by the constructor that takes it (the network, the LRN layer, the data
modules, the system, the callbacks; Lightning's ``Trainer`` checks its own), which raises a
:class:`ConfigError` naming the config key. :func:`validate` builds the data module, the network
(on the meta device) and the system cheaply, so that their checks run first, then checks what no
single constructor can see: values that must agree across groups. The callbacks and the trainer
are built next, by ``train()``, still before any data is loaded.
"""

from numbers import Number
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig


class ConfigError(ValueError):
    """A config value a user set that cannot work; the message names the key, the value and the fix."""


def require(ok: bool, key: str, value: object, allowed: str) -> None:
    """Raise :class:`ConfigError` for ``key=value`` unless ``ok``, saying what is ``allowed``."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}. Set it on the command line, e.g. {key}=...")


def is_number(value: object) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def build(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``instantiate(node)``, with a constructor's error raised as a :class:`ConfigError` that
    names the config group (``key``) rather than as Hydra's wrapper around it."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(f"{key}: {cause}") from err


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first value that cannot work."""
    epochs = cfg.trainer.max_epochs  # Lightning takes 0 (and then trains nothing)
    allowed = "a positive integer (or -1: no limit, with trainer.max_steps)"
    require(isinstance(epochs, int) and (epochs >= 1 or epochs == -1), "trainer.max_epochs", epochs, allowed)
    require(isinstance(cfg.seed, int), "seed", cfg.seed, "an integer")
    build(cfg.data, "data")
    net = _network(cfg)
    build(cfg.system, "system", net=net)
    _check_data_and_model_agree(cfg)


def _check_data_and_model_agree(cfg: DictConfig) -> None:
    data, model = cfg.data, cfg.model
    classes = f"data.num_classes={data.num_classes}, the data's class count (leave it unset)"
    require(model.num_classes == data.num_classes, "model.num_classes", model.num_classes, classes)
    if "image_size" in data and model.get("head", "flatten") != "gap":
        size = (
            f"model.input_size={model.input_size}: fc6 is sized for that input (change model.input_size, "
            f"which the data follows, or use model.head=gap)"
        )
        require(data.image_size == model.input_size, "data.image_size", data.image_size, size)


def _builds(cfg: DictConfig, input_size: int | None = None) -> torch.nn.Module | str:
    """The network, built for shapes only (on the meta device), or the reason it does not build."""
    overrides = {} if input_size is None else {"input_size": input_size}
    try:
        with torch.device("meta"):
            return build(cfg.model, "model", **overrides)
    except ConfigError as err:
        return str(err)


def _network(cfg: DictConfig) -> torch.nn.Module:
    """The network on the meta device. An input too small for the stem and its pools (the network
    and the input size together) fails naming the smallest input that works."""
    net = _builds(cfg)
    if not isinstance(net, str):
        return net
    size = cfg.model.input_size
    if "too small" not in net or not isinstance(size, int):
        raise ConfigError(net)
    low, high = size, 4096  # the smallest size that builds, by bisection
    while low + 1 < high:
        middle = (low + high) // 2
        low, high = (low, middle) if not isinstance(_builds(cfg, middle), str) else (middle, high)
    stem = cfg.model.get("stem")
    raise ConfigError(
        f"model.input_size={size} is not allowed: too small for model.stem={stem} and its pools (the feature "
        f"map vanishes); the smallest input that works is {high} (the paper: 227 with stem=imagenet, "
        f"32 with stem=cifar). Set model.input_size={high} or more, or pick another model.stem"
    )
