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
"""

from __future__ import annotations

import os
import time

from . import cores

#: A loop whose wall time exceeds its CPU time by more than this was contended.
CONTENDED_WALL_CPU = 1.10
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

    def _snapshot(self):
        return cpu_times(self.stat_path), time.process_time()

    def _look(self) -> None:
        if self.registry is not None:
            self.seen |= self.registry.others()

    def __enter__(self) -> LoopConditions:
        if self.registry is not None:
            self.registry.register()
        self._look()
        self._start = self._snapshot()
        return self

    def epoch(self) -> None:
        self._look()

    def __exit__(self, *exc) -> None:
        self._end = self._snapshot()
        try:
            self._look()
        finally:
            if self.registry is not None:
                self.registry.unregister()

    def metrics(self, wall_s: float, cpu_s: float) -> dict:
        """The conditions, given the loop's own wall and CPU time."""
        (stat0, cpu0), (stat1, cpu1) = self._start, self._end
        rows = [f"cpu{c}" for c in self.pinned] or ["cpu"]
        hz = os.sysconf("SC_CLK_TCK")
        steal0, steal1 = _ticks(stat0, rows, [_STEAL_FIELD]), _ticks(stat1, rows, [_STEAL_FIELD])
        others = None
        if self.pinned:
            busy0, busy1 = _ticks(stat0, rows, _BUSY_FIELDS), _ticks(stat1, rows, _BUSY_FIELDS)
            if busy0 is not None and busy1 is not None:
                others = max(0.0, (busy1 - busy0) / hz - (cpu1 - cpu0))
        alloc = self.allocation.metrics() if self.allocation else {}
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
        }


def contended(wall_cpu_ratio) -> bool:
    """Whether a loop's wall/CPU ratio says it waited for its CPU (the aggregation's report)."""
    return wall_cpu_ratio is not None and wall_cpu_ratio > CONTENDED_WALL_CPU
