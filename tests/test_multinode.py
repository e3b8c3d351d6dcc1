"""Two nodes with ``torchrun``: the README's two commands of "Several machines" (two agents,
``--nnodes=2``, c10d rendezvous, each starting 2 processes), shortened, on two nodes that
``scripts/local_nodes.py`` makes of network namespaces (``conftest.py``'s ``two_nodes``): each its own
hostname and address, so the rendezvous and gloo cross a network interface between them as on a
cluster."""

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TESTS_ON_PATH
from helpers.readme import readme_commands
from helpers.runs import assert_same_run, results, train_cli

NEW, RESUME = [command for command in readme_commands() if command.startswith("torchrun ")]
TORCHRUN = str(Path(sys.executable).parent / "torchrun")
TRAIN = str(ROOT / "src" / "train.py")
# The README's new run, shortened: 2 epochs of 6 steps (the global batch of 128 split across 4
# processes), each rank writing its shard; a resume checkpoint with every rank's state every 3 steps
RUN = [
    "debug=smoke",
    "model.width=0.25",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=6",
    "+callbacks.shards._target_=planted.RecordShards",
    "callbacks.resume_checkpoint.every_n_steps=3",
]
TIMEOUT = 240  # seconds for a launch of both nodes to end


def on_two_nodes(nodes, readme: str, run_dir: Path, launch: str, *extra: str) -> list[subprocess.Popen]:
    """One of the README's commands on both nodes, started together (``--node-rank`` 1 on node1),
    with this test's run directory, ``launch`` as the rendezvous id and ``extra`` arguments for
    ``src/train.py``; each node's output in ``<run dir>.<launch>.node<N>.log``."""
    env = {**os.environ, **TESTS_ON_PATH, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline"}
    agents, programs = [], {"torchrun": TORCHRUN, "src/train.py": TRAIN}
    for rank, node in enumerate(nodes):
        mine = {"--node-rank": rank, "--rdzv-id": launch, "hydra.run.dir": run_dir, "resume": run_dir}
        argv = []
        for arg in shlex.split(readme):
            key = arg.split("=", 1)[0]
            argv.append(programs.get(arg, f"{key}={mine[key]}" if key in mine else arg))
        log = open(f"{run_dir}.{launch}.{node.hostname}.log", "w")
        command = node.command([*argv, *extra])
        agents.append(subprocess.Popen(command, cwd=run_dir.parent, env=env, stdout=log, stderr=log))
    return agents


def ended(nodes, agents: list[subprocess.Popen], run_dir: Path, launch: str) -> tuple[list[int], list[str]]:
    """Each node's exit code and output, once both agents have ended (killed after ``TIMEOUT``)."""
    deadline = time.monotonic() + TIMEOUT
    for node, agent in zip(nodes, agents):
        try:
            agent.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for pid in node.pids():
                subprocess.run(["kill", "-9", str(pid)])
            agent.wait(timeout=30)
    logs = [Path(f"{run_dir}.{launch}.{node.hostname}.log").read_text() for node in nodes]
    return [agent.returncode for agent in agents], logs


def assert_every_image_once(run_dir: Path, epochs: int, world: int) -> None:
    """Each epoch, the ranks' shards are disjoint and together all but the remainder of the split."""
    for epoch in range(epochs):
        shards = [(run_dir / "shards" / f"epoch{epoch}-rank{rank}.txt").read_text().split() for rank in range(world)]
        seen = [int(i) for shard in shards for i in shard]
        assert len(seen) == len(set(seen)), f"epoch {epoch}: an image on two ranks"
        assert len({len(shard) for shard in shards}) == 1, "unequal shards"
        assert len(seen) > max(seen) + 1 - world, f"epoch {epoch}: {max(seen) + 1 - len(seen)} images unseen"


@pytest.mark.slow
def test_two_nodes_train_as_one_run_survive_a_lost_node_and_resume_exactly(two_nodes, tmp_path):
    """The README's first command on both nodes; node1 lost mid-epoch (every process in its namespace
    killed) while training waits at the start of step 3, after its periodic checkpoint: node0's
    processes fail at their next collective (the step's gradients) within seconds, naming the lost
    peer, and their agent exits. The second command resumes on both nodes, and the run ends as 4
    processes on one machine never stopped do: bit-equal weights, metrics file and results."""
    run = tmp_path / "run"
    pause = ["+callbacks.fault._target_=planted.FaultAt", "+callbacks.fault.kind=pause", "+callbacks.fault.at=start"]
    agents = on_two_nodes(two_nodes, NEW, run, "first", *RUN, *pause)
    deadline = time.monotonic() + TIMEOUT
    while not (run / "paused").exists():
        assert time.monotonic() < deadline and all(a.poll() is None for a in agents), "no step 3"
        time.sleep(0.2)
    for pid in two_nodes[1].pids():
        subprocess.run(["kill", "-9", str(pid)])
    lost = time.monotonic()
    (run / "release").touch()
    codes, logs = ended(two_nodes, agents, run, "first")
    print(f"node0's agent exited {time.monotonic() - lost:.1f} s after node1 was lost")
    assert codes[0] != 0 and time.monotonic() - lost < 120, logs[0][-3000:]  # seconds, not the collective timeout
    record = results(run)
    assert record["status"] == "failed" and "10.77.0.2" in record["error"], record["error"]  # the lost peer
    assert "holds the state before it, with every rank's" in (run / "train.log").read_text()

    codes, logs = ended(two_nodes, on_two_nodes(two_nodes, RESUME, run, "resumed"), run, "resumed")
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
    record = results(run)
    assert record["status"] == "finished" and record["world_size"] == 4
    assert record["cluster"]["environment"] == "TorchElasticEnvironment"
    assert_every_image_once(run, epochs=2, world=4)
    one_node = train_cli([*RUN, "trainer.devices=4", f"hydra.run.dir={tmp_path / 'one-node'}"], tmp_path)
    assert one_node.returncode == 0, one_node.stderr[-3000:]
    assert_same_run(tmp_path / "one-node", run)
