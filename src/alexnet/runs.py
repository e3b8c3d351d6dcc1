"""A finished run read back from its directory: its config and its checkpoints."""

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def run_config(run_dir: Path) -> DictConfig:
    """The config the run was trained with (``<run dir>/.hydra/config.yaml``)."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: is {run_dir} a run directory (outputs/runs/<date>/<time>)?")
    return OmegaConf.load(path)


def run_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides the run was started with (``<run dir>/.hydra/overrides.yaml``),
    without ``resume=``: composed again, they give the run's config."""
    return [str(o) for o in OmegaConf.load(run_dir / ".hydra" / "overrides.yaml") if not str(o).startswith("resume=")]


def run_of_checkpoint(checkpoint: Path) -> Path | None:
    """The run directory a checkpoint sits in (``<run dir>/checkpoints/<file>``), or None."""
    run_dir = checkpoint.resolve().parent.parent
    return run_dir if (run_dir / ".hydra" / "config.yaml").is_file() else None


def find_checkpoint(run_dir: Path, which: str = "best") -> Path:
    """``best`` (lowest val top-1 error), ``last``, or a path to a checkpoint file."""
    checkpoints = run_dir / "checkpoints"
    if which == "last":
        candidates = [checkpoints / "last.ckpt"]
    elif which == "best":
        results = run_dir / "results.json"
        recorded = json.loads(results.read_text()).get("best_checkpoint") if results.is_file() else None
        candidates = [Path(recorded)] if recorded else []
        candidates += sorted(checkpoints.glob("best-*.ckpt"))
    else:
        candidates = [Path(which)]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"no {which!r} checkpoint in {checkpoints}; pass checkpoint=last or a path to a .ckpt file")
