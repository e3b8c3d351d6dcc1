"""A composed config checked before any data is loaded or any process is started.

Each value is checked once, by the constructor that takes it (the network, the LRN layer, the data
modules, the system, the callbacks; Lightning's ``Trainer`` checks its own), which raises a
:class:`ConfigError` naming the config key. :func:`validate` builds the data module, the network
and the system (cheap: no data is read), so that their checks run first, then checks what no single
constructor can see: values that must agree across groups, and hands what it built to its caller.
The callbacks and the trainer are built next, by the run, still before any data is loaded.
"""

from typing import Any, NamedTuple

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from alexnet.errors import ConfigError, require


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


class Built(NamedTuple):
    """What :func:`validate` built: the objects a run (or an evaluation) uses, each built once."""

    datamodule: L.LightningDataModule
    system: L.LightningModule


def validate(cfg: DictConfig) -> Built:
    """Raise :class:`ConfigError` for the first value that cannot work; else seed (``cfg.seed``:
    the network's initial weights) and return the data module and the system holding the network."""
    epochs = cfg.trainer.max_epochs  # Lightning takes 0 (and then trains nothing)
    allowed = "a positive integer (or -1: no limit, with trainer.max_steps)"
    require(isinstance(epochs, int) and (epochs >= 1 or epochs == -1), "trainer.max_epochs", epochs, allowed)
    require(isinstance(cfg.seed, int), "seed", cfg.seed, "an integer")
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build(cfg.data, "data")
    system = build(cfg.system, "system", net=build(cfg.model, "model"))
    _check_data_and_model_agree(cfg)
    return Built(datamodule, system)


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
