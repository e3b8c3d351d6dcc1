"""One training run: compose → validate → seed → build → fit → test the best checkpoint → results.

``src/train.py`` wraps :func:`train` in ``@hydra.main``; tests call it with a composed config.
"""

import atexit
import logging
import os
import signal
import time
import traceback
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet.analysis.evaluation import evaluate
from alexnet.analysis.visuals import visualize_from_config
from alexnet.config import build, require, validate
from alexnet.data import per_device_batch_size
from alexnet.lightning_compat import exit_1_when_a_process_fails, own_launcher, set_collective_timeout
from alexnet.models.columns import exchange_report
from alexnet.rundir import RunDir, results_record
from alexnet.training.callbacks import Diverged
from alexnet.training.column_parallel import ColumnParallelStrategy
from alexnet.training.hangs import SignalWatchdog, failed_collective
from alexnet.training.resume import prepare_resume
from alexnet.training.resume_checkpoint import ResumeCheckpoint
from alexnet.training.slurm import requeued
from alexnet.training.tuning import TrialPruned, TrialPruning

log = logging.getLogger(__name__)

ABLATION_AXES = ("model", "norm", "pool", "dropout", "activation", "data")
SHARDS = {False: "processes (devices × nodes)", True: "replicas (devices × nodes ÷ model.columns)"}


def train(cfg: DictConfig) -> float | None:
    """Train and test one configuration; return the best validation top-1 error (for sweepers).

    With ``cfg.resume`` (a run directory, set by ``src/train.py resume=<run dir>``), continue that
    run from its resume checkpoint instead of starting one.

    Whatever happens, the process that can writes ``results.json`` into the run directory, with
    status ``finished``, ``interrupted``, ``preempted`` (SIGTERM/SIGUSR1/SIGUSR2: exit code 128 + signal,
    ready for ``resume=``), ``diverged`` or ``failed`` (and the error), and closes the W&B run.
    """
    started = time.time()
    run = RunDir(cfg.paths.output_dir)
    run_dir = run.path
    status, error, trainer, datamodule, loggers, extra = "running", None, None, None, [], {}

    def record(status: str, error: str | None) -> dict[str, Any]:
        """Write ``results.json``: rank 0 does, and any rank that ends on its own (a failure, a
        stuck process), since rank 0 is then stopped before it can."""
        if datamodule is not None:
            extra.update(datamodule.report())
        results = collect_results(cfg, trainer, run, status, error, time.time() - started, extra)
        if rank_zero_only.rank == 0 or status != "finished":
            run.write_results(results)
            log.info("%s", headline(results))
            log.info("results: %s", run.results_file)
        return results

    def on_stuck(signum: int, where: str) -> None:
        """A signal came while this process was blocked (see ``hangs.SignalWatchdog``): record, stop
        the processes this one started, and exit with the signal's code, without a checkpoint."""
        name = signal.Signals(signum).name
        record(
            "interrupted" if signum == signal.SIGINT else "preempted",
            f"{name} while blocked in {where} (rank {rank_zero_only.rank}), so no checkpoint was written; "
            f"continue from the last one with: python src/train.py resume={run_dir}",
        )
        launcher = own_launcher(trainer) if trainer is not None else None
        if launcher is not None:
            launcher.kill(signal.SIGKILL)
        os._exit(128 + signum)

    watchdog = SignalWatchdog(on_stuck).start()
    try:
        validate(cfg)
        ckpt_path, keep_rows = cfg.ckpt_path, None
        if not cfg.resume and requeued(run_dir):
            log.info("A requeued SLURM job: resuming its run in %s", run_dir)
            with open_dict(cfg):
                cfg.resume, cfg.ckpt_path = str(run_dir), None  # the run's own state, not where it started
        if cfg.resume:
            ckpt_path, keep_rows = prepare_resume(cfg, run_dir)
        L.seed_everything(cfg.seed, workers=True)
        datamodule: L.LightningDataModule = build(cfg.data, "data")
        system: L.LightningModule = build(cfg.system, "system", net=build(cfg.model, "model"))
        trainer = build_trainer(cfg, system)  # Lightning checks its own values here
        columns = cfg.model.columns if isinstance(trainer.strategy, ColumnParallelStrategy) else 1
        processes = f"a multiple of model.columns={columns}: replicas × columns, with model.parallel=columns"
        require(trainer.world_size % columns == 0, "trainer.devices", cfg.trainer.devices, processes)
        per_device_batch_size(cfg.data.batch_size, trainer.world_size // columns, SHARDS[columns > 1])
        if columns > 1 and rank_zero_only.rank == 0:
            replicas = trainer.world_size // columns
            log.info("%s", exchange_report(system.net, cfg.data.batch_size // replicas, cfg.model.input_size, replicas))
        name, tags = describe(cfg)
        trainer.loggers = loggers = build_loggers(cfg, name, tags, run, keep_rows)  # a W&B run starts here

        try:
            trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt_path)
        except TrialPruned as err:  # a search trial the study stopped: recorded, not an error
            status, error = "pruned", str(err)
            return None
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        # Loads the best weights into system; every rank, since the per-class counts sync.
        evaluation = evaluate(trainer, system, datamodule, "test", ckpt_path=best or None, verbose=True)
        if cfg.visuals.enabled and not trainer.interrupted:
            net = system.net
            if isinstance(trainer.strategy, ColumnParallelStrategy):  # every rank: the pictures need all columns
                net = trainer.strategy.whole_network(build(cfg.model, "model"))
        if cfg.visuals.enabled and trainer.is_global_zero and not trainer.interrupted:
            net = net.to(trainer.strategy.root_device)  # the trainer's teardown moved it to the CPU
            extra["visuals"] = visualize_from_config(cfg, net, datamodule, evaluation, run.visuals, loggers)
        status = "interrupted" if trainer.interrupted else "finished"
    except SIGTERMException as err:
        status, error = "preempted", f"stopped by signal; continue with: python src/train.py resume={run_dir}"
        resume = next((c for c in trainer.callbacks if isinstance(c, ResumeCheckpoint)), None) if trainer else None
        code = resume.exit_code if resume else 128 + signal.SIGTERM
        if trainer is not None and own_launcher(trainer) is not None and not trainer.is_global_zero:
            # Rank 0's exit code speaks for the run. A non-zero one here would make Lightning's process
            # observer SIGKILL rank 0, perhaps while it writes the resume checkpoint.
            code = 0
        raise SystemExit(code) from err
    except BaseException as err:
        interrupted = isinstance(err, KeyboardInterrupt) or (
            isinstance(err, SystemExit) and trainer and trainer.interrupted
        )
        status = "interrupted" if interrupted else "diverged" if isinstance(err, Diverged) else "failed"
        error = f"{type(err).__name__}: {err}"
        collective = failed_collective(err)
        if collective is not None:  # each rank logs its own stack: together they show the mismatch
            error = f"collective {collective} failed on rank {rank_zero_only.rank}: {error}"
            log.error("%s\n%s", error, "".join(traceback.format_exception(err)))
        stop_other_processes(trainer)
        if status == "interrupted":  # Lightning exits 1 on Ctrl-C; 130 (128 + SIGINT) tells a shell or scheduler why
            raise SystemExit(128 + signal.SIGINT) from err
        raise
    finally:
        watchdog.stop()
        results = record(status, error)
        finish_wandb(loggers, failed=status not in ("finished", "pruned"))
        if status in ("finished", "pruned"):
            end_process_group()
    return results["val"]["best"]["err1"] if results["val"]["best"] else None


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
    exit_1_when_a_process_fails(trainer)
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


def stop_other_processes(trainer: L.Trainer | None) -> None:
    """After an error on rank 0 under Lightning's own DDP launcher, kill the other processes as this
    one exits (after its results and traceback are out): they could otherwise wait in a collective
    for the process-group timeout. (An error on another rank stops rank 0 through Lightning's
    process observer or a broken connection; under torchrun, torchrun stops them all.)"""
    launcher = own_launcher(trainer) if trainer is not None else None
    if launcher is not None and trainer.is_global_zero:
        atexit.register(launcher.kill, signal.SIGKILL)


def end_process_group() -> None:
    """Destroy the process group of a run whose collectives are all done (every rank calls it).

    Lightning destroys it at exit for NCCL only. A gloo group left to the interpreter's shutdown can
    abort a process that finished its work (SIGABRT, exit -6, "terminate called without an active
    exception"): its worker threads still hold tensors and take the GIL while Python is finalizing
    (pytorch/pytorch#179291). Not called after a failure, where another rank may still be inside a
    collective (see :func:`stop_other_processes`)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def headline(results: dict[str, Any]) -> str:
    """One line with the numbers a run is for: val and test top-1/top-5 error."""
    best, test = results["val"]["best"], results["test"]
    parts = [f"status {results['status']}"]
    if best:
        parts.append(
            f"val top-1/top-5 error {100 * best['err1']:.2f}% / {100 * best['err5']:.2f}% (best epoch {best['epoch']})"
        )
    if test:
        parts.append(f"test (best checkpoint) {100 * test['err1']:.2f}% / {100 * test['err5']:.2f}%")
    return "; ".join(parts)


def describe(cfg: DictConfig) -> tuple[str, list[str]]:
    """A run name and tags from the ablation choices and the overrides, for W&B.

    e.g. ``cifar-lrn-overlap-relu-digits-p0.5-c2-s0`` with tags ``norm=lrn``, ``pool=overlap``, …
    """
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    choices = dict(hydra.runtime.choices) if hydra else {}
    axes = {axis: choices.get(axis, "?") for axis in ABLATION_AXES if axis != "dropout"}
    name = "-".join(axes.values()) + f"-p{cfg.dropout.p}-c{cfg.model.columns}-s{cfg.seed}"
    tags = [f"{axis}={value}" for axis, value in axes.items()]
    tags += [
        f"dropout.p={cfg.dropout.p}",
        f"columns={cfg.model.columns}",
        f"width={cfg.model.width}",
        f"seed={cfg.seed}",
    ]
    overrides = list(hydra.overrides.task) if hydra else []
    tags += [o for o in overrides if o not in tags and len(o) <= 64]  # W&B caps a tag at 64 characters
    return name, tags


def build_loggers(
    cfg: DictConfig, name: str, tags: list[str], run: RunDir, keep_rows: int | None = None
) -> list[Logger]:
    """The configured loggers; a resumed run continues its metrics CSV after ``keep_rows`` rows
    and its W&B run (the id is kept in ``<run dir>/wandb/run-id``)."""
    loggers = []
    for key, logger_cfg in cfg.logger.items():
        if logger_cfg is None:
            continue
        extra: dict[str, Any] = {}
        if key == "wandb":
            extra = {"name": name, "tags": tags, "id": run.wandb_id(), "resume": "allow"}
        elif key == "csv" and keep_rows is not None:
            extra = {"keep_rows": keep_rows}
        logger = build(logger_cfg, f"logger.{key}", **extra)
        if logger is not None:  # W&B disabled
            loggers.append(logger)
    hyperparameters = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:
        logger.log_hyperparams(hyperparameters)
    return loggers


def finish_wandb(loggers: list[Logger], failed: bool) -> None:
    """Close the W&B run so that the next run in this process (a sweep job) starts its own."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=1 if failed else 0)


def collect_results(
    cfg: DictConfig,
    trainer: L.Trainer | None,
    run: RunDir,
    status: str,
    error: str | None,
    wall_time: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """This run's ``results.json`` record, its history read back from the metrics CSV."""
    history, test = run.history()
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    checkpoint = trainer.checkpoint_callback if trainer else None
    return results_record(
        status,
        run,
        error=error,
        overrides=list(hydra.overrides.task) if hydra else [],
        choices={axis: hydra.runtime.choices.get(axis) for axis in ABLATION_AXES} if hydra else {},
        seed=cfg.seed,
        world_size=trainer.world_size if trainer else None,
        wall_time_s=wall_time,
        history=history,
        test=test,
        best_checkpoint=checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else None,
        **extra,
    )
