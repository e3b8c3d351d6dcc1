"""What ``alexnet.lightning_compat`` takes from Lightning's private parts is still there."""

from datetime import timedelta

import lightning as L
from lightning.pytorch.strategies import DDPStrategy

from alexnet.lightning_compat import TESTED, own_launcher, set_collective_timeout

UPGRADED = f"Lightning {L.__version__} (lightning_compat was written for {TESTED}.x)"


def test_the_collective_timeout_reaches_the_ddp_strategy():
    strategy = DDPStrategy()
    assert set_collective_timeout(strategy, 12), f"{UPGRADED}: DDPStrategy no longer keeps _timeout"
    assert strategy._timeout == timedelta(seconds=12), UPGRADED


def test_lightnings_own_launcher_is_recognised():
    two = L.Trainer(accelerator="cpu", devices=2, logger=False, enable_progress_bar=False)
    assert own_launcher(two) is not None, f"{UPGRADED}: the DDP launcher is no longer _SubprocessScriptLauncher"
    assert own_launcher(L.Trainer(accelerator="cpu", devices=1, logger=False)) is None
