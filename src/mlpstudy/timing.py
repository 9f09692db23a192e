"""The conditions of one timed training loop, recorded beside its time.

:class:`LoopConditions` wraps the epoch loop (``backends/loop.py``) and adds to the run's
metrics (table columns in **bold**):

- **wall_cpu_ratio**: the loop's wall time over the process's CPU time in it (all
  threads). About 1 for a one-thread run that had its core to itself; above
  :data:`CONTENDED_WALL_CPU` means it waited for a CPU (another process ran on its core,
  or the hypervisor took it). A run with several busy threads can sit below 1, so for
  those read it together with ``others_cpu_s``.
- **steal_s**: CPU steal time (the hypervisor running someone else) over the loop, from
  ``/proc/stat``: summed over the CPUs the run was pinned to, or over the whole machine
  when it was not pinned (``steal_scope``: "pinned" | "machine").
- ``others_cpu_s``: CPU time that anything else spent on the run's pinned CPUs during the
  loop (their busy time in ``/proc/stat`` minus this process's CPU time; clock-tick
  resolution, so a few hundredths of a second are noise). None when not pinned.
- **pinned_cpus** (e.g. "1" or "2-3"), **timing_mode** ("strict" | "throughput"),
  ``reserve_used``, ``core_wait_s``: from the core allocation (``mlpstudy.cores``); all
  None / absent outside one (unit tests).
- **overlapping_runs**: how many other training loops ran on this machine at some point
  of this one, counted from the loop registry of ``mlpstudy.cores`` at the start, after
  every epoch and at the end (distinct loops). None outside an allocation.
- ``major_faults``: page faults of this process during the loop that had to read from
  disk (code or data not in the page cache): the loop waited for I/O.
- **cpu_mhz**: the clock of the (first) pinned CPU, the mean of its readings at the
  loop's start and end, from cpufreq (``scaling_cur_freq``) where the kernel has it, else
  ``/proc/cpuinfo``'s ``cpu MHz`` (in a VM often the nominal clock); ``cpu_mhz_source``
  says which ("cpufreq" | "cpuinfo"), None where neither is readable.
- **process_hugepage_share**: at the loop's end, the share of the process's anonymous
  memory on transparent huge pages (``mlpstudy.memory``).
- ``others_on_cores``: when ``others_cpu_s`` is not noise, who it probably was: the
  other tasks (threads of any process, kernel threads included) whose CPU time grew
  during the loop and that were last seen on its pinned CPUs, largest first, as
  ``"comm[pid] seconds"`` (from ``/proc/*/task/*/stat`` and ``schedstat``, read before
  and after the loop; a task that moved to another CPU by the end is missed).
- **probe_blas_s**, **probe_python_s**: the machine's speed on the loop's core while it
  ran: the seconds of two fixed reference kernels (``mlpstudy.speed.probe``: a small
  float32 product, an interpreter loop), the mean of their timings just before and just
  after the loop (outside its timers); ``probes`` has both timings. Runs whose times
  differ as their probes do differ by the machine, not by the code. Taken only where
  the loop is pinned (a workflow job), None elsewhere.

:func:`contention` is the one rule that says whether a loop was contended, from these
conditions; ``mlpstudy.jobs`` re-times a run whose loop was (docs/timing.md).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from . import cores, memory, speed

#: A loop whose wall time exceeds its CPU time by more than this was contended.
CONTENDED_WALL_CPU = 1.10
#: Others' CPU time on the run's cores, or steal, above this share of the loop's wall
#: time (plus :data:`TICK_NOISE_S`) means the loop was contended.
CONTENDED_SHARE = 0.03
#: ``/proc/stat`` counts in clock ticks (10 ms): this much of others' CPU is noise.
TICK_NOISE_S = 0.03
#: The names of the conditions that become table columns, in order.
COLUMNS = ("wall_cpu_ratio", "steal_s", "pinned_cpus", "overlapping_runs", "timing_mode")

_BUSY_FIELDS = (0, 1, 2, 5, 6)  # user nice system irq softirq (guest is inside user)
_STEAL_FIELD = 7


def cpu_times(path: str = "/proc/stat") -> dict[str, tuple[int, ...]]:
    """``/proc/stat``'s cpu lines: ``{"cpu": (...), "cpu0": (...), ...}`` in clock ticks."""
    found = {}
    try:
        with open(path) as fh:
            for line in fh:
                if not line.startswith("cpu"):
                    break
                name, *values = line.split()
                found[name] = tuple(int(v) for v in values)
    except OSError:
        pass
    return found


def _ticks(times: dict[str, tuple[int, ...]], rows: list[str], fields) -> int | None:
    try:
        return sum(times[row][i] for row in rows for i in fields)
    except (KeyError, IndexError):
        return None


class LoopConditions:
    """Context manager around a timed loop; call :meth:`epoch` after each epoch.

    The registration and ``/proc/stat`` reads are outside the loop's own timers when
    entered before and left after them; :meth:`epoch` costs a directory listing.
    """

    def __init__(self, allocation: cores.Allocation | None = None, stat_path: str = "/proc/stat"):
        self.allocation = allocation
        self.stat_path = stat_path
        self.pinned = list(allocation.cpus) if allocation else []
        self.registry = cores.LoopRegistry(allocation.lock_dir) if allocation else None
        self.seen: set[str] = set()
        self._start = self._end = None
        self._mhz: list[tuple[float | None, str | None]] = [(None, None)]
        self._hugepages: float | None = None
        self._tasks: dict | None = None
        self._suspects: list[str] | None = None
        self._probes: list[dict[str, float]] = []

    def _snapshot(self):
        return cpu_times(self.stat_path), time.process_time(), major_faults()

    def _look(self) -> None:
        if self.registry is not None:
            self.seen |= self.registry.others()

    def __enter__(self) -> LoopConditions:
        if self.registry is not None:
            self.registry.register()
        self._look()
        self._mhz = [cpu_mhz(self.pinned[0] if self.pinned else None)]
        self._tasks = task_times() if self.pinned else None
        if self.pinned:  # the speed of the loop's core, before it (outside its timers)
            self._probes.append(speed.probe())
        self._start = self._snapshot()
        return self

    def epoch(self) -> None:
        self._look()

    def __exit__(self, *exc) -> None:
        self._end = self._snapshot()
        try:
            if self.pinned and self._probes:  # and after it
                self._probes.append(speed.probe())
            self._mhz.append(cpu_mhz(self.pinned[0] if self.pinned else None))
            self._hugepages = memory.process_hugepage_share()
            if self._tasks is not None:
                self._suspects = others_on(self.pinned, self._tasks, task_times())
            self._look()
        finally:
            if self.registry is not None:
                self.registry.unregister()

    def metrics(self, wall_s: float, cpu_s: float) -> dict:
        """The conditions, given the loop's own wall and CPU time."""
        (stat0, cpu0, faults0), (stat1, cpu1, faults1) = self._start, self._end
        rows = [f"cpu{c}" for c in self.pinned] or ["cpu"]
        hz = os.sysconf("SC_CLK_TCK")
        steal0, steal1 = _ticks(stat0, rows, [_STEAL_FIELD]), _ticks(stat1, rows, [_STEAL_FIELD])
        others = None
        if self.pinned:
            busy0, busy1 = _ticks(stat0, rows, _BUSY_FIELDS), _ticks(stat1, rows, _BUSY_FIELDS)
            if busy0 is not None and busy1 is not None:
                others = max(0.0, (busy1 - busy0) / hz - (cpu1 - cpu0))
        alloc = self.allocation.metrics() if self.allocation else {}
        readings = [mhz for mhz, _ in self._mhz if mhz is not None]
        return {
            "wall_cpu_ratio": wall_s / cpu_s if cpu_s > 0 else None,
            "steal_s": (steal1 - steal0) / hz if None not in (steal0, steal1) else None,
            "steal_scope": "pinned" if self.pinned else "machine",
            "others_cpu_s": others,
            "pinned_cpus": alloc.get("pinned_cpus"),
            "overlapping_runs": len(self.seen) if self.registry is not None else None,
            "timing_mode": alloc.get("timing_mode"),
            "reserve_used": alloc.get("reserve_used"),
            "core_wait_s": alloc.get("core_wait_s"),
            "major_faults": None if None in (faults0, faults1) else faults1 - faults0,
            "cpu_mhz": sum(readings) / len(readings) if readings else None,
            "cpu_mhz_source": self._mhz[0][1],
            "process_hugepage_share": self._hugepages,
            "others_on_cores": self._suspects if others and others > TICK_NOISE_S else [],
            **{
                f"probe_{kernel}_s": (
                    statistics.mean(p[kernel] for p in self._probes) if self._probes else None
                )
                for kernel in speed.KERNELS
            },
            "probes": list(self._probes),
        }


def _criteria(metrics: dict) -> list[tuple[str, float, float]]:
    """(name, value, limit) of each recorded condition the contention rule checks."""
    wall = metrics.get("training_time_s") or 0.0
    limits = {
        "wall_cpu_ratio": CONTENDED_WALL_CPU,
        "others_cpu_s": CONTENDED_SHARE * wall + TICK_NOISE_S,
        "steal_s": CONTENDED_SHARE * wall + TICK_NOISE_S,
    }
    return [(k, metrics[k], v) for k, v in limits.items() if metrics.get(k) is not None]


def contention(metrics: dict) -> list[str]:
    """Why a timed loop was contended, from its recorded conditions; empty if it was not.

    The rule, the same everywhere (re-timing, aggregation, benchmarks): the loop waited
    for its CPU (``wall_cpu_ratio`` above :data:`CONTENDED_WALL_CPU`), or something else
    ran on its cores (``others_cpu_s``) or the hypervisor took them (``steal_s``) for more
    than :data:`CONTENDED_SHARE` of its wall time ``training_time_s`` plus
    :data:`TICK_NOISE_S`. A condition that was not recorded (None) counts as clean.
    """
    return [
        f"{name} {value:.2f} > {limit:.2f}"
        for name, value, limit in _criteria(metrics)
        if value > limit
    ]


def contention_score(metrics: dict) -> float:
    """How contended a loop was: the largest ratio of a checked condition to its limit
    (above 1: contended). Re-timing publishes the attempt with the lowest score when
    every attempt was contended."""
    return max((value / limit for _, value, limit in _criteria(metrics)), default=0.0)


def contended(metrics: dict) -> bool:
    """Whether :func:`contention` finds a reason."""
    return bool(contention(metrics))


def task_times(proc: str = "/proc") -> dict[int, tuple[str, int, int, int]]:
    """Every task on the machine: ``{tid: (comm, pid, last CPU, CPU time in ns)}``."""
    found = {}
    for task in Path(proc).glob("[0-9]*/task/[0-9]*"):
        try:
            stat = (task / "stat").read_text()
            runtime = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        try:
            found[int(task.name)] = (comm, int(task.parent.parent.name), int(fields[36]), runtime)
        except (ValueError, IndexError):
            continue
    return found


def others_on(cpus, before: dict, after: dict, pid: int | None = None, top: int = 5) -> list[str]:
    """The tasks of :func:`task_times` (not of process ``pid``, default this one) whose CPU
    time grew from ``before`` to ``after`` and that ended on one of ``cpus``, the ``top``
    largest first, as ``"comm[pid] seconds"``."""
    pid = os.getpid() if pid is None else pid
    cpus, grown = set(cpus), []
    for tid, (comm, owner, cpu, runtime) in after.items():
        spent = (runtime - before.get(tid, (comm, owner, cpu, 0))[3]) / 1e9
        if owner != pid and cpu in cpus and spent > 0:
            grown.append((spent, f"{comm}[{owner}]"))
    return [f"{name} {spent:.3f} s" for spent, name in sorted(grown, reverse=True)[:top]]


def major_faults(path: str = "/proc/self/stat") -> int | None:
    """This process's major page faults so far (field 12 of ``/proc/self/stat``)."""
    try:
        with open(path) as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[9])
    except (OSError, ValueError, IndexError):
        return None


def cpu_mhz(cpu: int | None = None, sysfs: str = cores.SYSFS_CPU, cpuinfo: str = "/proc/cpuinfo"):
    """(MHz, source) of ``cpu`` (default: the first one listed): cpufreq's current
    frequency, else ``/proc/cpuinfo``'s ``cpu MHz``; (None, None) if neither is readable."""
    if cpu is not None:
        try:
            khz = Path(sysfs, f"cpu{cpu}", "cpufreq", "scaling_cur_freq").read_text()
            return int(khz) / 1000, "cpufreq"
        except (OSError, ValueError):
            pass
    try:
        with open(cpuinfo) as fh:
            current = None
            for line in fh:
                name, _, value = line.partition(":")
                name = name.strip()
                if name == "processor":
                    current = int(value)
                elif name == "cpu MHz" and (cpu is None or current == cpu):
                    return float(value), "cpuinfo"
    except (OSError, ValueError):
        pass
    return None, None
