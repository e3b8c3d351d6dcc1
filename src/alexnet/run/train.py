"""One training run: recover or start → validate and build → fit → test the best checkpoint → record.

``src/train.py`` wraps :func:`train` in ``@hydra.main``; tests call it with a composed config.
:class:`~alexnet.run.lifecycle.Run` holds what surrounds the fit: resuming, loggers, status,
``results.json`` and the processes' end.
"""

import logging

import lightning as L
import torch
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from alexnet.analysis.visuals import visualize_from_config
from alexnet.config import build, validate
from alexnet.data import per_device_batch_size
from alexnet.errors import require
from alexnet.lightning_compat import (
    exit_1_when_a_process_fails,
    fail_when_a_sigterm_broadcast_fails,
    keep_gradient_buckets,
    set_collective_timeout,
)
from alexnet.models.columns import exchange_report
from alexnet.run.lifecycle import Run
from alexnet.training.column_parallel import ColumnParallelStrategy
from alexnet.training.evaluation import evaluate
from alexnet.training.tuning import TrialPruning

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float | None:
    """Train and test one configuration; return the best validation top-1 error (for sweepers),
    None for a search trial the study pruned.

    With ``cfg.resume`` (a run directory, set by ``src/train.py resume=<run dir>``), continue that
    run from its resume checkpoint instead of starting one. Whatever happens, ``results.json`` in
    the run directory says how it ended (see :mod:`alexnet.run.lifecycle`).
    """
    with Run(cfg) as run:
        ckpt_path, keep_rows = run.resume_point()  # a resumed run's config is its own again
        run.datamodule, system = validate(cfg)  # seeded: the initial weights are the seed's
        run.trainer = trainer = build_trainer(cfg, system)  # Lightning checks its own values here
        per_device_batch_size(cfg.data.batch_size, trainer)  # before any process starts
        if isinstance(trainer.strategy, ColumnParallelStrategy) and rank_zero_only.rank == 0:
            replicas = trainer.strategy.replicas
            log.info("%s", exchange_report(system.net, cfg.data.batch_size // replicas, cfg.model.input_size, replicas))
        trainer.loggers = run.start_loggers(keep_rows)

        trainer.fit(system, datamodule=run.datamodule, ckpt_path=ckpt_path)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        # Loads the best weights into system; every rank, since the per-class counts sync.
        evaluation = evaluate(trainer, system, run.datamodule, "test", ckpt_path=best or None, verbose=True)
        if cfg.visuals.enabled and not trainer.interrupted:
            net = system.net
            if isinstance(trainer.strategy, ColumnParallelStrategy):  # every rank: the pictures need all columns
                net = trainer.strategy.whole_network(build(cfg.model, "model"))
            if trainer.is_global_zero:
                net = net.to(trainer.strategy.root_device)  # the trainer's teardown moved it to the CPU
                run.extra["visuals"] = visualize_from_config(
                    cfg, net, run.datamodule, evaluation, run.dir.visuals, run.loggers
                )
    return None if run.status == "pruned" else run.best_val_err1


def build_trainer(cfg: DictConfig, system: L.LightningModule) -> L.Trainer:
    """The configured trainer and its callbacks (loggers are set after: see :func:`train`), with
    this repo's DDP settings: the collective timeout (``collective_timeout_s``) and BatchNorm
    synchronised where torch can."""
    callbacks, strategy = [], {}
    if cfg.model.get("parallel", "none") == "columns":
        auto = "auto with model.parallel=columns (the columns need their own strategy: ColumnParallelStrategy)"
        require(cfg.trainer.strategy == "auto", "trainer.strategy", cfg.trainer.strategy, auto)
        strategy = {"strategy": ColumnParallelStrategy(cfg.model.columns, cfg.trainer.sync_batchnorm)}
    if cfg.tuning.trial is not None:  # a search trial of hparams_search
        callbacks.append(TrialPruning(cfg.tuning.storage, cfg.tuning.study, cfg.tuning.trial))
    for key, callback in cfg.callbacks.items():
        # trainer.enable_progress_bar=false alone turns the bar off
        if callback is not None and (key != "progress_bar" or cfg.trainer.enable_progress_bar):
            callbacks.append(build(callback, f"callbacks.{key}"))
    # torch's SyncBatchNorm runs on CUDA only; it is applied below, where it can run.
    trainer: L.Trainer = build(
        cfg.trainer, "trainer", callbacks=callbacks, logger=False, sync_batchnorm=False, **strategy
    )
    set_collective_timeout(trainer.strategy, cfg.collective_timeout_s)
    keep_gradient_buckets(trainer)  # exact resume with 3 processes or more
    exit_1_when_a_process_fails(trainer)
    fail_when_a_sigterm_broadcast_fails()
    batchnorms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
    has_batchnorm = any(isinstance(m, batchnorms) for m in system.modules())
    if cfg.trainer.sync_batchnorm and has_batchnorm and trainer.world_size > 1 and not strategy:
        if isinstance(trainer.accelerator, CUDAAccelerator):
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(system)  # replaces the layers in place
        elif rank_zero_only.rank == 0:
            log.warning(
                "trainer.sync_batchnorm=true: BatchNorm statistics cannot be synchronised on %s (torch's "
                "SyncBatchNorm needs CUDA), so each of the %d processes normalises over its own share of the batch",
                type(trainer.accelerator).__name__.removesuffix("Accelerator"),
                trainer.world_size,
            )
    return trainer
