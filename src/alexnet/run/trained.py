"""A trained network, rebuilt as its run trained it: where ``src/eval.py``, ``src/predict.py`` and
``src/export.py`` start.

``ckpt_path`` names a run directory (its best checkpoint), a checkpoint of this repo, or torchvision
``alexnet`` weights. For the first two inside a run directory, the config is the run's own
(:mod:`alexnet.run.recover`: its overrides composed first, its saved values kept), except the
machine, which is the command line's; elsewhere, the command line's config says what network the
weights are for.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from alexnet.config import validate
from alexnet.errors import ConfigError
from alexnet.run.layout import RunDir
from alexnet.run.recover import given_overrides, recover_config, run_arguments
from alexnet.training.evaluation import load_any_checkpoint
from alexnet.training.system import ClassificationSystem

MACHINE = ("trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.strategy")


@dataclass
class Trained:
    """What :func:`load_trained` rebuilt: the weights' file and run, their kind ("lightning" or
    "torchvision"), and the data module and system (the network, its weights loaded)."""

    checkpoint: Path
    run: RunDir | None
    kind: str
    datamodule: L.LightningDataModule
    system: ClassificationSystem


def run_of(path: Path) -> RunDir | None:
    """The run that ``path`` (a run directory, or a checkpoint inside one) belongs to, or None."""
    if path.is_dir():
        run = RunDir(path.resolve())
        return run if run.config_file.is_file() else None
    return RunDir.of_checkpoint(path) if path.is_file() else None


def checkpoint_arguments(argv: list[str]) -> list[str]:
    """For a ``ckpt_path`` of a run: the run's own overrides, then this command line's (so the data
    and switches default to the run's), less those that chose the run's machine. Before Hydra
    composes (``sys.argv``)."""
    given = [a.split("=", 1)[1] for a in argv if a.startswith("ckpt_path=")]
    run = run_of(Path(given[-1])) if given else None
    return argv if run is None else run_arguments(run, argv, drop=chooses_machine)


def chooses_machine(override: str) -> bool:
    """``trainer.accelerator``, ``devices``, ``num_nodes`` or ``strategy``: a run trained on 8 GPUs is
    evaluated on what this machine has, unless this command line says otherwise."""
    return override.lstrip("+~").split("=", 1)[0] in MACHINE


def load_trained(cfg: DictConfig, own: Sequence[str]) -> Trained:
    """Recover ``cfg`` as the run of ``cfg.ckpt_path`` trained it (``own``: this command's keys,
    kept), set ``data.eval_tta`` from ``cfg.tta`` where the command has one, build the data module
    and the system (seeded, checked) and load the weights. Raise :class:`ConfigError` for weights
    that are not this repo's, or that do not fit the network asked for."""
    path = Path(cfg.ckpt_path)
    run = run_of(path)
    if path.is_dir():
        if run is None:
            raise FileNotFoundError(
                f"ckpt_path={path}: a directory that holds no run (no .hydra/config.yaml); pass a run "
                "directory or a checkpoint file"
            )
        checkpoint = run.checkpoint("best")
    elif path.is_file():
        checkpoint = path
    else:
        raise FileNotFoundError(f"ckpt_path={path}: no such file or run directory")
    if run is not None:
        recover_config(run, cfg, given_overrides(run), keep=own)
    tta = cfg.get("tta", "center")
    if tta != "center":
        if "eval_tta" not in cfg.data:
            raise ConfigError(
                f"tta={tta} needs data=imagenet (10 patches of a 256-pixel image); this data set's images "
                "are evaluated whole"
            )
        with open_dict(cfg):
            cfg.data.eval_tta = tta
    datamodule, system = validate(cfg)
    try:
        kind = load_any_checkpoint(system.net, checkpoint)
    except ValueError as err:
        raise ConfigError(f"ckpt_path={checkpoint}: {err}") from None
    except (RuntimeError, KeyError) as err:  # names or shapes that the network asked for does not have
        preset = HydraConfig.get().runtime.choices.get("model") if HydraConfig.initialized() else None
        detail = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))
        raise ConfigError(
            f"ckpt_path={checkpoint}: its weights do not fit the network of model={preset} and its switches "
            f"({detail}). Pass the preset and switches they were trained with: model=one_column for "
            f"torchvision's AlexNet weights; a checkpoint inside its run directory is rebuilt as trained"
        ) from None
    return Trained(checkpoint, run, kind, datamodule, system)
