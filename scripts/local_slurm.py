"""A one-node SLURM cluster on this machine: to try ``hydra/launcher=slurm``, preemption and requeueing
on a workstation, and for the test suite (``tests/test_slurm.py``), which runs the README's SLURM
commands against it.

    sudo python scripts/local_slurm.py install           # Debian/Ubuntu: slurmctld slurmd slurm-client munge
    sudo python scripts/local_slurm.py start /tmp/slurm  # prints: export SLURM_CONF=... PATH=...
    sudo python scripts/local_slurm.py stop /tmp/slurm

``start`` writes ``<dir>/slurm.conf`` (this host as the one node, with its CPUs and 90% of its memory,
one default partition ``debug``), starts ``munged`` (as the ``munge`` user, unless it runs already),
``slurmctld`` and ``slurmd`` in the foreground mode they have for this (``-D``, no systemd needed),
records their process ids in ``<dir>/pids``, and waits until the node is idle (about 10 s). ``stop``
ends exactly those processes. Needs root: ``slurmd`` runs jobs as their users.

Settings that make requeueing quick here (a cluster's are slower on purpose):
- ``AuthInfo=cred_expire=5``: a requeued job waits this long (default 120 s; 5 is the least SLURM takes);
- ``SchedulerParameters=sched_interval=2,bf_interval=2``: the scheduler looks every 2 s;
- ``KillWait=5``: between a job's SIGTERM and SIGKILL (default 30 s);
- no accounting database, so ``<dir>/bin/sacct`` stands in for ``sacct`` (submitit asks it for job
  states) by reading ``squeue -t all``: put ``<dir>/bin`` first on ``PATH``.
Job ids start at 1 again with a fresh ``<dir>``: give each sweep its own submitit folder.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd", "sinfo", "squeue", "scontrol")
SACCT = """#!/bin/sh
# sacct's answer for submitit, from squeue (no accounting database on this cluster): JobID|State|NodeList
jobs=""
while [ $# -gt 0 ]; do
  case "$1" in -j) jobs="$2"; shift;; -j*) jobs="${1#-j}";; esac
  shift
done
echo "JobID|State|NodeList"
exec squeue -h -t all ${jobs:+-j "$jobs"} -o "%i|%T|%N"
"""


class ClusterError(RuntimeError):
    """The cluster cannot be installed or started here; the message says why."""


def missing() -> str | None:
    """Why this machine cannot run the cluster (not root, programs missing), or None."""
    if os.geteuid() != 0:
        return "not root: slurmd runs jobs as their users and munged as the munge user"
    absent = [name for name in DAEMONS if shutil.which(name) is None]
    if absent:
        return f"{', '.join(absent)} not installed (python scripts/local_slurm.py install)"
    if subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0:
        return "a slurmctld runs here already: stop it, or point SLURM_CONF at its cluster"
    return None


def install() -> None:
    """``apt-get install`` the packages (a few MB; seconds)."""
    if shutil.which("apt-get") is None:
        raise ClusterError("no apt-get: install SLURM (slurmctld, slurmd, the client) and munge by hand")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *PACKAGES]):
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode:
            raise ClusterError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()[-500:]}")


def config(folder: Path) -> str:
    """``slurm.conf`` for one node: this host."""
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    memory = int(int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20) * 0.9)
    return "\n".join(
        [
            "ClusterName=local",
            f"SlurmctldHost={host}",
            "SlurmUser=root",
            "AuthType=auth/munge",
            "AuthInfo=cred_expire=5",
            f"StateSaveLocation={folder / 'state'}",
            f"SlurmdSpoolDir={folder / 'spool'}",
            f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
            f"SlurmdPidFile={folder / 'slurmd.pid'}",
            f"SlurmctldLogFile={folder / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={folder / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "SchedulerParameters=sched_interval=2,bf_interval=2",
            "KillWait=5",
            "MinJobAge=600",  # finished jobs stay in squeue -t all (the sacct stand-in) for 10 minutes
            "ReturnToService=2",
            "MpiDefault=none",
            f"NodeName={host} CPUs={cpus} RealMemory={memory} State=UNKNOWN",
            # Jobs share the cores (up to 4 on each), as the suite runs several at once on 2 cores
            f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4",
            "",
        ]
    )


def environment(folder: Path) -> dict[str, str]:
    """What a process needs to use the cluster: ``SLURM_CONF``, and ``PATH`` with the ``sacct`` stand-in."""
    return {"SLURM_CONF": str(folder / "slurm.conf"), "PATH": f"{folder / 'bin'}{os.pathsep}{os.environ['PATH']}"}


def start(folder: Path, timeout: float = 60) -> dict[str, str]:
    """Start the cluster with its files in ``folder``; return :func:`environment`. Raise
    :class:`ClusterError` with the reason when it cannot, or when the node is not idle in ``timeout``."""
    reason = missing()
    if reason:
        raise ClusterError(reason)
    folder = folder.resolve()
    for sub in ("state", "spool", "log", "bin"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "slurm.conf").write_text(config(folder))
    sacct = folder / "bin" / "sacct"
    sacct.write_text(SACCT)
    sacct.chmod(0o755)
    env = {**os.environ, **environment(folder)}
    pids = []
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode:  # not running yet
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
        time.sleep(0.5)
        pids.append(int(Path("/run/munge/munged.pid").read_text()))
    for daemon in ("slurmctld", "slurmd"):
        log = open(folder / "log" / f"{daemon}.out", "ab")
        process = subprocess.Popen(
            [daemon, "-D"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        pids.append(process.pid)
        (folder / "pids").write_text("\n".join(map(str, pids)) + "\n")
        if daemon == "slurmctld":
            time.sleep(1)  # slurmd registers with it
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        result = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
        state = result.stdout.strip()
        if state == "idle":
            return environment(folder)
        time.sleep(0.5)
    stop(folder)
    raise ClusterError(f"the node did not become idle in {timeout:.0f} s (state {state!r}); see {folder / 'log'}")


def stop(folder: Path) -> None:
    """Cancel the cluster's jobs still active (and wait, at most ``KillWait`` and a little, for their
    processes to end), then end the processes that :func:`start` started (recorded in
    ``<folder>/pids``), and wait for them."""
    pids_file = folder.resolve() / "pids"
    if not pids_file.is_file():
        return
    env = {**os.environ, **environment(folder.resolve())}
    if _active_jobs(env):
        subprocess.run(["scancel", "--full", *_active_jobs(env)], env=env, capture_output=True, timeout=30)
        deadline = time.monotonic() + 15
        while _active_jobs(env) and time.monotonic() < deadline:
            time.sleep(0.5)
    pids = [int(p) for p in pids_file.read_text().split()]
    for pid in reversed(pids):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15
    for pid in pids:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    pids_file.unlink()


def _active_jobs(env: dict[str, str]) -> list[str]:
    try:
        result = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return []
    return result.stdout.split() if result.returncode == 0 else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a child of this process that ended but was not reaped yet
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["install", "start", "stop"])
    parser.add_argument("folder", nargs="?", type=Path, help="the cluster's files (start, stop)")
    args = parser.parse_args()
    try:
        if args.command == "install":
            install()
            print(f"installed {' '.join(PACKAGES)}")
        elif args.folder is None:
            parser.error(f"{args.command} needs the cluster's folder, e.g. /tmp/slurm")
        elif args.command == "start":
            env = start(args.folder)
            bin_dir = args.folder.resolve() / "bin"
            print(f"one node idle; in your shell:\nexport SLURM_CONF={env['SLURM_CONF']} PATH={bin_dir}:$PATH")
        else:
            stop(args.folder)
            print("stopped")
    except ClusterError as err:
        sys.exit(f"local_slurm: {err}")


if __name__ == "__main__":
    main()
