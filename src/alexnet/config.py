"""Checks on a composed config, run before any data is loaded or any process is started."""

from numbers import Number

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true", "transformer-engine")
# Class counts of the datasets whose size is fixed: (data target's class name, data.name) -> classes.
KNOWN_CLASSES = {
    ("DigitsDataModule", None): 10,
    ("CIFARDataModule", "cifar10"): 10,
    ("CIFARDataModule", "cifar100"): 100,
}


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
    _check_training(cfg)
    _check_data_and_model_agree(cfg)
    _check_network_builds(cfg)


def _check_training(cfg: DictConfig) -> None:
    trainer = cfg.trainer
    epochs = trainer.max_epochs
    _require(isinstance(epochs, int) and (epochs >= 1 or epochs == -1), "trainer.max_epochs", epochs,
             "a positive integer (or -1: no limit, with trainer.max_steps)")  # fmt: skip
    _require(str(trainer.precision) in PRECISIONS, "trainer.precision", trainer.precision, f"one of {list(PRECISIONS)}")
    _require(isinstance(cfg.seed, int), "seed", cfg.seed, "an integer")
    resume = cfg.callbacks.get("resume_checkpoint") if cfg.get("callbacks") else None
    if resume is not None:
        n = resume.every_n_steps
        key = "callbacks.resume_checkpoint.every_n_steps"
        _require(isinstance(n, int) and n >= 0, key, n, "an integer >= 0 (0: only at epoch starts, signals, errors)")
    data = cfg.data
    if "pipeline" in data:
        _require(data.pipeline in ("tensor", "dataloader"), "data.pipeline", data.pipeline, "tensor or dataloader")
    workers = data.get("num_workers", 0)
    _require(workers == "auto" or (isinstance(workers, int) and workers >= 0), "data.num_workers", workers,
             "an integer >= 0, or auto")  # fmt: skip


def _check_data_and_model_agree(cfg: DictConfig) -> None:
    data, model = cfg.data, cfg.model
    _require(model.num_classes == data.num_classes, "model.num_classes", model.num_classes,
             f"data.num_classes={data.num_classes}, the data's class count (leave it unset)")  # fmt: skip
    known = KNOWN_CLASSES.get((str(data._target_).rsplit(".", 1)[-1], data.get("name")))
    if known is not None:
        _require(data.num_classes == known, "data.num_classes", data.num_classes, f"{known}, the dataset's class count")
    if "image_size" in data and model.get("head", "flatten") != "gap":
        _require(data.image_size == model.input_size, "data.image_size", data.image_size,
                 f"model.input_size={model.input_size}: fc6 is sized for that input (change model.input_size, "
                 f"which the data follows, or use model.head=gap)")  # fmt: skip


def _builds(cfg: DictConfig, input_size: int | None = None) -> str | None:
    """None if the network builds (shapes only, on the meta device), else the reason it does not."""
    overrides = {} if input_size is None else {"input_size": input_size}
    try:
        with torch.device("meta"):
            instantiate(cfg.model, **overrides)
    except InstantiationException as err:
        return str(err.__cause__ or err)
    return None


def _check_network_builds(cfg: DictConfig) -> None:
    """The input must survive the stem and the pools: fail here, naming the smallest that does."""
    reason = _builds(cfg)
    if reason is None:
        return
    size = cfg.model.input_size
    if "too small" not in reason or not isinstance(size, int):
        raise ConfigError(f"model: the network cannot be built from this config: {reason}")
    low, high = size, 4096  # the smallest size that builds, by bisection
    while low + 1 < high:
        middle = (low + high) // 2
        low, high = (low, middle) if _builds(cfg, middle) is None else (middle, high)
    stem = cfg.model.get("stem")
    raise ConfigError(
        f"model.input_size={size} is not allowed: too small for model.stem={stem} and its pools (the feature "
        f"map vanishes); the smallest input that works is {high} (the paper: 227 with stem=imagenet, "
        f"32 with stem=cifar). Set model.input_size={high} or more, or pick another model.stem"
    )
