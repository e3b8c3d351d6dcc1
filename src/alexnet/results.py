"""A run's results: per-epoch history read back from its metrics CSV, and ``results.json``."""

import csv
import json
import os
from pathlib import Path
from typing import Any


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
    """Final and best (lowest ``val/err1``) validation errors, and the test errors."""
    validated = [row for row in history if "val/err1" in row]

    def errors(row: dict[str, float], prefix: str) -> dict[str, float | None]:
        return {"err1": row.get(f"{prefix}/err1"), "err5": row.get(f"{prefix}/err5")}

    summary: dict[str, Any] = {"epochs": len(history), "val": {"final": None, "best": None}, "test": None}
    if validated:
        best = min(validated, key=lambda row: row["val/err1"])
        summary["val"]["final"] = {"epoch": validated[-1]["epoch"], **errors(validated[-1], "val")}
        summary["val"]["best"] = {"epoch": best["epoch"], **errors(best, "val")}
    if test:
        summary["test"] = errors(test, "test")
    return summary


def write_results(path: Path, results: dict[str, Any]) -> None:
    """Write ``results.json`` atomically (a reader never sees half a file); NaN becomes null."""
    # default=str turns paths and the like into text; parse_constant turns NaN and Infinity into null.
    clean = json.loads(json.dumps(results, default=str), parse_constant=lambda _: None)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")  # per process: two ranks may write at once
    tmp.write_text(json.dumps(clean, indent=2) + "\n")
    tmp.replace(path)
