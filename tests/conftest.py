import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Tests never reach the network; the few that check W&B switch it to offline themselves.
os.environ["WANDB_MODE"] = "disabled"
# For a run under test that plants a fault (+callbacks.x._target_=planted.<Class>): tests/planted.py importable.
TESTS_ON_PATH = {"PYTHONPATH": str(ROOT / "tests")}


def share_the_cores() -> None:
    """Under pytest-xdist (``make test``), give each worker's processes their share of the cores.

    Every worker starts training processes at once, and each would take one OpenMP thread per core;
    threads that outnumber the cores spin while they wait and slow everything down (two 3-epoch digits
    runs side by side on 2 cores: 33 s each with 2 threads apiece, 19 s with 1). A user's single run
    keeps every core; Lightning and torchrun already split them between DDP processes."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // workers))
        if "torch" in sys.modules:  # already imported: its thread pool has read the variable
            sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


share_the_cores()


# -- a one-node SLURM cluster (scripts/local_slurm.py), one for the whole run ------------------------
# Started by the process that runs the session (xdist's controller, before its workers start, so
# that they inherit SLURM_CONF), where this machine can (root, SLURM installed: .ci/run installs it);
# tests that need it take the `slurm` fixture, which skips with the reason where it cannot, and
# fails instead under ALEXNET_REQUIRE_CLUSTER=1 (CI). ALEXNET_SLURM=off keeps it from starting.
SLURM_MISSING = "ALEXNET_SLURM_MISSING"  # why this run has no cluster, for the workers
SLURM_FOLDER = pytest.StashKey[Path]()


def script_module(name: str):
    """``scripts/<name>.py``, imported (the scripts are for users too, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def skip_without(what: str, why: str) -> None:
    """Skip a test that needs ``what`` (a cluster of this machine's making), saying why; under
    ``ALEXNET_REQUIRE_CLUSTER=1`` (CI, which must run them) fail instead."""
    if os.environ.get("ALEXNET_REQUIRE_CLUSTER") == "1":
        pytest.fail(f"ALEXNET_REQUIRE_CLUSTER=1 but no {what}: {why}")
    pytest.skip(f"no {what}: {why}")


def pytest_configure(config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") or "SLURM_CONF" in os.environ or SLURM_MISSING in os.environ:
        return  # a worker (the controller started it), or a cluster of the user's
    if os.environ.get("ALEXNET_SLURM") == "off":
        os.environ[SLURM_MISSING] = "ALEXNET_SLURM=off"
        return
    cluster = script_module("local_slurm")
    folder = Path(tempfile.mkdtemp(prefix="alexnet-slurm-"))
    try:
        os.environ.update(cluster.start(folder))
    except cluster.ClusterError as err:
        os.environ[SLURM_MISSING] = str(err)
        shutil.rmtree(folder, ignore_errors=True)
        return
    config.stash[SLURM_FOLDER] = folder


def pytest_unconfigure(config) -> None:
    folder = config.stash.get(SLURM_FOLDER, None)
    if folder is not None:
        script_module("local_slurm").stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


CLUSTER_FIXTURES = {"slurm", "two_nodes"}


def pytest_collection_modifyitems(config, items) -> None:
    """The modules of the cluster tests (those that take ``slurm`` or ``two_nodes``) first, the others
    by their number of tests, most first, as pytest-xdist orders them by default (the Makefile turns
    that off: ``--no-loadscope-reorder``). A cluster module holds one or two long tests that partly
    wait (on SLURM's scheduler and signals, a lost node): xdist's order ran them last, where they
    made the run's tail; first, they start side by side on two workers and the rest follow."""
    modules: dict[str, list] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)

    def first(module: str) -> tuple[bool, int]:
        cluster = any(CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())) for item in modules[module])
        return not cluster, -len(modules[module])

    items[:] = [item for module in sorted(modules, key=first) for item in modules[module]]


@pytest.fixture
def slurm() -> dict[str, str]:
    """The environment that reaches the cluster (``SLURM_CONF``, ``PATH`` with the sacct stand-in)."""
    missing = os.environ.get(SLURM_MISSING)
    if missing:
        skip_without("SLURM cluster", missing)
    return {"SLURM_CONF": os.environ["SLURM_CONF"], "PATH": os.environ["PATH"]}


@pytest.fixture
def two_nodes():
    """Two nodes of this machine (``scripts/local_nodes.py``: network namespaces ``node0`` and ``node1``
    on a veth pair), named after this process so that two suites do not share them; removed after."""
    nodes = script_module("local_nodes")
    prefix = f"an{os.getpid()}"
    try:
        pair = nodes.start(prefix)
    except nodes.NodesError as err:
        skip_without("two network namespaces", str(err))
    yield pair
    nodes.stop(prefix)


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
        [sys.executable, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=as_from_a_shell,
    )


def as_from_a_shell() -> None:
    """In a child process before it starts: Ctrl-C (SIGINT) acts as in a terminal. A suite started
    in the background by a script (``make test &``, some CI runners) ignores SIGINT, and an ignored
    signal stays ignored across exec: a planted Ctrl-C would then do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def smoke_overrides() -> list[str]:
    return ["debug=smoke", "trainer.accelerator=cpu", "data.batch_size=16"]
