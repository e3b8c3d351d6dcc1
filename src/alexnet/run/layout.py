"""A run's directory: the one place that knows its layout, and a new run's name.

Every entry point (``src/train.py``, ``eval.py``, ``visualize.py``, ``report.py``) and the sweep
launchers reach a run's files through :class:`RunDir`; its ``results.json`` record is
:mod:`alexnet.run.results`, the never-overwrite rule :mod:`alexnet.run.guard`. The training config
(``conf/callbacks``, ``conf/logger``) puts the same files at the same places under
``paths.output_dir``; ``tests/test_rundir.py`` checks that the two agree. Free of torch imports:
the sweep launcher, a Hydra plugin, uses it.
"""

import functools
import hashlib
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from alexnet.files import create_once
from alexnet.run.results import read_metrics, read_results, write_results

JOURNAL = "optuna.journal"  # a tuned sweep's studies (hparams_search), in its sweep directory


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
        return read_results(self.results_file)

    def write_results(self, results: dict[str, Any]) -> None:
        """Write ``results.json`` (a record of :func:`alexnet.run.results.results_record`) atomically."""
        write_results(self.results_file, results)

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


def sweep_group(sweep_dir: Path) -> str:
    """A sweep's W&B group: its directory's last two parts (date/time)."""
    return "sweep-" + "-".join(sweep_dir.parts[-2:])


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
