"""Never lose a run: atomic checkpoints, exact resume, preemption and failure checkpoints.

One file per run holds the state to resume from, ``<run dir>/checkpoints/resume.ckpt``, written by
:class:`ResumeCheckpoint`:

- every ``every_n_steps`` training steps and at the start of every epoch, at the start of a batch,
  when everything before it (metrics included) is logged and nothing of it has run yet;
- on SIGTERM (and SIGUSR1 or SIGUSR2, SLURM's warning before preemption) at the next step boundary, after
  which the process exits with ``128 + signal`` (143 for SIGTERM), and on SLURM requeues the job;
- on any other error during fit, if the weights are not half-updated: the state before the batch
  that failed. A diverged run keeps the last good one.

Besides Lightning's own state (weights, optimiser, scheduler, loops, callbacks) the file holds each
rank's random number generators and training-metric states and the training loader's position
(counted in trained, not prefetched, batches), so that on CPU a resumed run ends with the same
weights and metrics as one never interrupted, and the number of rows of the metrics CSV at that
point, so the resumed run continues the file without duplicates. ``src/train.py resume=<run dir>`` uses it.
Files are written to a temporary name beside the target, synced, then renamed over it
(:class:`AtomicCheckpointIO`), so a kill mid-write leaves the previous checkpoint intact.
"""

import logging
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import OmegaConf
from torchmetrics import Metric

from alexnet.callbacks import Diverged
from alexnet.lightning_compat import request_stop
from alexnet.runs import run_overrides

log = logging.getLogger(__name__)

RESUME_FILE = "resume.ckpt"
# SLURM's warning before the time limit or preemption: sbatch --signal=USR1@<s> by hand, USR2 from
# submitit (hydra/launcher=slurm), whose own USR2 handler would exit mid-step. Both mean: checkpoint
# at the step boundary, requeue, exit.
SLURM_SIGNALS = tuple(getattr(signal, name) for name in ("SIGUSR1", "SIGUSR2") if hasattr(signal, name))


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``<name>.tmp-<pid>`` in the same directory, ``fsync``, then rename over
    the target: readers (and a resume after a crash) see the old file or the new one, never half."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)


def rng_states(cuda: bool, torch_only: bool = False) -> dict[str, Any]:
    """The random number generators' states, as tensors and plain values (``weights_only``-loadable):
    torch's (and with ``cuda``, each GPU's), and unless ``torch_only``, numpy's and Python's. A
    training step draws from torch's alone, which costs about a microsecond to copy."""
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if cuda:
        states["cuda"] = torch.cuda.get_rng_state_all()
    if not torch_only:
        kind, keys, position, has_gauss, cached = np.random.get_state()
        states["numpy"] = [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached]
        states["python"] = random.getstate()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if "numpy" in states:
        kind, keys, position, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    if "python" in states:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))


def training_metrics(module: torch.nn.Module, prefix: str = "train_") -> dict[str, Metric]:
    """The torchmetrics a training step updates (named ``train_*`` in
    :class:`~alexnet.system.ClassificationSystem`), by ``state_dict`` prefix."""
    return {name: m for name, m in module.named_modules() if isinstance(m, Metric) and name.startswith(prefix)}


def metric_states(metrics: dict[str, Metric]) -> dict[str, torch.Tensor]:
    """Copies of the metrics' accumulated states, by ``state_dict`` key."""
    return {
        f"{name}.{key}": value.detach().clone()
        for name, metric in metrics.items()
        for key, value in metric.metric_state.items()
        if isinstance(value, torch.Tensor)
    }


def _to_cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.cpu() for k, v in tensors.items()}


def csv_rows(metrics_csv: Path) -> int:
    """Data rows in a metrics CSV (0 if there is none yet)."""
    if not metrics_csv.is_file():
        return 0
    with open(metrics_csv, newline="") as f:
        return max(0, sum(1 for _ in f) - 1)


class ResumeCheckpoint(L.Callback):
    """Writes ``<dirpath>/resume.ckpt`` (see the module docstring) and restores what Lightning's
    checkpoint leaves out: each rank's random number generators and training-metric states, and
    the logging step.

    Args:
        dirpath: where ``resume.ckpt`` goes (the run's ``checkpoints`` directory).
        every_n_steps: training steps between resume checkpoints (0: only at epoch starts and on
            signals and errors). Each write blocks training: 0.4-1.4 s for model=paper's 0.5 GB
            (weights and momentum) on this repo's 2-core test machine, disk-bound.
    """

    def __init__(self, dirpath: str, every_n_steps: int = 500) -> None:
        self.path = Path(dirpath) / RESUME_FILE
        self.every_n_steps = every_n_steps
        self.signal: int | None = None  # the signal that stopped the run
        self._pending: int = 0  # a signal this process received, not yet shared with the others
        self._rng_at_batch_start: dict[str, Any] = {}
        self._metrics_at_batch_start: dict[str, torch.Tensor] = {}
        self._in_batch = False  # between a batch's start and its end
        self._stepped = False  # the optimiser has run in the current batch
        self._to_restore: dict[str, Any] | None = None  # this rank's RNG and metric states, after a resume
        self._logging_step: int | None = None
        self._rank_states: list[dict[str, Any]] | None = None  # every rank's, for the file being written
        self._previous_handlers: dict[int, Any] = {}
        self._cuda, self._metrics = False, {}

    # -- signals -----------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Registered before Lightning's own handlers, which then leave SIGUSR1 to this one.
        self._cuda = trainer.strategy.root_device.type == "cuda"
        self._metrics = training_metrics(pl_module)
        if stage == "fit" and _in_main_thread():
            for signum in SLURM_SIGNALS:
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
            self._trainer = trainer

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if _in_main_thread():
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, handler)
            self._previous_handlers = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning's SIGTERM handler (registered at fit's start) runs a broadcast inside the handler,
        # wherever the main thread is: with another rank in another collective, both wait forever.
        # This one only marks the stop; on_train_batch_start shares it in every rank's order.
        if _in_main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)  # Lightning restores the original at teardown

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.info(
            "Received %s: checkpointing at the end of this step, then %s",
            signal.Signals(signum).name,
            "requeueing (SLURM) or exiting" if signum in SLURM_SIGNALS else "exiting",
        )
        self._pending = self._pending or signum
        if self._trainer.world_size == 1:
            self.signal = signum
            request_stop(self._trainer)  # Lightning stops at the next step boundary

    def _share_signal(self, trainer: L.Trainer) -> None:
        """Under DDP, one all-reduce a step, at its start on every rank: if any rank got a signal,
        all stop at the same step boundary (Lightning alone stops on rank 0's signals only)."""
        flag = torch.tensor([self._pending or 0], device=trainer.strategy.root_device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        signum = int(flag.item())
        if signum and self.signal is None:
            self.signal = signum
            request_stop(trainer)

    # -- periodic checkpoints ----------------------------------------------------------------
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int):
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            self._share_signal(trainer)
        due = batch_idx == 0 or (self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0)
        if self._to_restore is not None:  # the first batch after a resume: the file is this state
            set_rng_states(self._to_restore["rng_states"])
            for key, value in self._to_restore.get("metrics", {}).items():
                name, state = key.rsplit(".", 1)
                setattr(self._metrics[name], state, value.to(pl_module.device))
            self._to_restore = None
            if self._logging_step is not None:  # Lightning assumes a save at a batch end and adds one
                trainer.fit_loop.epoch_loop._batches_that_stepped = self._logging_step
        elif due and trainer.global_step > 0:
            self.save(trainer, every_rank=True)
        self._rng_at_batch_start = rng_states(self._cuda, torch_only=True)
        self._metrics_at_batch_start = metric_states(self._metrics)
        self._in_batch, self._stepped = True, False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer, every_rank=True)  # the final state: resuming a finished run does nothing more

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        self._stepped = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        self._in_batch = False

    def _consistent(self, trainer: L.Trainer) -> bool:
        """Whether the weights and the loop's count of finished batches describe the same moment:
        no batch half done, or one that failed before its optimiser step (then the state is that
        before it)."""
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        return progress.started == progress.completed or (self._in_batch and not self._stepped)

    def save(self, trainer: L.Trainer, every_rank: bool = False) -> None:
        """Write ``resume.ckpt``. Rank 0 writes it alone, without a barrier, so it cannot deadlock
        when another rank has failed (every rank holds the same weights). With ``every_rank`` (all
        ranks are here at the same step), each rank's random generators and training-metric states
        are gathered first, so that under DDP each rank resumes with its own."""
        own = self._rank_state()
        if every_rank and trainer.world_size > 1 and torch.distributed.is_initialized():
            ranks: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(ranks, own)
        else:
            ranks = [own]
        if trainer.is_global_zero:
            self._rank_states = ranks
            try:
                checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
            finally:
                self._rank_states = None
            trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, self.path)

    def _rank_state(self) -> dict[str, Any]:
        """This rank's generators and training-metric states; inside a batch (an error), those
        from before it, since the state to resume from is the one before the failed batch."""
        now = rng_states(self._cuda)
        if not self._in_batch:
            return {"rng_states": now, "metrics": _to_cpu(metric_states(self._metrics))}
        return {"rng_states": {**now, **self._rng_at_batch_start}, "metrics": _to_cpu(self._metrics_at_batch_start)}

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        states = self._rank_states or [self._rank_state()]
        checkpoint["rank_states"] = states
        checkpoint["state_dict"].update(states[0]["metrics"])  # rank 0's, as of the state saved
        checkpoint["logging_step"] = trainer.fit_loop.epoch_loop._batches_that_stepped
        for logger in trainer.loggers:
            logger.save()  # flush buffered metric rows: the file must hold everything up to this point
        metrics_csv = [Path(lg.log_dir) / "metrics.csv" for lg in trainer.loggers if isinstance(lg, CSVLogger)]
        checkpoint["csv_rows"] = csv_rows(metrics_csv[0]) if metrics_csv else None

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn != "fit":
            return
        states = checkpoint.get("rank_states") or [None]
        if len(states) != trainer.world_size:  # another world size, or saved after an error: rank 0's
            log.warning("%s holds the generator and metric states of %d process(es), not %d: every process "
                        "resumes with rank 0's (the weights are exact; this epoch's train metrics are not)",
                        self.path, len(states), trainer.world_size)  # fmt: skip
        self._to_restore = states[trainer.global_rank] if len(states) == trainer.world_size else states[0]
        self._logging_step = checkpoint.get("logging_step")

    # -- signals and errors ------------------------------------------------------------------
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            self.signal = self.signal or signal.SIGTERM
            # Rank 0 alone, no gather: a rank that has not stopped with the others (Lightning's epoch-end
            # check is not synced) must not hang the save within the scheduler's grace period.
            self.save(trainer)
            log.info("Stopped by signal %d; state saved to %s", self.signal, self.path)
            if self.signal in SLURM_SIGNALS and trainer.is_global_zero:
                requeue_slurm_job()
        elif isinstance(exception, Diverged) or trainer.state.stage != "train":
            return  # the last resume checkpoint is the last good state
        elif not self._consistent(trainer):
            log.warning("The error came after the optimiser step of a batch: %s keeps the last save", self.path)
        else:
            self.save(trainer)
            log.info("Error during training; the state before it is saved to %s", self.path)

    @property
    def exit_code(self) -> int:
        """What schedulers expect from a process stopped by a signal: 128 + its number."""
        return 128 + int(self.signal or signal.SIGTERM)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def requeue_slurm_job() -> None:
    """``scontrol requeue`` this SLURM job (an array task included); the requeued job resumes in
    the same run directory (see :func:`resume_arguments`)."""
    job = os.environ.get("SLURM_JOB_ID")
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    if not job:
        log.info("Not a SLURM job: nothing to requeue")
        return
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if result.returncode:
        log.warning("scontrol requeue %s failed (%d): %s", job, result.returncode, result.stderr.strip())
    else:
        log.info("Requeued SLURM job %s", job)


# -- resuming ----------------------------------------------------------------------------------
def resume_checkpoint(run_dir: Path) -> Path:
    """The file to continue ``run_dir`` from: ``resume.ckpt``, else ``last.ckpt`` (end of an epoch)."""
    checkpoints = run_dir / "checkpoints"
    for name in (RESUME_FILE, "last.ckpt"):
        if (checkpoints / name).is_file():
            return checkpoints / name
    raise FileNotFoundError(
        f"resume={run_dir}: no {RESUME_FILE} or last.ckpt in {checkpoints}; the run stopped before its "
        f"first checkpoint, so start it again without resume="
    )


def checkpoint_extras(path: Path) -> dict[str, Any]:
    """The global step and the metrics-CSV row count recorded in a checkpoint (memory-mapped: cheap)."""
    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)  # tensors and plain values
    return {"global_step": state.get("global_step"), "csv_rows": state.get("csv_rows")}


def resume_arguments(argv: list[str]) -> list[str]:
    """Expand ``resume=<run dir> [key=value ...]`` into the run's own command-line overrides, then
    the new ones, run in the same directory (Hydra leaves the run's ``.hydra`` as it was).

    A SLURM batch job runs in ``<log dir>/runs/slurm-<job id>``, so that the job, requeued, finds
    its run again (and :func:`alexnet.train.train` resumes it: see :func:`requeued`).
    """
    if any(a.startswith("hydra.run.dir=") for a in argv):  # chosen already (e.g. a DDP child process)
        return argv
    given = [a.split("=", 1)[1] for a in argv if a.startswith("resume=")]
    slurm_dir = slurm_run_dir(argv)
    if not given and slurm_dir is not None:
        keep = ["hydra.output_subdir=null"] if (slurm_dir / ".hydra").is_dir() else []  # the run's record stays
        return [*argv, f"hydra.run.dir={slurm_dir}", *keep]
    if not given or given[-1] in ("", "null"):
        return argv
    run_dir = Path(given[-1]).resolve()
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        sys.exit(
            f"resume={given[-1]}: {saved} not found. Pass the directory of the run to continue, e.g. "
            f"resume=outputs/runs/2026-11-27/12-00-00 (it holds .hydra/, checkpoints/ and csv/)"
        )
    overrides = run_overrides(run_dir)
    extra = [a for a in argv if not a.startswith("resume=") and a not in overrides]  # e.g. a requeued job's own
    return [*overrides, *extra, f"resume={run_dir}", f"hydra.run.dir={run_dir}", "hydra.output_subdir=null"]


def requeued(run_dir: Path) -> bool:
    """Whether this is a requeued SLURM job (``SLURM_RESTART_COUNT`` > 0: preempted, or requeued
    on SIGUSR1/SIGUSR2) whose run directory holds a resume checkpoint: a run started with ``src/train.py``
    as a batch job, or a sweep job of ``hydra/launcher=slurm``, whose directory Hydra fixes."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0 and (run_dir / "checkpoints" / RESUME_FILE).is_file()


def slurm_run_dir(argv: list[str]) -> Path | None:
    """A SLURM batch job's run directory, named after the job (array task) id; None outside one,
    and in interactive allocations, where several runs share a job id."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    log_dir = next((a.split("=", 1)[1] for a in argv if a.startswith("paths.log_dir=")), "outputs")
    return Path(log_dir).resolve() / "runs" / f"slurm-{job}"


def reconcile_config(cfg, run_dir: Path, new_overrides: list[str]) -> list[str]:
    """Make ``cfg`` (composed again from the run's overrides) equal the run's saved config, except
    for keys the user overrode now; return the keys where ``conf/`` changed since (for a warning)."""
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    now = _flatten(OmegaConf.to_container(cfg, resolve=False))
    before = _flatten(OmegaConf.to_container(saved, resolve=False))
    touched = {o.lstrip("+~").split("=", 1)[0] for o in new_overrides}
    changed = [
        key
        for key in sorted(set(now) | set(before))
        if key != "resume"
        and not key.startswith("hydra.")
        and not any(key == t or key.startswith(t + ".") for t in touched)
        and now.get(key, _MISSING) != before.get(key, _MISSING)
    ]
    for key in changed:
        OmegaConf.update(cfg, key, OmegaConf.select(saved, key, default=None), merge=False, force_add=True)
    return changed


_MISSING = object()


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: tree}
