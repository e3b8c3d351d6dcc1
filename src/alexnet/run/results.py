"""A run's ``results.json``: its one schema (:func:`results_record`), its writer and reader, and the
per-epoch history read back from the metrics CSV. Plain Python: a sweep's launcher, its report and
the run itself read and write the same record."""

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alexnet.files import write_atomically

STATUSES = ("running", "finished", "interrupted", "preempted", "diverged", "failed", "pruned")  # pruned: a search trial
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
    run_dir: object,
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


def read_results(path: Path) -> dict[str, Any] | None:
    """A ``results.json`` as written, or None before there is one."""
    return json.loads(path.read_text()) if path.is_file() else None


def write_results(path: Path, results: dict[str, Any]) -> None:
    """Write a ``results.json`` atomically (a reader never sees half a file); NaN becomes null."""
    missing = [key for key in RESULT_KEYS if key not in results]
    if missing:
        raise ValueError(f"a results record lacks {missing}: build it with results_record()")
    # default=str turns paths and the like into text; parse_constant turns NaN and Infinity into null.
    clean = json.loads(json.dumps(results, default=str), parse_constant=_null)
    write_atomically(path, json.dumps(clean, indent=2) + "\n")  # two failing ranks may write


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
