"""A real one-node Slurm cluster for the tests (Debian's slurm-wlm and munge; `make test`
installs them as root where missing).

The session fixture `slurm_cluster` writes a munge key and a slurm.conf into a temporary folder
(the node is this machine with the CPUs and memory `slurmd -C` reports, one partition,
ProctrackType=proctrack/linuxproc, TaskPlugin=task/none, no accounting, free ports, a private
munge socket), starts munged, slurmctld and slurmd, waits until the node is idle, points
SLURM_CONF at the configuration for the session (the client commands and every subprocess read
it), and at the end cancels what is left and stops the three daemons by their pids. Where Slurm
cannot be installed or started, the tests that use it are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import pytest

# daemons live in /usr/sbin, which a non-login PATH may lack
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
IDLE_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SlurmCluster:
    """munged + slurmctld + slurmd on this machine, configured in `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "slurm.conf"
        self.processes: Dict[str, subprocess.Popen] = {}

    def configuration(self) -> str:
        node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True,
                              env=self.env())
        node_line = node.stdout.splitlines()[0]  # NodeName=<host> CPUs=... RealMemory=...
        host = node_line.split()[0].split("=", 1)[1]
        root = self.root
        return "\n".join([
            "ClusterName=panettest",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "AuthType=auth/munge",
            f"AuthInfo=socket={root / 'munge.socket'}",
            "CredType=cred/munge",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",  # cores only: jobs without --mem share the memory
            "MpiDefault=none",
            "ReturnToService=2",
            "MinJobAge=3600",  # finished jobs stay visible to scontrol for the whole session
            f"{node_line} NodeAddr=127.0.0.1 State=UNKNOWN",
            f"PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP",
            ""])

    def start(self) -> None:
        self.root.chmod(0o755)  # munged wants its socket's folder searchable by everyone
        for folder in ("state", "spool"):
            (self.root / folder).mkdir()
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.conf.write_text(self.configuration())
        root = self.root
        self._spawn("munged", ["munged", "--foreground", "--force", f"--key-file={key}",
                               f"--socket={root / 'munge.socket'}",
                               f"--pid-file={root / 'munged.pid'}",
                               f"--log-file={root / 'munged.log'}",
                               f"--seed-file={root / 'munged.seed'}"])
        self._wait_for(lambda: (root / "munge.socket").exists(), "munged to create its socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf)])
        self._wait_for(self.idle, "the node to become idle")

    def _spawn(self, name: str, argv: List[str]) -> None:
        log = open(self.root / f"{name}.out", "wb")
        self.processes[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, env=self.env())
        log.close()

    def env(self) -> Dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": SEARCH_PATH}

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), capture_output=True, text=True, env=self.env(),
                              timeout=60)

    def idle(self) -> bool:
        state = self.run("sinfo", "--noheader", "--format=%T")
        return state.returncode == 0 and state.stdout.strip() == "idle"

    def _wait_for(self, condition, what: str) -> None:
        deadline = time.monotonic() + IDLE_TIMEOUT
        while not condition():
            dead = [name for name, process in self.processes.items() if process.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"waiting for {what}: " + (f"{', '.join(dead)} exited; "
                                   if dead else "timed out; ") + self.log_tail())
            time.sleep(0.2)

    def log_tail(self) -> str:
        lines = []
        for name in DAEMONS:
            for log in (self.root / f"{name}.out", self.root / f"{name}.log"):
                if log.is_file():
                    lines += [f"{log.name}: {line}" for line in
                              log.read_text(errors="replace").splitlines()[-3:]]
        return " | ".join(lines)

    def job_field(self, job_id: str, field: str) -> str:
        """A field of `scontrol show job` (JobState, Restarts, JobName, ...)."""
        shown = self.run("scontrol", "show", "job", job_id).stdout
        for word in shown.split():
            if word.startswith(field + "="):
                return word.split("=", 1)[1]
        raise KeyError(f"{field} not in scontrol show job {job_id}: {shown}")

    def queued(self) -> List[str]:
        return self.run("squeue", "--noheader", "--format=%i").stdout.split()

    def stop(self) -> None:
        controller = self.processes.get("slurmctld")
        if controller is not None and controller.poll() is None and self.queued():
            self.run("scancel", *self.queued())  # jobs left by a failed test
            deadline = time.monotonic() + 30
            while self.queued() and time.monotonic() < deadline:
                time.sleep(0.5)
        for name in reversed(DAEMONS):
            process = self.processes.get(name)
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """The running one-node cluster (SLURM_CONF set for the session); skips where it cannot
    run."""
    if os.geteuid() != 0:
        pytest.skip("a test Slurm cluster needs root (munged, slurmd)")
    missing = [tool for tool in (*DAEMONS, *CLIENTS) if shutil.which(tool, path=SEARCH_PATH)
               is None]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing): as root, "
                    "`apt-get install slurm-wlm munge` (make test does it)")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        cluster.stop()
        pytest.skip(f"could not start a one-node Slurm cluster: {error}")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    yield cluster
    cluster.stop()
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous
