"""W&B's mode as users get it: offline unless logged in; WANDB_MODE always wins."""

import pytest

from alexnet.training.loggers import wandb_mode


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    """No W&B variables and an empty home (no ~/.netrc), as on a new machine."""
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def login(home, host: str = "api.wandb.ai") -> None:
    """What `wandb login` writes."""
    netrc = home / ".netrc"
    netrc.write_text(f"machine {host}\n  login user\n  password {'k' * 40}\n")
    netrc.chmod(0o600)


def test_auto_is_offline_on_a_fresh_machine(fresh_home):
    assert wandb_mode("auto") == "offline"


def test_auto_is_online_after_wandb_login(fresh_home):
    login(fresh_home)
    assert wandb_mode("auto") == "online"


def test_auto_reads_the_login_of_the_configured_server(fresh_home, monkeypatch):
    login(fresh_home, host="wandb.example.org")
    assert wandb_mode("auto") == "offline"  # logged in elsewhere, not at api.wandb.ai
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert wandb_mode("auto") == "online"


def test_auto_is_online_with_an_api_key(fresh_home, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert wandb_mode("auto") == "online"


def test_wandb_mode_wins_over_a_login(fresh_home, monkeypatch):
    login(fresh_home)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode("auto") == "disabled"


def test_an_explicit_mode_is_kept_and_a_wrong_one_is_named(fresh_home):
    login(fresh_home)
    assert wandb_mode("offline") == "offline"
    with pytest.raises(ValueError, match=r"logger.wandb.mode='cloud' is not allowed: one of"):
        wandb_mode("cloud")
