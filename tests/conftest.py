import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Tests never reach the network; the few that check W&B switch it to offline themselves.
os.environ["WANDB_MODE"] = "disabled"


def compose_config(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """The real config, composed as ``src/train.py`` would, with its run directory in ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
    return cfg


def run_script(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python src/<script> ...`` from the repo root as a user would, outputs in ``cwd``."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def smoke_overrides() -> list[str]:
    return ["debug=smoke", "trainer.accelerator=cpu", "data.batch_size=16"]


class PoisonWeightsAt(L.Callback):
    """For fault tests: fills conv1's weights with NaN before training step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            pl_module.net.features.conv1.conv.weight.data.fill_(float("nan"))


class SignalAt(L.Callback):
    """For fault tests: the process sends itself ``$ALEXNET_TEST_SIGNAL`` (e.g. KILL, TERM) in the
    middle of training step ``$ALEXNET_TEST_SIGNAL_STEP`` (after the forward pass, before the
    backward) on rank ``$ALEXNET_TEST_SIGNAL_RANK`` (default 0); ``RAISE`` raises an error there
    instead. Read from the environment, so a resumed run (started without them) runs through."""

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        name, step = os.environ.get("ALEXNET_TEST_SIGNAL"), os.environ.get("ALEXNET_TEST_SIGNAL_STEP")
        rank = int(os.environ.get("ALEXNET_TEST_SIGNAL_RANK", "0"))
        if name and step is not None and trainer.global_step == int(step) and trainer.global_rank == rank:
            if name == "RAISE":
                raise RuntimeError(f"planted error on rank {rank} at step {step}")
            os.kill(os.getpid(), getattr(signal, f"SIG{name}"))


class MismatchedCollectivesAt(L.Callback):
    """For hang tests: at the start of training step ``$ALEXNET_TEST_HANG_STEP``, rank 0 enters an
    all-reduce and rank 1 an all-gather, so both wait for the other forever (until the collective
    timeout). Before it, each rank touches ``<run dir>/hung-<rank>``, so a test knows when."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = os.environ.get("ALEXNET_TEST_HANG_STEP")
        if step is None or trainer.global_step != int(step):
            return
        import torch
        import torch.distributed as dist

        Path(trainer.default_root_dir, f"hung-{trainer.global_rank}").touch()
        if trainer.global_rank == 0:
            dist.all_reduce(torch.ones(3))
        else:
            dist.all_gather([torch.zeros(5) for _ in range(trainer.world_size)], torch.ones(5))
