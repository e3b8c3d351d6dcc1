"""A run's directory: the one place that knows its layout, its ``results.json`` schema and writer,
and the rule that a run is never overwritten.

Every entry point (``src/train.py``, ``eval.py``, ``visualize.py``, ``report.py``), the sweep launcher
and the callbacks reach a run's files through :class:`RunDir`. The training config
(``conf/callbacks``, ``conf/logger``) puts the same files at the same places under
``paths.output_dir``; ``tests/test_rundir.py`` checks that the two agree. Free of torch imports:
the sweep launcher, a Hydra plugin, uses it.
"""

import csv
import functools
import hashlib
import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from alexnet.files import create_once, write_atomically

log = logging.getLogger(__name__)

JOURNAL = "optuna.journal"  # a tuned sweep's studies (hparams_search), in its sweep directory
STATUSES = ("running", "finished", "interrupted", "preempted", "diverged", "failed", "pruned")  # pruned: a search trial


class RunDir:
    """One run's directory::

    .hydra/config.yaml      the config as composed (``config()``; a section resolved: ``resolved()``)
    .hydra/overrides.yaml   the command line it was started with (``overrides()``)
    checkpoints/            best-epoch<e>-err1<v>.ckpt, last.ckpt (end of the last finished epoch), resume.ckpt
    csv/metrics.csv         the logged metrics, a row per logging call
    results.json            status and numbers (:func:`results_record`, written by ``write_results``)
    visuals/                pictures and per-class tables
    wandb/run-id            its W&B run id, kept so that a resumed run logs to the same run
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        hydra = self.path / ".hydra"
        self.config_file, self.overrides_file = hydra / "config.yaml", hydra / "overrides.yaml"
        self.checkpoints = self.path / "checkpoints"
        self.resume_checkpoint = self.checkpoints / "resume.ckpt"
        self.last_checkpoint = self.checkpoints / "last.ckpt"
        self.metrics_csv = self.path / "csv" / "metrics.csv"
        self.results_file = self.path / "results.json"
        self.visuals = self.path / "visuals"
        self.wandb_id_file = self.path / "wandb" / "run-id"

    def __str__(self) -> str:
        return str(self.path)

    @classmethod
    def of_checkpoint(cls, checkpoint: Path) -> "RunDir | None":
        """The run a checkpoint belongs to (``<run dir>/checkpoints/<file>``), or None."""
        run = cls(checkpoint.resolve().parent.parent)
        return run if run.config_file.is_file() else None

    # -- what the run was ------------------------------------------------------------------
    def config(self) -> DictConfig:
        """The config the run was trained with, as composed (interpolations unresolved)."""
        if not self.config_file.is_file():
            raise FileNotFoundError(
                f"{self.config_file} is missing: is {self.path} a run directory (outputs/runs/<date>/<time>-<id>)?"
            )
        return OmegaConf.load(self.config_file)

    def resolved(self, section: str) -> DictConfig:
        """One section of the run's config (``model``, say) with its interpolations (``${norm}``,
        ``${data.num_classes}``) replaced by the values they had in the run."""
        return OmegaConf.create(OmegaConf.to_container(self.config()[section], resolve=True))

    def overrides(self) -> list[str]:
        """The command-line overrides the run was started with, without ``resume=``: composed
        again, they give the run's config."""
        return [str(o) for o in OmegaConf.load(self.overrides_file) if not str(o).startswith("resume=")]

    # -- checkpoints -----------------------------------------------------------------------
    def checkpoint(self, which: str = "best") -> Path:
        """``best`` (lowest val top-1 error, as ``results.json`` records it), ``last``, or a path."""
        if which == "last":
            candidates = [self.last_checkpoint]
        elif which == "best":
            recorded = (self.results() or {}).get("best_checkpoint")
            candidates = [Path(recorded)] if recorded else []
            candidates += sorted(self.checkpoints.glob("best-*.ckpt"))
        else:
            candidates = [Path(which)]
        for path in candidates:
            if path.is_file():
                return path
        raise FileNotFoundError(
            f"no {which!r} checkpoint in {self.checkpoints}; pass checkpoint=last or a path to a .ckpt file"
        )

    def checkpoint_to_resume(self) -> Path:
        """The file to continue the run from: ``resume.ckpt``, else ``last.ckpt`` (end of the last finished epoch)."""
        for path in (self.resume_checkpoint, self.last_checkpoint):
            if path.is_file():
                return path
        raise FileNotFoundError(
            f"resume={self.path}: no {self.resume_checkpoint.name} or {self.last_checkpoint.name} in "
            f"{self.checkpoints}; the run stopped before its first checkpoint, so start it again without resume="
        )

    # -- results ---------------------------------------------------------------------------
    def results(self) -> dict[str, Any] | None:
        """``results.json`` as written, or None before there is one."""
        return json.loads(self.results_file.read_text()) if self.results_file.is_file() else None

    def write_results(self, results: dict[str, Any]) -> None:
        """Write ``results.json`` atomically (a reader never sees half a file); NaN becomes null."""
        missing = [key for key in RESULT_KEYS if key not in results]
        if missing:
            raise ValueError(f"a results record lacks {missing}: build it with results_record()")
        # default=str turns paths and the like into text; parse_constant turns NaN and Infinity into null.
        clean = json.loads(json.dumps(results, default=str), parse_constant=_null)
        write_atomically(self.results_file, json.dumps(clean, indent=2) + "\n")  # two failing ranks may write

    def history(self) -> tuple[list[dict[str, float]], dict[str, float]]:
        """(per-epoch rows, test metrics) from the metrics CSV (see :func:`read_metrics`)."""
        return read_metrics(self.metrics_csv)

    # -- W&B -------------------------------------------------------------------------------
    def wandb_id(self) -> str:
        """The run's W&B id, made on first use and kept, so a resumed run logs to the same run.

        Every rank of a run asks for it at start, at the same moment under torchrun: the file is
        created once, whole (:func:`create_once`), so all of them get the id its creator wrote."""
        return create_once(self.wandb_id_file, uuid.uuid4().hex[:8] + "\n").strip()

    # -- never overwrite a run ---------------------------------------------------------------
    def holds_run(self) -> str | None:
        """What marks the directory as holding a run (its status from ``results.json``, else the
        first checkpoint or metrics file found), or None."""
        if self.results_file.is_file():
            try:
                return f"status {(self.results() or {}).get('status')!r} in {self.results_file}"
            except (OSError, ValueError):
                return f"an unreadable {self.results_file}"
        found = sorted(self.checkpoints.glob("*.ckpt")) + [p for p in (self.metrics_csv,) if p.is_file()]
        return f"{found[0]} (no results.json: it stopped before writing one)" if found else None

    def move_aside(self) -> Path:
        """Rename the directory to ``<dir>.replaced-<time>``; nothing is deleted."""
        target = self.path.with_name(f"{self.path.name}.replaced-{time.strftime('%Y-%m-%d_%H-%M-%S')}")
        self.path.rename(target)
        return target


# -- a new run's name ---------------------------------------------------------------------------
@functools.cache
def launch_id() -> str:
    """Six hex digits after the time in a new run's (or sweep's, or evaluation's) directory name,
    ``<date>/<time>-<id>`` (the ``${launch_id:}`` of ``conf/``), so that two runs started in the same
    second get two directories. Every process of one launch gets the same id: torchrun's run id or a
    SLURM job step's ids, hashed; otherwise a random one, drawn once per process. (Lightning's own
    DDP launcher hands its processes the first one's directory.)"""
    shared = os.environ.get("TORCHELASTIC_RUN_ID")
    if not shared and os.environ.get("SLURM_JOB_ID") and os.environ.get("SLURM_STEP_ID"):
        shared = f"slurm-{os.environ['SLURM_JOB_ID']}.{os.environ['SLURM_STEP_ID']}"
    if shared:
        return hashlib.sha256(shared.encode()).hexdigest()[:6]
    return secrets.token_hex(3)


# -- results.json: one schema ------------------------------------------------------------------
RESULT_KEYS = (
    "status",
    "error",
    "run_dir",
    "overrides",
    "choices",
    "seed",
    "world_size",
    "wall_time_s",
    "epochs",
    "val",
    "test",
    "best_checkpoint",
    "history",
)


def results_record(
    status: str,
    run_dir: RunDir | Path,
    *,
    error: str | None = None,
    overrides: Sequence[str] = (),
    choices: dict[str, str | None] | None = None,
    seed: int | None = None,
    world_size: int | None = None,
    wall_time_s: float | None = None,
    history: Sequence[dict[str, float]] = (),
    test: dict[str, float] | None = None,
    best_checkpoint: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ``results.json`` record: every key of :data:`RESULT_KEYS`, then ``extra`` (data reports,
    visuals). ``val`` (final and best) and ``test`` are derived from ``history`` and ``test``."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r}: one of {STATUSES}")
    return {
        "status": status,
        "error": error,
        "run_dir": str(run_dir),
        "overrides": list(overrides),
        "choices": dict(choices or {}),
        "seed": seed,
        "world_size": world_size,
        "wall_time_s": None if wall_time_s is None else round(wall_time_s, 2),
        **summarise(list(history), test or {}),
        "best_checkpoint": best_checkpoint,
        "history": list(history),
        **extra,
    }


def read_metrics(metrics_csv: Path) -> tuple[list[dict[str, float]], dict[str, float]]:
    """(per-epoch rows, test metrics) from a Lightning ``CSVLogger`` file.

    The logger writes one row per logging call with blanks elsewhere; rows of one epoch are merged,
    the last value of each column winning. ``test/*`` values are returned apart, since a test run
    is not an epoch of training.
    """
    epochs: dict[int, dict[str, float]] = {}
    test: dict[str, float] = {}
    if not metrics_csv.is_file():
        return [], test
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            values = {
                k: float(v)
                for k, v in row.items()
                if v not in ("", None) and k not in ("epoch", "step") and not k.endswith("_step")
            }
            if any(k.startswith("test/") for k in values):
                test.update({k: v for k, v in values.items() if k.startswith("test/")})
                continue
            if row.get("epoch"):
                epoch = int(float(row["epoch"]))
                epochs.setdefault(epoch, {"epoch": epoch}).update(values)
    history = [epochs[e] for e in sorted(epochs) if "val/err1" in epochs[e] or "train/err1" in epochs[e]]
    return history, test


def summarise(history: list[dict[str, float]], test: dict[str, float]) -> dict[str, Any]:
    """The number of epochs, final and best (lowest ``val/err1``) validation errors, and the test errors."""
    validated = [row for row in history if "val/err1" in row]
    summary: dict[str, Any] = {"epochs": len(history), "val": {"final": None, "best": None}, "test": None}
    if validated:
        best = min(validated, key=_val_err1)
        summary["val"]["final"] = {"epoch": validated[-1]["epoch"], **_errors(validated[-1], "val")}
        summary["val"]["best"] = {"epoch": best["epoch"], **_errors(best, "val")}
    if test:
        summary["test"] = _errors(test, "test")
    return summary


def _errors(row: dict[str, float], prefix: str) -> dict[str, float | None]:
    return {"err1": row.get(f"{prefix}/err1"), "err5": row.get(f"{prefix}/err5")}


def _val_err1(row: dict[str, float]) -> float:
    return row["val/err1"]


def _null(_: str) -> None:
    return None


# -- the guard ---------------------------------------------------------------------------------
class OccupiedRunDirectory(SystemExit):
    """A new run (or sweep) would write into a directory that holds one already. A ``SystemExit``:
    Hydra turns an ``Exception`` raised in a callback into a warning and goes on; this one ends the
    process with its message (exit code 1) before anything is written."""


class RunDirectoryGuard(Callback):
    """A Hydra callback: a new run or sweep stops before Hydra writes anything into a directory
    that holds a run, unless ``overwrite=true`` (then the old one is moved aside, never deleted).

    Not checked: ``resume=`` (it continues the run there), a requeued SLURM job
    (``SLURM_RESTART_COUNT`` > 0: the resume path), and processes of rank > 0 (rank 0 checked).
    """

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if config.get("resume") or _continuing():
            return
        run = RunDir(str(config.hydra.run.dir))
        found = run.holds_run() if run.path.is_dir() else None
        if found is None:
            return
        if config.get("overwrite"):
            log.warning("overwrite=true: moved the run in %s aside to %s", run, run.move_aside())
            return
        raise OccupiedRunDirectory(
            f"{run} already holds a run ({found}). Nothing was changed. Continue that run with: "
            f"python src/train.py resume={run}; or start this one in a new directory (another "
            f"hydra.run.dir, or none for a dated one); or add overwrite=true to move the old run aside "
            f"to {run}.replaced-<time> first"
        )

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if _continuing():
            return
        sweep = RunDir(str(config.hydra.sweep.dir))
        if (sweep.path / JOURNAL).is_file() and str(config.hydra.sweeper.get("_target_", "")).endswith("TunedSweeper"):
            log.info("Continuing the tuned sweep in %s: its studies, finished trials and jobs are kept", sweep)
            return
        jobs = {}
        for job in sorted(sweep.path.glob("*/")) if sweep.path.is_dir() else []:
            found = RunDir(job).holds_run()
            if found:
                jobs[job.name] = found
        if not jobs:
            return
        if config.get("overwrite"):
            log.warning("overwrite=true: moved the sweep in %s aside to %s", sweep, sweep.move_aside())
            return
        listing = "; ".join(f"job {name}: {found}" for name, found in list(jobs.items())[:3])
        raise OccupiedRunDirectory(
            f"{sweep} already holds {len(jobs)} job(s) of a sweep ({listing}). Nothing was changed. Start "
            f"this sweep in a new directory (another hydra.sweep.dir, or none for a dated one), or add "
            f"overwrite=true to move the old sweep aside to {sweep}.replaced-<time> first"
        )


def _continuing() -> bool:
    """A requeued SLURM job, or a process of rank > 0 (joining a run that rank 0 checked)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0 or any(
        int(os.environ.get(key) or 0) > 0 for key in ("RANK", "LOCAL_RANK")
    )
