"""A training run's life around ``trainer.fit``: where it resumes from, its loggers, its status and
``results.json``, and how its processes end, whatever happens.

:class:`Run` is a context manager; :func:`alexnet.run.train.train` is the code inside it::

    with Run(cfg) as run:
        ckpt_path, keep_rows = run.resume_point()
        ...build, fit, evaluate...
    run.results  # what results.json says

On the way out it writes ``results.json`` with status ``finished``, ``interrupted``, ``preempted``
(SIGTERM/SIGUSR1/SIGUSR2: exit code 128 + signal, ready for ``resume=``), ``diverged``, ``pruned``
(a search trial) or ``failed`` (and the error), closes the W&B run, and ends the process group.
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
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, open_dict

from alexnet.ablations import ablation_choices
from alexnet.config import build
from alexnet.lightning_compat import own_launcher
from alexnet.run.layout import RunDir
from alexnet.run.recover import prepare_resume
from alexnet.run.results import headline, results_record
from alexnet.run.slurm import requeued
from alexnet.run.tracking import define_metrics, describe, finish_wandb, hyperparameters, job_type
from alexnet.training.hangs import SignalWatchdog, failed_collective
from alexnet.training.resume_checkpoint import ResumeCheckpoint
from alexnet.training.slurm import note_slurm_signals, restore_signal_handlers, slurm_job_id, slurm_restarts
from alexnet.training.stops import Diverged, TrialPruned

log = logging.getLogger(__name__)


class Run:
    """One training run (``cfg.paths.output_dir``), from its start to its ``results.json``.

    Set ``trainer`` and ``datamodule`` once built, so that the record can read them; ``status``
    ends ``running`` unless the code inside says otherwise (``pruned``), and the way out decides.
    """

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg, self.dir = cfg, RunDir(cfg.paths.output_dir)
        self.status, self.error = "running", None
        self.trainer: L.Trainer | None = None
        self.datamodule: L.LightningDataModule | None = None
        self.loggers: list[Logger] = []
        self.extra: dict[str, Any] = {}
        self.results: dict[str, Any] = {}
        self._started = time.time()
        self._watchdog = SignalWatchdog(self._on_stuck)
        self._slurm_handlers: dict[int, Any] = {}

    def __enter__(self) -> "Run":
        self._watchdog.start()
        self._slurm_handlers = note_slurm_signals()  # a warning outside training does not end the process
        return self

    def __exit__(self, kind: type | None, err: BaseException | None, tb: Any) -> bool:
        exit_code = self._classify(err)
        self._watchdog.stop()
        restore_signal_handlers(self._slurm_handlers)
        if self.cfg.resume and self.trainer is None:  # refused before it started: the run's record stands
            log.error("resume=%s did not start (%s); its results.json is as it was", self.cfg.resume, self.error)
        else:
            self.record(self.status, self.error)
        finish_wandb(self.loggers, failed=self.status not in ("finished", "pruned"))
        if self.status in ("finished", "pruned"):
            end_process_group()
        if exit_code is not None:
            raise SystemExit(exit_code) from err
        return isinstance(err, TrialPruned)  # a search trial the study stopped: recorded, not an error

    # -- before fit ---------------------------------------------------------------------------
    def resume_point(self) -> tuple[str | None, int | None]:
        """(checkpoint to fit from, metrics-CSV rows to keep): ``cfg.ckpt_path`` for a new run;
        with ``resume=`` or in a requeued SLURM job, the run's own checkpoint, its config recovered."""
        cfg = self.cfg
        if not cfg.resume and requeued(self.dir):
            log.info("A requeued SLURM job: resuming its run in %s", self.dir)
            with open_dict(cfg):
                cfg.resume, cfg.ckpt_path = str(self.dir), None  # the run's own state, not where it started
        if cfg.resume:
            checkpoint, keep_rows = prepare_resume(cfg, self.dir)
            return str(checkpoint), keep_rows
        return cfg.ckpt_path, None

    def start_loggers(self, keep_rows: int | None) -> list[Logger]:
        """The configured loggers (a W&B run starts here); a resumed run continues its metrics CSV
        after ``keep_rows`` rows and its W&B run (the id is kept in ``<run dir>/wandb/run-id``)."""
        name, tags = describe(self.cfg)
        for key, logger_cfg in self.cfg.logger.items():
            if logger_cfg is None:
                continue
            extra: dict[str, Any] = {}
            if key == "wandb":
                extra = {
                    "name": name,
                    "tags": tags,
                    "id": self.dir.wandb_id(),
                    "resume": "allow",
                    "job_type": job_type(self.cfg),
                }
            elif key == "csv" and keep_rows is not None:
                extra = {"keep_rows": keep_rows}
            logger = build(logger_cfg, f"logger.{key}", **extra)
            if logger is not None:  # W&B disabled
                self.loggers.append(logger)
        config = hyperparameters(self.cfg)
        for logger in self.loggers:
            logger.log_hyperparams(config)
        define_metrics(self.loggers)
        return self.loggers

    # -- the record ---------------------------------------------------------------------------
    def record(self, status: str, error: str | None) -> dict[str, Any]:
        """Write ``results.json``: rank 0 does, and any rank that ends on its own (a failure, a
        stuck process), since rank 0 is then stopped before it can."""
        if self.datamodule is not None:
            self.extra.update(self.datamodule.report())
        hydra = HydraConfig.get() if HydraConfig.initialized() else None
        trainer = self.trainer
        checkpoint = trainer.checkpoint_callback if trainer else None
        environment = getattr(trainer.strategy, "cluster_environment", None) if trainer else None
        cluster = {  # where the processes ran: Lightning's cluster environment, the SLURM job and its restarts
            "environment": type(environment).__name__ if environment is not None else None,
            "slurm_job": slurm_job_id(),
            "slurm_restarts": slurm_restarts(),
        }
        history, test = self.dir.history()
        self.results = results_record(
            status,
            self.dir,
            error=error,
            overrides=list(hydra.overrides.task) if hydra else [],
            choices=ablation_choices(hydra.runtime.choices) if hydra else {},
            seed=self.cfg.seed,
            world_size=trainer.world_size if trainer else None,
            wall_time_s=time.time() - self._started,
            history=history,
            test=test,
            best_checkpoint=checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else None,
            cluster=cluster,
            **self.extra,
        )
        if rank_zero_only.rank == 0 or status != "finished":
            first = self._failure_recorded_first() if status == "failed" else None
            if first is not None:
                log.error("results.json keeps the failure another process recorded first: %s", first)
            else:
                self.dir.write_results(self.results)
                log.info("%s", headline(self.results))
                log.info("results: %s", self.dir.results_file)
        return self.results

    def _failure_recorded_first(self) -> str | None:
        """The error another process of this launch recorded before this one failed, if one did.
        Under torchrun every failing rank records; the first names the cause (a node lost: the peer's
        address), the later ones its echo (their neighbour's broken connection)."""
        try:
            if self.dir.results_file.stat().st_mtime < self._started:  # an earlier launch's record
                return None
            earlier = self.dir.results()
        except (OSError, ValueError):
            return None
        return earlier["error"] if earlier and earlier.get("status") == "failed" else None

    @property
    def best_val_err1(self) -> float | None:
        """The best validation top-1 error, what a sweeper minimises (None before a validation)."""
        best = self.results.get("val", {}).get("best")
        return best["err1"] if best else None

    # -- the way out --------------------------------------------------------------------------
    def _classify(self, err: BaseException | None) -> int | None:
        """Set the status and error from how the run ended; return the exit code to end with, if
        it is not the exception's own."""
        trainer = self.trainer
        if err is None:
            if self.status == "running":
                self.status = "interrupted" if trainer is not None and trainer.interrupted else "finished"
            return None
        if isinstance(err, TrialPruned):
            self.status, self.error = "pruned", str(err)
            return None
        if isinstance(err, SIGTERMException):
            self.status = "preempted"
            self.error = f"stopped by signal; continue with: python src/train.py resume={self.dir}"
            resume = next((c for c in trainer.callbacks if isinstance(c, ResumeCheckpoint)), None) if trainer else None
            if trainer is not None and own_launcher(trainer) is not None and not trainer.is_global_zero:
                # Rank 0's exit code speaks for the run. A non-zero one here would make Lightning's process
                # observer SIGKILL rank 0, perhaps while it writes the resume checkpoint.
                return 0
            return resume.exit_code if resume else 128 + signal.SIGTERM
        interrupted = isinstance(err, KeyboardInterrupt) or (
            isinstance(err, SystemExit) and trainer is not None and trainer.interrupted
        )
        self.status = "interrupted" if interrupted else "diverged" if isinstance(err, Diverged) else "failed"
        self.error = f"{type(err).__name__}: {err}"
        collective = failed_collective(err)
        if collective is not None:  # each rank logs its own stack: together they show the mismatch
            self.error = f"collective {collective} failed on rank {rank_zero_only.rank}: {self.error}"
            log.error("%s\n%s", self.error, "".join(traceback.format_exception(err)))
        stop_other_processes(trainer)
        # Lightning exits 1 on Ctrl-C; 130 (128 + SIGINT) tells a shell or scheduler why
        return 128 + signal.SIGINT if interrupted else None

    def _on_stuck(self, signum: int, where: str) -> None:
        """A signal came while this process was blocked (see ``hangs.SignalWatchdog``): record, stop
        the processes this one started, and exit with the signal's code, without a checkpoint."""
        name = signal.Signals(signum).name
        self.record(
            "interrupted" if signum == signal.SIGINT else "preempted",
            f"{name} while blocked in {where} (rank {rank_zero_only.rank}), so no checkpoint was written; "
            f"continue from the last one with: python src/train.py resume={self.dir}",
        )
        launcher = own_launcher(self.trainer) if self.trainer is not None else None
        if launcher is not None:
            launcher.kill(signal.SIGKILL)
        os._exit(128 + signum)


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
