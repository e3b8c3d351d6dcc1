"""Loggers: a metrics CSV in every run directory, and Weights & Biases offline unless logged in."""

import csv
import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only

from alexnet.errors import require

WANDB_MODES = ("auto", "online", "offline", "disabled")


def wandb_mode(mode: str = "auto") -> str:
    """Resolve ``auto``: ``WANDB_MODE`` if set, else online when an API key is configured, else offline.

    A key counts as configured when ``WANDB_API_KEY`` is set or ``wandb login`` wrote it to ~/.netrc.
    Offline runs need no account; ``wandb sync <run dir>/wandb/offline-run-*`` uploads them later.
    """
    require(mode in WANDB_MODES, "logger.wandb.mode", mode, f"one of {list(WANDB_MODES)}")
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return "online" if netrc.netrc().authenticators(host) else "offline"
    except (FileNotFoundError, netrc.NetrcParseError):
        return "offline"


def wandb_logger(mode: str = "auto", **kwargs) -> WandbLogger | None:
    """Lightning's ``WandbLogger`` with ``mode`` resolved by :func:`wandb_mode`; none when that is
    ``disabled`` (W&B's own disabled mode still imports it and makes a stand-in run: 1-2 s a process)."""
    mode = wandb_mode(mode)
    return None if mode == "disabled" else WandbLogger(mode=mode, **kwargs)


class ResumableCSVLogger(CSVLogger):
    """Lightning's ``CSVLogger``; with ``keep_rows``, it continues an existing ``metrics.csv`` after
    its first ``keep_rows`` rows (those written before the checkpoint a run resumes from) instead of
    starting the file again, so a resumed run's file has every step once."""

    def __init__(self, *args, keep_rows: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if keep_rows is not None:
            self._continue_file(keep_rows)

    @rank_zero_only
    def _continue_file(self, keep_rows: int) -> None:
        path = Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE
        header, rows = [], []
        if path.is_file():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                header, rows = list(reader.fieldnames or []), list(reader)[:keep_rows]
        writer = self.experiment  # made now: Lightning's writer starts by deleting the file
        if header:
            with open(path, "w", newline="") as f:
                table = csv.DictWriter(f, fieldnames=header)
                table.writeheader()
                table.writerows(rows)
            writer.metrics_keys = header  # appended rows then follow these columns
