"""A run's config, recovered: the one way ``resume=``, ``src/eval.py`` and ``src/visualize.py`` rebuild
what a run trained with.

Two steps. Before Hydra composes, :func:`run_arguments` puts the run's own command-line overrides
ahead of this command line's, so that the composed config has the run's groups (its data, its
switches) and Hydra's record of its choices. After, :func:`recover_config` sets every value back to
the one in the run's saved config, except what this command line sets and this command's own keys
(its machine, its paths): ``conf/`` may have changed since the run started. A change to the
network is refused: a checkpoint holds the network it was trained as.
"""

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from alexnet.errors import ConfigError
from alexnet.run.layout import RunDir
from alexnet.run.slurm import slurm_run_dir

log = logging.getLogger(__name__)

NETWORK = "model"  # the config section a checkpoint fixes


def run_arguments(run: RunDir, argv: Sequence[str], drop: Callable[[str], bool] | None = None) -> list[str]:
    """The run's own overrides (less those ``drop`` picks, and Hydra's), then ``argv``'s. Idempotent:
    a DDP child process gets its parent's argv, the run's overrides already in it."""
    own = [o for o in run.overrides() if not o.startswith("hydra.") and not (drop and drop(o))]
    return [*(o for o in own if o not in argv), *argv]


def given_overrides(run: RunDir) -> list[str]:
    """The overrides of this command line that are not the run's own (nor ``resume=``)."""
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    task = list(hydra.overrides.task) if hydra else []
    return [o for o in task if o not in run.overrides() and not o.startswith("resume=")]


def recover_config(
    run: RunDir, cfg: DictConfig | None = None, given: Sequence[str] = (), keep: Sequence[str] = ()
) -> DictConfig:
    """The config ``run`` trained with (interpolations unresolved).

    With ``cfg``, this command's config composed from the run's overrides then ``given``: ``cfg``,
    each key set back to the run's saved value, except keys that ``given`` sets and keys under
    ``keep`` (this command's own: its machine, its paths); the keys where ``conf/`` changed since
    the run are logged. Without, the saved config as it is. Raise :class:`ConfigError` when
    ``given`` changes the network.
    """
    saved = run.config()
    if cfg is None:
        return saved
    now = _flatten(OmegaConf.to_container(cfg, resolve=False))
    before = _flatten(OmegaConf.to_container(saved, resolve=False))
    ours = {o.lstrip("+~").split("=", 1)[0] for o in given} | {"hydra", *keep}
    changed = [
        key
        for key in sorted(set(now) | set(before))
        if not _under(key, ours) and now.get(key, _MISSING) != before.get(key, _MISSING)
    ]
    for key in changed:
        OmegaConf.update(cfg, key, OmegaConf.select(saved, key, default=None), merge=False, force_add=True)
    trained = OmegaConf.to_container(saved[NETWORK], resolve=True)
    asked = OmegaConf.to_container(cfg[NETWORK], resolve=True)
    differences = sorted(key for key in set(asked) | set(trained) if asked.get(key) != trained.get(key))
    if differences:
        listing = ", ".join(f"model.{k}: {trained.get(k)!r} as trained, {asked.get(k)!r} here" for k in differences)
        culprits = [o for o in given if not _under(o.lstrip("+~").split("=", 1)[0], {"hydra", *keep})]
        raise ConfigError(
            f"{' '.join(culprits)} would change the network of {run} ({listing}). A checkpoint holds the "
            f"network it was trained as: drop the override, or copy the checkpoint out of its run directory "
            f"to load its weights into another network on purpose"
        )
    if changed:
        log.warning("conf/ changed since %s started; keeping the run's own values of: %s", run, ", ".join(changed))
    return cfg


def _under(key: str, prefixes: set[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


# -- resume= ----------------------------------------------------------------------------------------
def resume_arguments(argv: list[str]) -> list[str]:
    """Expand ``resume=<run dir> [key=value ...]`` into the run's own command-line overrides, then
    the new ones, run in the same directory (Hydra leaves the run's ``.hydra`` as it was).

    A SLURM batch job runs in ``<log dir>/runs/slurm-<job id>``, so that the job, requeued, finds
    its run again (and the run resumes: see :func:`alexnet.run.slurm.requeued`).
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
    run = RunDir(Path(given[-1]).resolve())
    if not run.overrides_file.is_file():
        sys.exit(
            f"resume={given[-1]}: {run.overrides_file} not found. Pass the directory of the run to continue, "
            f"e.g. resume=outputs/runs/2026-11-27/12-00-00 (it holds .hydra/, checkpoints/ and csv/)"
        )
    # e.g. a requeued job's own overrides come after the run's
    rest = run_arguments(run, [a for a in argv if not a.startswith("resume=")])
    return [*rest, f"resume={run.path}", f"hydra.run.dir={run.path}", "hydra.output_subdir=null"]


def prepare_resume(cfg: DictConfig, run: RunDir) -> tuple[Path, int | None]:
    """Recover a resumed run's config (:func:`recover_config`) and find its checkpoint; return
    (checkpoint, metrics-CSV rows to keep)."""
    if cfg.ckpt_path:
        raise ConfigError(
            f"resume={cfg.resume} and ckpt_path={cfg.ckpt_path}: resume continues the run's own "
            f"checkpoint; drop ckpt_path (or drop resume to start a new run from ckpt_path)"
        )
    given = given_overrides(run)
    recover_config(run, cfg, given, keep=("resume", "ckpt_path"))
    checkpoint = run.checkpoint_to_resume()
    extras = checkpoint_extras(checkpoint)
    with_new = f" with {' '.join(given)}" if given else ""
    log.info("Resuming %s from %s (step %s)%s", run, checkpoint, extras["global_step"], with_new)
    return checkpoint, extras["csv_rows"]


def checkpoint_extras(path: Path) -> dict[str, Any]:
    """The global step and the metrics-CSV row count recorded in a checkpoint (memory-mapped: cheap)."""
    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)  # tensors and plain values
    return {"global_step": state.get("global_step"), "csv_rows": state.get("csv_rows")}


_MISSING = object()


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: tree}
