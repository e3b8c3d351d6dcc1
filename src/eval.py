"""Evaluate a checkpoint: python src/eval.py ckpt_path=<file or run dir> [data=...] [tta=center|tencrop] [split=...]

A checkpoint inside a run directory (or the run directory: its best checkpoint) is evaluated as that
run trained it: its config is recovered (:mod:`alexnet.run.trained`: the run's own overrides composed
first, then this command line's, and every value the run's saved config holds, its data and network
included, kept), except the machine, which is this command line's. An override here that would
change that network is an error.
Evaluation is ``Trainer.test`` (or ``validate``) with the system's own metrics, so the numbers
are those training reports, at the precision the config says, on the devices this command line
asks for: not the run's (``trainer.devices=8`` on a laptop), one by default.

Prints top-1/top-5 error and writes eval.json and per_class.csv into outputs/evals/<date>/<time>-<id>.
With W&B on, the numbers go into the evaluated run's summary (``eval/<split>-<tta>/err1``, same id).
Checkpoints load as tensors only (no pickled code runs).
"""

import json
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from alexnet.config import build
from alexnet.lightning_compat import exit_1_when_a_process_fails, set_collective_timeout
from alexnet.run.lifecycle import end_process_group
from alexnet.run.tracking import record_evaluation
from alexnet.run.trained import MACHINE, checkpoint_arguments, chooses_machine, load_trained
from alexnet.training.evaluation import evaluate, write_csv

log = logging.getLogger("eval")
OWN = (*MACHINE, "paths", "ckpt_path", "tta", "split")  # this command's keys, not the run's


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    trained = load_trained(cfg, OWN)
    run = trained.run
    out = Path(HydraConfig.get().runtime.output_dir)
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
    evaluation = evaluate(trainer, trained.system, trained.datamodule, cfg.split)  # every rank: it syncs
    end_process_group()  # the last collective is done
    if not trainer.is_global_zero:
        return
    images, err1, err5 = evaluation.images, evaluation.err1, evaluation.err5
    write_csv(out / "per_class.csv", evaluation.per_class)
    summary = {
        "checkpoint": str(trained.checkpoint),
        "kind": trained.kind,
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
    prefix = f"eval/{cfg.split}-{cfg.tta}"  # e.g. eval/test-tencrop/err1, beside the run's own test/err1
    numbers = {f"{prefix}/err1": err1, f"{prefix}/err5": err5, f"{prefix}/images": images}
    wandb_id = record_evaluation(cfg, run, out, numbers)
    if wandb_id is not None:
        print(f"added {prefix}/* to the summary of W&B run {wandb_id}" + (f" ({run})" if run else ""))


if __name__ == "__main__":
    sys.argv[1:] = checkpoint_arguments(sys.argv[1:])
    main()
