"""Start and stop a real single-node SLURM cluster on this machine, for tests.

Plain functions, no pytest: `tests/test_slurm.py` and `.ci/run` use them, and so
can a person, through the command line:

    eval "$(python tests/slurm/cluster.py start --state /tmp/slurm-state)"  # exports SLURM_CONF, PATH
    sinfo; snakemake --profile profiles/slurm ...
    python tests/slurm/cluster.py stop --state /tmp/slurm-state

Everything the cluster writes (munge key and socket, slurm.conf, spool, state,
logs, pid files, an srun wrapper) lives in the state directory; nothing goes to
/etc. Clients find the configuration through `SLURM_CONF`, daemons through `-f`,
and munge runs on a private socket that slurm.conf names in `AuthInfo`, so a
system munged or SLURM, if there is one, is left alone. The daemons use two free
TCP ports and address each other as 127.0.0.1. No cgroup.conf is needed:
proctrack/linuxproc and task/none use no cgroups (checked with SLURM 22.05,
Debian 12).

`start` installs Debian's packages when they are missing (as root, through
apt-get) and returns the reason as a string instead of raising when SLURM
cannot be had here (not Linux, not root, no apt-get, install refused), so a test
can skip with it. Any later failure (a daemon dies, the node never becomes idle)
raises ClusterError naming the step and quoting the daemon's log, after stopping
what was started. `stop` ends the daemons by the process ids recorded at start,
and only if each id still runs the program that was started there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
# The programs the packages provide that we need; when all are on PATH,
# nothing is installed.
PROGRAMS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "srun", "scancel")
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
PARTITION = "debug"
APT_TIMEOUT_S = 300
IDLE_TIMEOUT_S = 60
STOP_TIMEOUT_S = 15
PIDS_FILE = "pids.json"
UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL


class ClusterError(RuntimeError):
    """A step of starting the cluster failed; the message names the step."""


@dataclass
class Cluster:
    state: Path
    conf: Path
    node: str
    partition: str
    pids: dict[str, int]

    @property
    def env(self) -> dict[str, str]:
        """The environment for SLURM clients (and Snakemake) to use this cluster."""
        return cluster_env(self.state)


def cluster_env(state: Path) -> dict[str, str]:
    """os.environ plus SLURM_CONF, and the srun wrapper (see write_srun_wrapper) first on PATH."""
    path = os.pathsep.join([str(state / "bin"), os.environ.get("PATH", "")])
    return {**os.environ, "SLURM_CONF": str(state / "slurm.conf"), "PATH": path}


# --------------------------------------------------------------------------- helpers


def _which(program: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    return shutil.which(program, path=path)


def _query(cmd: list[str], env: dict[str, str], timeout: float = 10) -> str:
    """stdout of a SLURM client command, or "" when it fails (while polling)."""
    try:
        return subprocess.run(
            cmd, check=False, capture_output=True, text=True, env=env, timeout=timeout
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return f"--- last lines of {path} ---\n{_tail(path.read_text(errors='replace'), lines)}"
    except OSError:
        return f"--- {path}: no log written ---"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _alive(pid: int) -> bool:
    """True while pid runs (a zombie counts as gone; reap it if it is our child)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # it ended in the meantime


def _is_ours(pid: int, program: str, state: Path) -> bool:
    """Whether pid still runs `program` started for this state dir (not a reused id)."""
    cmd = _cmdline(pid)
    return bool(cmd) and Path(cmd[0]).name == program and any(str(state) in a for a in cmd)


# --------------------------------------------------------------------------- steps


def unavailable_reason() -> str | None:
    """Why a SLURM cluster cannot be started here, or None when it can be tried."""
    if not sys.platform.startswith("linux"):
        return f"SLURM test cluster needs Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return "SLURM test cluster needs root (to install packages and run slurmd)"
    if all(_which(p) for p in PROGRAMS):
        return None
    if not shutil.which("apt-get"):
        missing = [p for p in PROGRAMS if not _which(p)]
        return f"SLURM is not installed ({', '.join(missing)} missing) and there is no apt-get"
    return None


def install_packages(log=print) -> str | None:
    """apt-get install the Debian packages when a program is missing.

    Returns a reason string when the packages cannot be had (apt refuses, no
    network); None when everything is installed.
    """
    missing = [p for p in PROGRAMS if not _which(p)]
    if not missing:
        return None
    log(f"installing {' '.join(PACKAGES)} (missing: {', '.join(missing)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Keep the packages' maintainer scripts from starting the system's munge and
    # slurm services (on a machine with systemd): only the daemons started here,
    # and stopped by stop(), may run. Debian's documented switch for that is a
    # policy-rc.d that exits 101; it is removed again right after the install.
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    if own_policy:
        policy.write_text("#!/bin/sh\n# tests/slurm/cluster.py: no service starts\nexit 101\n")
        policy.chmod(0o755)
    try:
        for cmd in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
        ):
            try:
                proc = subprocess.run(
                    cmd,
                    check=False,
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=APT_TIMEOUT_S,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"cannot install SLURM: `{' '.join(cmd)}` failed: {exc}"
            if proc.returncode != 0:
                return (
                    f"cannot install SLURM: `{' '.join(cmd)}` exited {proc.returncode}:\n"
                    f"{_tail(proc.stdout + proc.stderr, 10)}"
                )
    finally:
        if own_policy:
            policy.unlink(missing_ok=True)
    still = [p for p in PROGRAMS if not _which(p)]
    if still:
        return f"installed {' '.join(PACKAGES)} but {', '.join(still)} still missing"
    return None


def node_hardware() -> tuple[str, int]:
    """(slurm.conf node topology fields, RealMemory in MiB) of this machine.

    CPUs are the ones this process may run on. The socket/core/thread layout is
    taken from `slurmd -C` when it agrees on the CPU count, so SLURM does not
    flag the node as misconfigured. RealMemory is MemTotal less 5% (at least
    512 MiB) for the OS and the daemons: a node that claims more memory than it
    has is drained by slurmctld.
    """
    cpus = len(os.sched_getaffinity(0))
    topology = f"CPUs={cpus}"
    out = _query([_which("slurmd") or "slurmd", "-C"], dict(os.environ))
    fields = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
    if fields.get("CPUs") == str(cpus):
        keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
        topology = " ".join(f"{k}={fields[k]}" for k in keys if k in fields)
    meminfo = Path("/proc/meminfo").read_text()
    total_kib = int(
        next(line for line in meminfo.splitlines() if line.startswith("MemTotal:")).split()[1]
    )
    total_mib = total_kib // 1024
    return topology, total_mib - max(512, total_mib // 20)


def write_config(state: Path) -> tuple[Path, str]:
    """Write munge key and slurm.conf into `state`; return (slurm.conf path, node name)."""
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)  # munged refuses a key or socket in a group/world-writable dir
    for sub in ("munge", "spool", "ctld", "log"):
        (state / sub).mkdir(exist_ok=True, mode=0o700)
    socket_path = state / "munge" / "munge.socket"
    if len(str(socket_path)) > UNIX_PATH_MAX:
        raise ClusterError(
            f"write config: munge socket path {socket_path} is longer than "
            f"{UNIX_PATH_MAX} characters; use a shorter --state directory"
        )
    key = state / "munge" / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)

    node = socket.gethostname().split(".")[0]
    topology, real_memory = node_hardware()
    ctld_port, slurmd_port = _free_port(), _free_port()
    while slurmd_port == ctld_port:
        slurmd_port = _free_port()
    conf = state / "slurm.conf"
    conf.write_text(
        f"""\
# Single-node test cluster written by tests/slurm/cluster.py; do not edit.
ClusterName=mlpstudy-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket_path}
StateSaveLocation={state / "ctld"}
SlurmdSpoolDir={state / "spool"}
SlurmctldPidFile={state / "slurmctld.pid"}
SlurmdPidFile={state / "slurmd.pid"}
SlurmctldLogFile={state / "log" / "slurmctld.log"}
SlurmdLogFile={state / "log" / "slurmd.log"}
SlurmctldDebug=info
SlurmdDebug=info
# Known to work in containers: no cgroups, no task affinity plugin.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
# Schedule by CPU and memory, so mem_mb/threads requests are checked like on a
# real cluster (a job asking for more than the node has is refused).
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# Without accounting, finished jobs are only known to squeue for MinJobAge
# seconds; the executor plugin wants >= 3x its first status-check delay.
MinJobAge=600
ReturnToService=2
MailProg=/bin/true
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
NodeName={node} NodeAddr=127.0.0.1 NodeHostname={node} {topology} RealMemory={real_memory} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""
    )
    return conf, node


def write_srun_wrapper(state: Path, conf: Path) -> Path:
    """Put an `srun` into state/bin that sets SLURM_CONF, then runs the real srun.

    Inside a job, snakemake-executor-plugin-slurm-jobstep starts the rule with
    `srun`, but first removes every SLURM_* variable but the job's identity from
    the environment, SLURM_CONF included (plugin issue #164). On a real cluster
    srun then finds /etc/slurm/slurm.conf; this cluster keeps its slurm.conf out
    of /etc, so srun would fail with "Could not establish a configuration
    source". The job inherits PATH (sbatch --export=ALL), so this wrapper is the
    srun it runs; it is still the real srun talking to the real slurmd.
    """
    real = _which("srun")
    if not real:
        raise ClusterError("write srun wrapper: no srun on PATH")
    wrapper = state / "bin" / "srun"
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(
        "#!/bin/sh\n"
        "# Written by tests/slurm/cluster.py: see write_srun_wrapper() there.\n"
        f'SLURM_CONF="{conf}" exec "{real}" "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def _spawn(name: str, cmd: list[str], state: Path, env: dict[str, str]) -> int:
    """Start a daemon in the foreground of its own session; return its pid."""
    with open(state / "log" / f"{name}.out", "ab") as out:
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # survives the CLI; not hit by the terminal's ^C
                cwd=state,
            )
        except OSError as exc:
            raise ClusterError(f"start {name}: `{' '.join(cmd)}` failed: {exc}") from exc
    return proc.pid


def _record(state: Path, pids: dict[str, int]) -> None:
    (state / PIDS_FILE).write_text(json.dumps(pids, indent=1))


def _wait_for(check, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def _daemon_died(name: str, pid: int, state: Path) -> ClusterError:
    return ClusterError(
        f"start {name}: the daemon (pid {pid}) exited during start-up\n"
        f"{_log_tail(state / 'log' / f'{name}.out')}\n{_log_tail(state / 'log' / f'{name}.log')}"
    )


def start(state: Path | str, log=print) -> Cluster | str:
    """Start munged, slurmctld and slurmd for a one-node cluster kept in `state`.

    Returns the Cluster once `sinfo` shows the node idle; a reason string when
    SLURM cannot be had on this machine. Raises ClusterError (after stopping
    whatever it started) when a step fails.
    """
    state = Path(state).resolve()
    reason = unavailable_reason() or install_packages(log)
    if reason:
        return reason
    if (state / PIDS_FILE).exists() and any(
        _alive(pid) for pid in json.loads((state / PIDS_FILE).read_text()).values()
    ):
        raise ClusterError(f"start: a cluster from {state} is still running; stop it first")

    conf, node = write_config(state)
    write_srun_wrapper(state, conf)
    env = cluster_env(state)
    pids: dict[str, int] = {}
    t0 = time.monotonic()
    try:
        munge_dir = state / "munge"
        pids["munged"] = _spawn(
            "munged",
            [
                _which("munged"),
                "--foreground",
                "--force",  # run as root
                f"--key-file={munge_dir / 'munge.key'}",
                f"--socket={munge_dir / 'munge.socket'}",
                f"--pid-file={munge_dir / 'munged.pid'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
                f"--log-file={state / 'log' / 'munged.log'}",
            ],
            state,
            env,
        )
        _record(state, pids)
        if not _wait_for(
            lambda: (munge_dir / "munge.socket").exists() or not _alive(pids["munged"]), 15
        ) or not _alive(pids["munged"]):
            raise _daemon_died("munged", pids["munged"], state)

        pids["slurmctld"] = _spawn(
            "slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(conf)], state, env
        )
        _record(state, pids)
        _wait_for(
            lambda: not _alive(pids["slurmctld"]) or " is UP" in _query(["scontrol", "ping"], env),
            30,
        )
        if not _alive(pids["slurmctld"]):
            raise _daemon_died("slurmctld", pids["slurmctld"], state)

        pids["slurmd"] = _spawn(
            "slurmd", [_which("slurmd"), "-D", "-f", str(conf), "-N", node], state, env
        )
        _record(state, pids)

        def idle() -> bool:
            if not _alive(pids["slurmd"]) or not _alive(pids["slurmctld"]):
                return True
            return _query(["sinfo", "-h", "-N", "-n", node, "-o", "%t"], env).split() == ["idle"]

        _wait_for(idle, IDLE_TIMEOUT_S)
        for name in ("slurmctld", "slurmd"):
            if not _alive(pids[name]):
                raise _daemon_died(name, pids[name], state)
        states = _query(["sinfo", "-h", "-N", "-o", "%N %t %E"], env).strip()
        if states.split()[1:2] != ["idle"]:
            raise ClusterError(
                f"wait for idle node: after {IDLE_TIMEOUT_S}s sinfo shows {states!r}\n"
                f"{_log_tail(state / 'log' / 'slurmctld.log')}\n"
                f"{_log_tail(state / 'log' / 'slurmd.log')}"
            )
    except BaseException:
        stop(state, log=log)
        raise
    log(f"SLURM cluster up in {time.monotonic() - t0:.1f}s: node {node} idle, SLURM_CONF={conf}")
    return Cluster(state=state, conf=conf, node=node, partition=PARTITION, pids=pids)


def stop(state: Path | str, log=print) -> list[str]:
    """Cancel remaining jobs and stop the daemons recorded in `state`, by pid.

    Returns the names of the daemons that were stopped. Never raises for a
    daemon that is already gone; raises ClusterError if one survives SIGKILL.
    """
    state = Path(state).resolve()
    pids_file = state / PIDS_FILE
    if not pids_file.exists():
        return []
    pids: dict[str, int] = json.loads(pids_file.read_text())
    if pids.get("slurmctld") and _alive(pids["slurmctld"]) and _which("scancel"):
        # Jobs' slurmstepd processes are not our children: let slurmd end them.
        env = cluster_env(state)
        _query(["scancel", "--full", f"--partition={PARTITION}"], env)
        _wait_for(
            lambda: (
                not _query(["squeue", "-h", "-t", "RUNNING,COMPLETING", "-o", "%i"], env).strip()
            ),
            10,
        )
    stopped, survivors = [], []
    for name in ("slurmd", "slurmctld", "munged"):  # reverse start order
        pid = pids.get(name)
        if not pid or not _alive(pid):
            continue
        if not _is_ours(pid, name, state):
            log(f"stop: pid {pid} no longer runs {name} for {state}; left alone")
            continue
        _signal(pid, signal.SIGTERM)
        if not _wait_for(lambda pid=pid: not _alive(pid), STOP_TIMEOUT_S, 0.2):
            log(f"stop: {name} (pid {pid}) ignored SIGTERM for {STOP_TIMEOUT_S}s; SIGKILL")
            _signal(pid, signal.SIGKILL)
            if not _wait_for(lambda pid=pid: not _alive(pid), 5, 0.2):
                survivors.append(f"{name} (pid {pid})")
                continue
        stopped.append(name)
    if survivors:
        raise ClusterError(f"stop: still running after SIGKILL: {', '.join(survivors)}")
    pids_file.unlink()
    if stopped:
        log(f"SLURM cluster stopped: {', '.join(stopped)}")
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--state", required=True, type=Path, help="directory for all cluster state")
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    try:
        if args.action == "stop":
            stop(args.state, log=log)
            return 0
        result = start(args.state, log=log)
    except ClusterError as exc:
        log(f"error: {exc}")
        return 1
    if isinstance(result, str):
        log(f"SLURM unavailable: {result}")
        return 2
    env = result.env
    print(f"export SLURM_CONF={env['SLURM_CONF']}\nexport PATH={result.state / 'bin'}:$PATH")
    return 0


if __name__ == "__main__":
    sys.exit(main())
