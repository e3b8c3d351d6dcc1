"""``resume=<run dir>``: continue a run with its own overrides, in its own directory, from its
resume checkpoint (see :mod:`alexnet.training.resume_checkpoint` for what that file holds)."""

import logging
import sys
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from alexnet.config import ConfigError
from alexnet.rundir import RunDir
from alexnet.training.slurm import slurm_run_dir

log = logging.getLogger(__name__)


def prepare_resume(cfg: DictConfig, run_dir: Path) -> tuple[Path, int | None]:
    """Check a resumed run's config against the one it started with, and find its checkpoint;
    return (checkpoint, metrics-CSV rows to keep)."""
    if cfg.ckpt_path:
        raise ConfigError(
            f"resume={cfg.resume} and ckpt_path={cfg.ckpt_path}: resume continues the run's own "
            f"checkpoint; drop ckpt_path (or drop resume to start a new run from ckpt_path)"
        )
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    run = RunDir(run_dir)
    saved = run.overrides()
    new = [o for o in (hydra.overrides.task if hydra else []) if o not in saved and not o.startswith("resume=")]
    changed = reconcile_config(cfg, run_dir, new)
    if changed:
        log.warning("conf/ changed since this run started; keeping the run's own values of: %s", ", ".join(changed))
    checkpoint = run.checkpoint_to_resume()
    extras = checkpoint_extras(checkpoint)
    with_new = f" with {' '.join(new)}" if new else ""
    log.info("Resuming %s from %s (step %s)%s", run_dir, checkpoint, extras["global_step"], with_new)
    return checkpoint, extras["csv_rows"]


def checkpoint_extras(path: Path) -> dict[str, Any]:
    """The global step and the metrics-CSV row count recorded in a checkpoint (memory-mapped: cheap)."""
    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)  # tensors and plain values
    return {"global_step": state.get("global_step"), "csv_rows": state.get("csv_rows")}


def resume_arguments(argv: list[str]) -> list[str]:
    """Expand ``resume=<run dir> [key=value ...]`` into the run's own command-line overrides, then
    the new ones, run in the same directory (Hydra leaves the run's ``.hydra`` as it was).

    A SLURM batch job runs in ``<log dir>/runs/slurm-<job id>``, so that the job, requeued, finds
    its run again (and :func:`alexnet.training.fit.train` resumes it: see :func:`alexnet.training.slurm.requeued`).
    """
    if any(a.startswith("hydra.run.dir=") for a in argv):  # chosen already (e.g. a DDP child process)
        return argv
    given = [a.split("=", 1)[1] for a in argv if a.startswith("resume=")]
    slurm_dir = slurm_run_dir(argv)
    if not given and slurm_dir is not None:
        keep = ["hydra.output_subdir=null"] if RunDir(slurm_dir).config_file.is_file() else []  # the record stays
        return [*argv, f"hydra.run.dir={slurm_dir}", *keep]
    if not given or given[-1] in ("", "null"):
        return argv
    run_dir = Path(given[-1]).resolve()
    saved = RunDir(run_dir).overrides_file
    if not saved.is_file():
        sys.exit(
            f"resume={given[-1]}: {saved} not found. Pass the directory of the run to continue, e.g. "
            f"resume=outputs/runs/2026-11-27/12-00-00 (it holds .hydra/, checkpoints/ and csv/)"
        )
    overrides = RunDir(run_dir).overrides()
    extra = [a for a in argv if not a.startswith("resume=") and a not in overrides]  # e.g. a requeued job's own
    return [*overrides, *extra, f"resume={run_dir}", f"hydra.run.dir={run_dir}", "hydra.output_subdir=null"]


def reconcile_config(cfg, run_dir: Path, new_overrides: list[str]) -> list[str]:
    """Make ``cfg`` (composed again from the run's overrides) equal the run's saved config, except
    for keys the user overrode now; return the keys where ``conf/`` changed since (for a warning)."""
    saved = RunDir(run_dir).config()
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
