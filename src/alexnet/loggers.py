"""Loggers: a metrics CSV in every run directory, and Weights & Biases offline unless logged in."""

import netrc
import os
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger

WANDB_MODES = ("auto", "online", "offline", "disabled")


def wandb_mode(mode: str = "auto") -> str:
    """Resolve ``auto``: ``WANDB_MODE`` if set, else online when an API key is configured, else offline.

    A key counts as configured when ``WANDB_API_KEY`` is set or ``wandb login`` wrote it to ~/.netrc.
    Offline runs need no account; ``wandb sync <run dir>/wandb/offline-run-*`` uploads them later.
    """
    if mode not in WANDB_MODES:
        raise ValueError(f"logger.wandb.mode={mode!r}; choose one of {list(WANDB_MODES)}")
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


def wandb_logger(mode: str = "auto", **kwargs) -> WandbLogger:
    """Lightning's ``WandbLogger`` with ``mode`` resolved by :func:`wandb_mode`."""
    return WandbLogger(mode=wandb_mode(mode), **kwargs)
