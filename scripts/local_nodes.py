"""Two nodes on one machine, to try multi-node ``torchrun`` (the README's "Several machines") without
a cluster, and for the test suite (``tests/test_multinode.py``): two network namespaces joined by a
veth pair, each with its own hostname (``node0``, ``node1``), its own address (10.77.0.1, 10.77.0.2)
on its own interface, and a hosts file naming both. The rendezvous and gloo cross that interface
as they cross a cluster's network; nothing else on the machine sees it.

    sudo python scripts/local_nodes.py start   # prints how to run a command on each node
    sudo python scripts/local_nodes.py run node1 -- torchrun --nnodes=2 --node-rank=1 ... src/train.py ...
    sudo python scripts/local_nodes.py stop

``run`` is ``ip netns exec <namespace> unshare --uts`` with the node's hostname set; ``ip netns exec``
mounts ``/etc/netns/<namespace>/hosts`` over ``/etc/hosts`` for the command. Killing a node is
killing what runs in its namespace (``ip netns pids <namespace>``). Needs root (namespaces).
"""

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SUBNET = "10.77.0"


class NodesError(RuntimeError):
    """The namespaces cannot be made here; the message says why."""


@dataclass(frozen=True)
class Node:
    hostname: str  # node0, node1
    namespace: str
    address: str
    interface: str  # the node's end of the veth pair: GLOO_SOCKET_IFNAME where gloo needs it named

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run on this node: in its namespace, under its hostname."""
        shell = 'hostname "$0" && exec "$@"'
        return ["ip", "netns", "exec", self.namespace, "unshare", "--uts", "sh", "-c", shell, self.hostname, *argv]

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.namespace], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]


def nodes(prefix: str = "alexnet") -> tuple[Node, Node]:
    """The two nodes of namespaces named ``<prefix>-node0`` and ``<prefix>-node1`` (``start`` makes them)."""
    return tuple(Node(f"node{i}", f"{prefix}-node{i}", f"{SUBNET}.{i + 1}", f"{prefix[:9]}-v{i}") for i in range(2))


def missing() -> str | None:
    """Why this machine cannot make the two nodes (not root, programs missing), or None."""
    if os.geteuid() != 0:
        return "not root: network namespaces need root"
    absent = [name for name in ("ip", "unshare", "hostname") if shutil.which(name) is None]
    return f"{', '.join(absent)} not installed (iproute2, util-linux)" if absent else None


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode:
        raise NodesError(f"ip {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")


def start(prefix: str = "alexnet") -> tuple[Node, Node]:
    """Make the namespaces, the veth pair between them, their addresses and hosts files."""
    reason = missing()
    if reason:
        raise NodesError(reason)
    pair = nodes(prefix)
    stop(prefix)  # a previous start's leftovers
    hosts = "127.0.0.1 localhost\n" + "".join(f"{n.address} {n.hostname}\n" for n in pair)
    try:
        _ip("link", "add", pair[0].interface, "type", "veth", "peer", "name", pair[1].interface)
        for node in pair:
            _ip("netns", "add", node.namespace)
            _ip("link", "set", node.interface, "netns", node.namespace)
            for args in (
                ("addr", "add", f"{node.address}/24", "dev", node.interface),
                ("link", "set", node.interface, "up"),
                ("link", "set", "lo", "up"),
            ):
                _ip("-n", node.namespace, *args)
            etc = Path("/etc/netns") / node.namespace
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts)
    except NodesError:
        stop(prefix)
        raise
    return pair


def stop(prefix: str = "alexnet") -> None:
    """Kill what still runs on the nodes, delete the namespaces (and with them the veth pair)."""
    for node in nodes(prefix):
        if not Path("/run/netns", node.namespace).exists():
            continue
        for pid in node.pids():
            subprocess.run(["kill", "-9", str(pid)], capture_output=True)
        subprocess.run(["ip", "netns", "del", node.namespace], capture_output=True)
        shutil.rmtree(Path("/etc/netns") / node.namespace, ignore_errors=True)
    subprocess.run(["ip", "link", "del", nodes(prefix)[0].interface], capture_output=True)  # if left in this one


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("start", "stop", "run"))
    parser.add_argument("node", nargs="?", help="run: node0 or node1")
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="run: the command (after --)")
    parser.add_argument("--prefix", default="alexnet", help="the namespaces' names: <prefix>-node0, -node1")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            for node in start(args.prefix):
                print(f"{node.hostname}: {node.address} on {node.interface} (namespace {node.namespace})")
            print(f"run a command on one: sudo python {sys.argv[0]} run node0 -- <command>")
        elif args.action == "stop":
            stop(args.prefix)
        else:
            (node,) = [n for n in nodes(args.prefix) if n.hostname == args.node]
            command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            return subprocess.run(node.command(command)).returncode
    except NodesError as err:
        print(f"local_nodes: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
