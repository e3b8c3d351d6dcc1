"""Evaluate a checkpoint: python src/eval.py ckpt_path=<file> [data=...] [tta=center|tencrop] [split=test|val]

A checkpoint inside a run directory is evaluated as that run trained it: the run's own overrides
are composed first (its data, its switches), then this command line's, and the network is built
from the run's saved config. An override here that would change that network is an error.
Evaluation is ``Trainer.test`` (or ``validate``) with the system's own metrics, so the numbers
are those training reports, on as many devices and at the precision the config says.

Prints top-1/top-5 error and writes eval.json and per_class.csv into outputs/evals/<date>/<time>.
Checkpoints load as tensors only (no pickled code runs).
"""

import json
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet.config import ConfigError, validate
from alexnet.evaluate import load_any_checkpoint
from alexnet.lightning_compat import set_collective_timeout
from alexnet.runs import run_of_checkpoint, run_overrides
from alexnet.visualize import write_csv

log = logging.getLogger("eval")


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    checkpoint = Path(cfg.ckpt_path)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"ckpt_path={checkpoint}: no such file")
    run_dir = run_of_checkpoint(checkpoint)
    trained = network_as_trained(cfg, run_dir) if run_dir else cfg.model
    with open_dict(cfg):
        cfg.model = trained
        if cfg.tta != "center":
            if "eval_tta" not in cfg.data:
                raise ConfigError(
                    f"tta={cfg.tta} needs data=imagenet (10 patches of a 256-pixel image); "
                    "this data set's images are evaluated whole"
                )
            cfg.data.eval_tta = cfg.tta
    validate(cfg)
    out = Path(HydraConfig.get().runtime.output_dir)
    datamodule = instantiate(cfg.data)
    system = instantiate(cfg.system, net=instantiate(cfg.model))
    kind = load_any_checkpoint(system.net, checkpoint)
    system.track_per_class(cfg.split)
    wants_bar = cfg.trainer.enable_progress_bar and cfg.callbacks.get("progress_bar")
    bar = [instantiate(cfg.callbacks.progress_bar)] if wants_bar else []
    trainer = instantiate(cfg.trainer, logger=False, callbacks=bar, default_root_dir=str(out), sync_batchnorm=False)
    set_collective_timeout(trainer.strategy, cfg.collective_timeout_s)
    run = trainer.test if cfg.split == "test" else trainer.validate
    (metrics,) = run(system, datamodule=datamodule, verbose=False)
    per_class = system.per_class_errors(list(datamodule.class_names))  # every rank: it syncs
    if not trainer.is_global_zero:
        return
    images = sum(row["n"] for row in per_class)
    err1, err5 = metrics[f"{cfg.split}/err1"], metrics[f"{cfg.split}/err5"]
    write_csv(out / "per_class.csv", per_class)
    summary = {
        "checkpoint": str(checkpoint),
        "kind": kind,
        "run_dir": str(run_dir) if run_dir else None,
        "split": cfg.split,
        "tta": cfg.tta,
        "world_size": trainer.world_size,
        "images": images,
        "err1": err1,
        "err5": err5,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
    }
    (out / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{cfg.split} ({images:,} images, {cfg.tta}): top-1 error {100 * err1:.2f}%, top-5 error {100 * err5:.2f}%")
    print(f"wrote {out / 'eval.json'} and {out / 'per_class.csv'}")


def network_as_trained(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """The run's network config, resolved in the run's own saved config (so ``${norm}`` and the
    like mean what they meant in training). An override on this command line that changes it is
    an error; a difference from ``conf/`` changed since the run is only reported."""
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    trained = OmegaConf.create(OmegaConf.to_container(saved.model, resolve=True))
    asked = OmegaConf.to_container(cfg.model, resolve=True)
    changed = sorted(key for key in set(asked) | set(trained) if asked.get(key) != trained.get(key))
    if changed:
        given = HydraConfig.get().overrides.task
        own = [o for o in given if o not in run_overrides(run_dir) and not o.startswith(("ckpt_path=", "hydra."))]
        differences = ", ".join(f"model.{k}: {trained.get(k)!r} as trained, {asked.get(k)!r} here" for k in changed)
        if own:
            raise ConfigError(
                f"{' '.join(own)} would change the network of {run_dir} ({differences}). A checkpoint is "
                f"evaluated as the network it was trained as: drop the override, or copy the checkpoint "
                f"out of its run directory to evaluate its weights in another network on purpose"
            )
        log.warning("conf/ changed since %s was trained; building its network as trained (%s)", run_dir, differences)
    return trained


def eval_arguments(argv: list[str]) -> list[str]:
    """For a checkpoint inside a run directory: the run's own overrides, then this command line's
    (so the data and switches default to the run's)."""
    given = [a.split("=", 1)[1] for a in argv if a.startswith("ckpt_path=")]
    run_dir = run_of_checkpoint(Path(given[-1])) if given and Path(given[-1]).is_file() else None
    if run_dir is None:
        return argv
    # Idempotent: a DDP child process gets this process's argv, the run's overrides already in it.
    return [*(o for o in run_overrides(run_dir) if not o.startswith("hydra.") and o not in argv), *argv]


if __name__ == "__main__":
    sys.argv[1:] = eval_arguments(sys.argv[1:])
    main()
