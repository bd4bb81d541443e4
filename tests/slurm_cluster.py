"""A real single-host SLURM cluster for the tests: munged, slurmctld and two slurmd (nodes ``node1``
and ``node2``, 2 CPUs each, Debian's ``slurm-wlm`` 22.05 is built with multiple-slurmd support),
all in one temporary folder with their own ports and munge socket, so a system SLURM (if any) is
never touched. A requeued job waits for the credential lifetime before it starts again
(``cred_expire``, 120 s by default, 20 s here). ``SLURM_CONF`` in :attr:`SlurmCluster.env` points the client commands (``sbatch``,
``srun``, ``scancel``, submitit) at it.

The daemons run in the foreground as children of the test process and are stopped by process id
at the end of the session. Starting needs root (``SlurmUser=root``, jobs run as the submitter) and
the Debian packages ``slurm-wlm`` and ``munge`` (``.ci/run`` installs them); without them
:func:`start` returns the reason the tests skip with.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scancel", "scontrol", "sinfo")
NODES = ("node1", "node2")
CPUS_PER_NODE = 2


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _which(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.exists()), None)


SLURM_CONF = """\
ClusterName=ganlabtest
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket,cred_expire=20
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
MinJobAge=3600
JobRequeue=1
{nodes}
PartitionName=debug Nodes={node_list} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    root: Path
    env: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=check, timeout=timeout)

    def job_info(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (JobState, Restarts, ExitCode, ...)."""
        out = self.run("scontrol", "-o", "show", "job", str(job_id)).stdout
        return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)

    def jobs(self) -> list[str]:
        """Job ids (array tasks as ``<array>_<task>``) the controller knows, finished ones included."""
        out = self.run("squeue", "-h", "-t", "all", "-o", "%i").stdout
        return out.split()

    def wait_idle(self, timeout: float = 300) -> None:
        """Until no job is pending or running."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.run("squeue", "-h", "-t", "PD,R,CG,CF,RQ,RS,S").stdout.strip():
                return
            time.sleep(0.5)
        raise TimeoutError(f"SLURM jobs still running after {timeout} s:\n{self.run('squeue').stdout}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.root.glob("*.log")))

    def stop(self) -> None:
        """Cancel every job, let SLURM end them, stop the daemons (each by its process id), then
        kill what a job may have left (e.g. after a failed test): the processes whose environment
        holds this cluster's ``SLURM_CONF`` (job steps, ``slurmstepd``), found by process id."""
        subprocess.run(["scancel", "--full", "--user", "root"], env=self.env, capture_output=True, timeout=30)
        try:
            self.wait_idle(60)
        except Exception:  # noqa: BLE001 - stop anyway
            pass
        for p in reversed(self.procs):  # slurmd, slurmctld, then munged
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        for pid in self.job_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def job_processes(self) -> list[int]:
        """Processes (other than this one) started with this cluster's ``SLURM_CONF``."""
        mark = f"SLURM_CONF={self.env['SLURM_CONF']}".encode() + b"\0"
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                if mark in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
        return found


def unavailable() -> str | None:
    """Why a private cluster cannot start here (None: it can)."""
    missing = [d for d in DAEMONS if _which(d) is None]
    if missing:
        return (f"SLURM test cluster: {', '.join(missing)} not installed "
                "(apt-get install slurm-wlm munge, as .ci/run does)")
    if os.geteuid() != 0:
        return "SLURM test cluster: needs root (slurmd runs jobs as their submitter; SlurmUser=root)"
    return None


def start(root: Path, timeout: float = 60) -> SlurmCluster:
    """Write the configuration under ``root`` and start the daemons; raises with the daemons' logs
    when the nodes do not come up idle within ``timeout`` seconds."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # munged refuses group/world-writable folders
    (root / "state").mkdir(exist_ok=True)
    ctld_port, *node_ports = _free_ports(1 + len(NODES))
    nodes = "\n".join(f"NodeName={n} NodeHostname=localhost NodeAddr=127.0.0.1 Port={p} CPUs={CPUS_PER_NODE} "
                      "RealMemory=4000 State=UNKNOWN" for n, p in zip(NODES, node_ports))
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(root=root, ctld_port=ctld_port, nodes=nodes, node_list=",".join(NODES)))
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    for n in NODES:
        (root / "spool" / n).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    # Lightning's SLURM environment takes the first node name as MASTER_ADDR; node1/node2 are
    # names of this one host, which DNS does not know
    env["MASTER_ADDR"] = "127.0.0.1"
    for var in [v for v in env if v.startswith(("SLURM_", "SBATCH_", "SRUN_")) and v != "SLURM_CONF"]:
        env.pop(var)  # a test session that itself runs inside a SLURM job
    cluster = SlurmCluster(root, env)
    log = open(root / "daemons.out", "ab")

    def spawn(*cmd: str) -> None:
        cluster.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root))

    try:
        spawn(_which("munged"), "--foreground", "--force", f"--socket={root}/munge.socket", f"--key-file={key}",
              f"--log-file={root}/munged.log", f"--pid-file={root}/munged.pid", f"--seed-file={root}/munged.seed")
        _wait(lambda: (root / "munge.socket").exists(), 10, "munged did not create its socket", cluster)
        spawn(_which("slurmctld"), "-D", "-c", "-i", "-f", str(conf))
        for n in NODES:
            spawn(_which("slurmd"), "-D", "-f", str(conf), "-N", n)

        def idle() -> bool:
            r = cluster.run("sinfo", "-h", "-N", "-o", "%N %T", check=False, timeout=10)
            states = dict(line.split() for line in r.stdout.splitlines() if line.strip())
            return r.returncode == 0 and all(states.get(n) == "idle" for n in NODES)

        _wait(idle, timeout, "the nodes did not come up idle", cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait(cond, timeout: float, what: str, cluster: SlurmCluster) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        if any(p.poll() is not None for p in cluster.procs):
            break
        time.sleep(0.3)
    raise RuntimeError(f"SLURM test cluster: {what}\n{cluster.logs()}")
