"""What a run tells Weights & Biases, so that its dashboard comes ready: a name and tags from the
ablation choices, a flat ``axes`` node to group runs by, the job type, metric definitions (the best
validation error in the runs table, epoch-level metrics against the epoch), and an evaluation's
numbers added to the run it evaluated.
"""

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from alexnet.ablations import AXES, VALUES, axis_name
from alexnet.run.layout import RunDir
from alexnet.training.loggers import wandb_mode

# Epoch-level metrics plot against the epoch; step-level ones (train/loss_step) against the trainer's
# step, as Lightning's WandbLogger defines every metric by default.
EPOCH_METRICS = ("train/loss", "train/err1", "train/err5", "train/lr", "val/*", "test/*")
BEST_IS_LOWEST = ("val/err1", "val/err5", "val/loss")  # the runs table shows each one's minimum


def job_type(cfg: DictConfig) -> str:
    """``search`` for a trial of a tuned sweep's search stage, else ``train``."""
    return "search" if cfg.tuning.trial is not None else "train"


def describe(cfg: DictConfig) -> tuple[str, list[str]]:
    """A run name and tags from its :func:`axes` and the overrides.

    e.g. ``cifar-lrn-overlap-relu-digits-p0.5-c2-s0`` with tags ``norm=lrn``, ``dropout=0.5``, …
    """
    values = axes(cfg)
    choices = {axis: values[axis] or "?" for axis in AXES if axis != "dropout"}
    name = "-".join(choices.values()) + f"-p{values['dropout']}-c{values['columns']}-s{values['seed']}"
    tags = [f"{axis}={value}" for axis, value in {**values, **choices}.items()]
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    overrides = list(hydra.overrides.task) if hydra else []
    tags += [o for o in overrides if o not in tags and len(o) <= 64]  # W&B caps a tag at 64 characters
    return name, tags


def axes(cfg: DictConfig) -> dict[str, Any]:
    """The values that tell runs apart, flat, for W&B to group and plot by (``axes.norm``): each
    ablation choice, the dropout probability, columns, width and seed, and a tuned sweep's tuned
    settings (``optimizer.lr`` as ``optimizer_lr``)."""
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    choices = dict(hydra.runtime.choices) if hydra else {}
    values: dict[str, Any] = {axis: choices.get(axis) for axis in AXES if axis != "dropout"}
    values.update({name: OmegaConf.select(cfg, key) for key, name in VALUES.items()})
    tuned = OmegaConf.select(hydra, "sweeper.search_space", default=None) if hydra else None
    for key in tuned or {}:
        values[axis_name(key)] = OmegaConf.select(cfg, key)
    return values


def hyperparameters(cfg: DictConfig) -> dict[str, Any]:
    """What the loggers record as the run's config: the resolved config and its ``axes``."""
    return {**OmegaConf.to_container(cfg, resolve=True), "axes": axes(cfg)}


def define_metrics(loggers: list[Logger]) -> None:
    """Tell W&B how to summarise and plot this repo's metrics (on rank 0, where the run lives);
    called at every start, a resumed run's included, so the definitions hold for all of it."""
    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        run = logger.experiment  # on other ranks, Lightning's stand-in, which ignores the calls
        run.define_metric("epoch")
        for name in EPOCH_METRICS:
            run.define_metric(name, step_metric="epoch")
        for name in BEST_IS_LOWEST:
            run.define_metric(name, step_metric="epoch", summary="min")


def finish_wandb(loggers: list[Logger], failed: bool) -> None:
    """Close the W&B run so that the next run in this process (a sweep job) starts its own."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=1 if failed else 0)


def record_evaluation(cfg: DictConfig, run: RunDir | None, out: Path, numbers: dict[str, Any]) -> str | None:
    """Add an evaluation's ``numbers`` to the W&B summary of the run it evaluated (its id, kept in
    the run directory); a checkpoint outside a run gets a run of its own, job type ``eval``. Return
    the W&B run's id, or None when W&B is off (``logger.wandb`` null or mode ``disabled``)."""
    settings = cfg.logger.get("wandb") if cfg.get("logger") else None
    mode = wandb_mode(settings.mode) if settings is not None else "disabled"
    if mode == "disabled":
        return None
    import wandb

    where = {"project": settings.project, "entity": settings.get("entity"), "mode": mode}
    if run is not None:
        target = wandb.init(id=run.wandb_id(), resume="allow", dir=str(run.path), **where)
    else:
        target = wandb.init(job_type="eval", dir=str(out), name=f"eval-{out.name}", **where)
    try:
        target.summary.update(numbers)
        return target.id
    finally:
        target.finish()
