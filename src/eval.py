"""Evaluate a checkpoint: python src/eval.py ckpt_path=<file> [data=...] [tta=center|tencrop] [split=test|val]

A checkpoint inside a run directory is evaluated as that run trained it: the run's own overrides
are composed first (its data, its switches), then this command line's, and the network is built
from the run's saved config. An override here that would change that network is an error.
Evaluation is ``Trainer.test`` (or ``validate``) with the system's own metrics, so the numbers
are those training reports, at the precision the config says, on the devices this command line
asks for: not the run's (``trainer.devices=8`` on a laptop), one by default.

Prints top-1/top-5 error and writes eval.json and per_class.csv into outputs/evals/<date>/<time>-<id>.
Checkpoints load as tensors only (no pickled code runs).
"""

import json
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet.analysis.evaluation import evaluate, load_any_checkpoint, write_csv
from alexnet.config import ConfigError, build, validate
from alexnet.lightning_compat import exit_1_when_a_process_fails, set_collective_timeout
from alexnet.rundir import RunDir
from alexnet.training.fit import end_process_group

log = logging.getLogger("eval")
MACHINE = ("trainer.accelerator=", "trainer.devices=", "trainer.num_nodes=", "trainer.strategy=")


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    checkpoint = Path(cfg.ckpt_path)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"ckpt_path={checkpoint}: no such file")
    run = RunDir.of_checkpoint(checkpoint)
    trained = network_as_trained(cfg, run) if run else cfg.model
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
    datamodule = build(cfg.data, "data")
    system = build(cfg.system, "system", net=build(cfg.model, "model"))
    kind = load_any_checkpoint(system.net, checkpoint)
    wants_bar = cfg.trainer.enable_progress_bar and cfg.callbacks.get("progress_bar")
    bar = [build(cfg.callbacks.progress_bar, "callbacks.progress_bar")] if wants_bar else []
    trainer = build(
        cfg.trainer, "trainer", logger=False, callbacks=bar, default_root_dir=str(out), sync_batchnorm=False
    )
    set_collective_timeout(trainer.strategy, cfg.collective_timeout_s)
    exit_1_when_a_process_fails(trainer)
    trained_on = [o for o in run.overrides() if chooses_machine(o)] if run else []
    if trained_on and trainer.is_global_zero:
        log.info(
            "Evaluating on this machine: %d %s process(es), not as %s trained (%s); pass trainer.devices=... "
            "(and trainer.accelerator=...) to choose",
            trainer.world_size,
            type(trainer.accelerator).__name__.removesuffix("Accelerator"),
            run,
            " ".join(trained_on),
        )
    evaluation = evaluate(trainer, system, datamodule, cfg.split)  # every rank: it syncs
    end_process_group()  # the last collective is done
    if not trainer.is_global_zero:
        return
    images, err1, err5 = evaluation.images, evaluation.err1, evaluation.err5
    write_csv(out / "per_class.csv", evaluation.per_class)
    summary = {
        "checkpoint": str(checkpoint),
        "kind": kind,
        "run_dir": str(run) if run else None,
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


def network_as_trained(cfg: DictConfig, run: RunDir) -> DictConfig:
    """The run's network config, resolved in the run's own saved config (so ``${norm}`` and the
    like mean what they meant in training). An override on this command line that changes it is
    an error; a difference from ``conf/`` changed since the run is only reported."""
    trained = run.resolved("model")
    asked = OmegaConf.to_container(cfg.model, resolve=True)
    changed = sorted(key for key in set(asked) | set(trained) if asked.get(key) != trained.get(key))
    if changed:
        given = HydraConfig.get().overrides.task
        own = [o for o in given if o not in run.overrides() and not o.startswith(("ckpt_path=", "hydra."))]
        differences = ", ".join(f"model.{k}: {trained.get(k)!r} as trained, {asked.get(k)!r} here" for k in changed)
        if own:
            raise ConfigError(
                f"{' '.join(own)} would change the network of {run} ({differences}). A checkpoint is "
                f"evaluated as the network it was trained as: drop the override, or copy the checkpoint "
                f"out of its run directory to evaluate its weights in another network on purpose"
            )
        log.warning("conf/ changed since %s was trained; building its network as trained (%s)", run, differences)
    return trained


def eval_arguments(argv: list[str]) -> list[str]:
    """For a checkpoint inside a run directory: the run's own overrides, then this command line's
    (so the data and switches default to the run's), less those that chose the run's machine."""
    given = [a.split("=", 1)[1] for a in argv if a.startswith("ckpt_path=")]
    run = RunDir.of_checkpoint(Path(given[-1])) if given and Path(given[-1]).is_file() else None
    if run is None:
        return argv
    own = [o for o in run.overrides() if not o.startswith("hydra.") and not chooses_machine(o)]
    # Idempotent: a DDP child process gets this process's argv, the run's overrides already in it.
    return [*(o for o in own if o not in argv), *argv]


def chooses_machine(override: str) -> bool:
    """``trainer.accelerator``, ``devices``, ``num_nodes`` or ``strategy``: a run trained on 8 GPUs is
    evaluated on what this machine has, unless this command line says otherwise."""
    return override.lstrip("+~").startswith(MACHINE)


if __name__ == "__main__":
    sys.argv[1:] = eval_arguments(sys.argv[1:])
    main()
