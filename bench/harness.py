"""Timing and reporting shared by the benchmarks: medians after warm-up, ratios against a baseline
measured in the same process, a table on the terminal and ``outputs/bench/latest.json``."""

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch


@dataclass
class Result:
    name: str
    baseline: float
    ours: float
    unit: str  # "ms" (lower is better) or "img/s" (higher is better)
    target: str | None  # e.g. "<= 2.0" or ">= 5.0", on the ratio ours / baseline; None: a figure to report
    baseline_label: str
    ours_label: str

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        op, value = self.target.split()
        return self.ratio <= float(value) if op == "<=" else self.ratio >= float(value)


def median_time(fn: Callable[[], object], repeats: int = 7, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs, after ``warmup`` runs."""
    times = []
    for i in range(warmup + repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }


def report(results: list[Result], path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="make bench: ours against a baseline measured in the same run")
    for column in ("benchmark", "baseline", "ours", "unit", "ratio", "target", "met"):
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    for r in results:
        table.add_row(
            r.name,
            f"{r.baseline:.2f}",
            f"{r.ours:.2f}",
            r.unit,
            f"{r.ratio:.2f}",
            r.target or "—",
            {True: "yes", False: "NO", None: "—"}[r.met],
        )
    console = Console()
    console.print(table)
    for r in results:
        console.print(f"  {r.name}: baseline = {r.baseline_label}; ours = {r.ours_label}")
    info = machine()
    console.print(f"  machine: {info}")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {r.name: {**asdict(r), "ratio": r.ratio, "met": r.met} for r in results}
    path.write_text(json.dumps({"machine": info, **payload}, indent=2) + "\n")
    console.print(f"  wrote {path}")


CONF = Path(__file__).resolve().parents[1] / "conf"


def compose_config(overrides: list[str]):
    """The training config, composed from ``conf/`` as ``src/train.py`` composes it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose("train", overrides=overrides)


class Batches:
    """The same batches again and again, as one iterable (Lightning reads a bare list as many loaders)."""

    def __init__(self, data: list) -> None:
        self.data = data

    def __iter__(self):
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def trainer_step_seconds(
    system, data, device: torch.device, warmup: int, callbacks=(), steps: int | None = None, **trainer_args
) -> float:
    """Seconds per training step of ``system.training_step`` under a Lightning ``Trainer`` over
    ``data`` (a list of batches on ``device``, or a data module with ``steps``), timed from batch
    ``warmup`` to the last."""
    import lightning as L

    class StepClock(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            if batch_idx == warmup:
                synchronize(device)
                self.start = time.perf_counter()

        def on_train_end(self, trainer, module) -> None:
            synchronize(device)
            self.seconds = (time.perf_counter() - self.start) / (total - warmup)

    total = steps if steps is not None else len(data)

    clock = StepClock()
    settings = {
        "accelerator": device.type,
        "devices": 1,
        "max_steps": total,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        **trainer_args,
    }
    trainer = L.Trainer(callbacks=[clock, *callbacks], **settings)
    if isinstance(data, L.LightningDataModule):
        trainer.fit(system, datamodule=data)
    else:
        trainer.fit(system, train_dataloaders=Batches(data))
    return clock.seconds


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
