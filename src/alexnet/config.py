"""Checks on a composed config, run before any data is loaded or any process is started."""

from numbers import Number

from omegaconf import DictConfig


class ConfigError(ValueError):
    """A config value a user set that cannot work; the message names the key, the value and the fix."""


def _require(ok: bool, key: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}. Set it on the command line, e.g. {key}=...")


def _number(value: object) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first value that cannot work."""
    data, model = cfg.data, cfg.model
    batch = data.batch_size
    _require(isinstance(batch, int) and batch >= 1, "data.batch_size", batch, "a positive integer (the global batch)")
    _require(
        isinstance(data.num_classes, int) and data.num_classes >= 2,
        "data.num_classes",
        data.num_classes,
        "an integer >= 2",
    )
    p = cfg.dropout.p
    _require(_number(p) and 0 <= p < 1, "dropout.p", p, "a probability in [0, 1)")
    _require(_number(model.width) and model.width > 0, "model.width", model.width, "a number > 0")
    _require(
        isinstance(model.columns, int) and model.columns >= 1,
        "model.columns",
        model.columns,
        "an integer >= 1 (the paper: 2)",
    )
    _require(
        isinstance(model.input_size, int) and model.input_size >= 1,
        "model.input_size",
        model.input_size,
        "a positive integer",
    )
    if cfg.norm is not None and "size" in cfg.norm:
        size = cfg.norm.size
        _require(
            isinstance(size, int) and size >= 1 and size % 2 == 1,
            "norm.size",
            size,
            "an odd positive integer (a window centred on each channel; the paper: 5)",
        )
        for key in ("alpha", "beta", "k"):
            value = cfg.norm[key]
            _require(_number(value) and value >= 0, f"norm.{key}", value, "a number >= 0")
    lr = cfg.optimizer.lr
    _require(_number(lr) and lr > 0, "optimizer.lr", lr, "a number > 0")
