"""Dedicated cores for timed training loops, shared by every job on one machine.

The study compares training *time*, so a run's timed loop must never share a core with
another training run, with Snakemake's own process or with the light jobs (aggregation,
figures, statistics). How this module makes that true:

- **Cores, not logical CPUs.** The usable CPUs (``os.sched_getaffinity``, so on a SLURM
  node the job's own CPU set) are grouped into physical cores (hyper-threads of one core
  together, from ``/sys/devices/system/cpu/cpu*/topology``): two runs on the two
  hyper-threads of one core would share it. A run with N threads gets N cores and is
  pinned to the first usable CPU of each; their sibling CPUs stay unused.
- **Locks, one per core,** in a per-machine directory (:func:`lock_dir`; on a cluster
  node ``/tmp`` is node-local), taken with ``fcntl.flock``: the kernel drops a lock when
  its process dies, so a killed job's core comes back by itself. Allocating several
  cores is done under one short-held ``alloc.lock``, and waiters queue in arrival order
  (one ticket file each), so a run needing two cores is not starved by one-core runs
  that keep taking each freed core.
- **The reserve.** Run locally (no ``SLURM_JOB_ID``), the lowest core of the usable set
  is kept for Snakemake and the light jobs, unless a run needs every core.
  :func:`confine_main_process` (called by the workflow in Snakemake's main process)
  pins Snakemake to the reserve, so every job it starts begins there too: the light jobs,
  and each training job's import, data loading and model set-up, overlap timed loops
  without touching their cores. A job takes its dedicated cores for its timed loop only:
  ``training.run_training`` builds a :class:`CoreRequest` and hands it down as an
  argument (``Backend.train(..., cores=)``, ``loop.run_epochs(..., cores=)``) to
  :func:`timed_loop`, which takes the cores when the loop starts and frees them when it
  ends. The set the main process could use is published in ``MLPSTUDY_CPUS`` so a
  training job knows which cores it may take.
- **Idle cores are lent.** A dedicated core that no timed loop holds or waits for is
  lent to the untimed work of one job (:func:`borrow_idle_cores`, called by each job at
  its start): the job holds that core's lock, so no loop starts there, and moves every
  thread back to the reserve before it lets go, as soon as a loop waits. A job's
  borrowing ends when its timed loop starts.
- **Every thread is pinned.** ``os.sched_setaffinity(0, ...)`` pins only the calling
  thread; :func:`pin_process` pins every thread of ``/proc/self/task`` (threads created
  later inherit), and the previous affinity comes back when the allocation ends.

Modes (the config's ``timing``): ``"strict"`` waits, untimed, until the cores are free;
``"throughput"`` neither waits nor pins (runs may share cores: contended timings, and
the table says so). ``None``: no allocation at all (unit tests, direct calls).

Every timed loop also registers itself in the lock directory while it runs
(:class:`LoopRegistry`), so a run can count the other training loops that overlapped it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("strict", "throughput")
#: Overrides the lock directory (tests; several independent studies on one machine).
LOCK_DIR_ENV = "MLPSTUDY_CORES_DIR"
#: ``<hostname>:<cpu list>``: the CPUs Snakemake's main process could use before it
#: confined itself to the reserve (set by :func:`confine_main_process`).
CPUS_ENV = "MLPSTUDY_CPUS"
SYSFS_CPU = "/sys/devices/system/cpu"
POLL_S = 0.05  # how often a waiting run looks for free cores

# Whether this process holds an allocation now. Not how a loop finds its cores (they
# are passed to it: timed_loop's argument) but a guard for exclusive(): pinning is
# per-process state (every thread's affinity), and a second exclusive() inside a first
# would pin over it and, strict with no other core free, wait forever for a core this
# very process holds (flock locks belong to open files, not processes).
_holding = False


# --------------------------------------------------------------------------- CPU lists


def format_cpus(cpus: Iterable[int]) -> str:
    """``{0, 2, 3}`` -> ``"0,2-3"`` (the kernel's cpu list format)."""
    cpus, parts = sorted(set(cpus)), []
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        parts.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(parts)


def parse_cpus(text: str) -> set[int]:
    """``"0,2-3"`` -> ``{0, 2, 3}``."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


# --------------------------------------------------------------------------- topology


def under_slurm() -> bool:
    return "SLURM_JOB_ID" in os.environ


def usable_cpus() -> set[int]:
    """The CPUs this process may take: its affinity, plus what Snakemake's main process
    could use before it confined itself (``MLPSTUDY_CPUS``, honoured on the same host
    and outside SLURM only: a SLURM job's CPU set is its allocation)."""
    cpus = set(os.sched_getaffinity(0))
    host, _, published = os.environ.get(CPUS_ENV, "").partition(":")
    if published and host == socket.gethostname() and not under_slurm():
        cpus |= parse_cpus(published)
    return cpus


def cpu_cores(cpus: Iterable[int], sysfs: str | os.PathLike = SYSFS_CPU) -> list[tuple[int, ...]]:
    """``cpus`` grouped by physical core, each core's CPUs sorted, cores by lowest CPU.

    A core's hyper-threads are one entry. Without topology information, each CPU is a core.
    """
    cpus = set(cpus)
    cores: dict[int, set[int]] = {}
    for cpu in sorted(cpus):
        siblings = {cpu}
        for name in ("core_cpus_list", "thread_siblings_list"):
            try:
                siblings = parse_cpus(Path(sysfs, f"cpu{cpu}", "topology", name).read_text())
                break
            except (OSError, ValueError):
                continue
        # The key is the lowest sibling machine-wide, so that two jobs with different
        # CPU sets agree on the name of a core's lock.
        cores.setdefault(min(siblings | {cpu}), set()).add(cpu)
    return [tuple(sorted(cores[key])) for key in sorted(cores)]


def _core_key(core: tuple[int, ...], sysfs: str | os.PathLike = SYSFS_CPU) -> int:
    for name in ("core_cpus_list", "thread_siblings_list"):
        try:
            return min(parse_cpus(Path(sysfs, f"cpu{core[0]}", "topology", name).read_text()))
        except (OSError, ValueError):
            continue
    return core[0]


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Layout:
    """How a set of usable cores is split: the reserve (or none) and the dedicated ones."""

    cores: tuple[tuple[int, ...], ...]
    reserve: tuple[int, ...] | None

    @property
    def dedicated(self) -> tuple[tuple[int, ...], ...]:
        return tuple(c for c in self.cores if c != self.reserve)


def layout(cpus: Iterable[int] | None = None, local: bool | None = None) -> Layout:
    """The reserve is the lowest core, kept only locally and when there are two or more."""
    cores = tuple(cpu_cores(usable_cpus() if cpus is None else cpus))
    local = (not under_slurm()) if local is None else local
    return Layout(cores, cores[0] if local and len(cores) > 1 else None)


def training_slots(mode: str, cpus: Iterable[int] | None = None, local: bool = True) -> int:
    """Capacity of the workflow's ``training_slots`` resource on this machine: its cores.

    strict: the dedicated cores + the reserve, so one more job than there are timed
    loops: the next job's import and data loading (confined to the reserve) overlap
    the running loops. throughput: one job per core, sharing it with whatever else runs.
    The modes differ in what a job claims (:func:`slots_claimed`) and in the waiting and
    pinning (:func:`exclusive`), not in the capacity.
    """
    check_mode(mode)
    return len(layout(cpus, local).cores)


def slots_claimed(
    threads: int, mode: str, cpus: Iterable[int] | None = None, local: bool = True
) -> int:
    """How many ``training_slots`` a training job with ``threads`` threads claims.

    ``threads`` slots, capped at the capacity; in strict mode a run that needs more
    cores than are dedicated takes the reserve too, so it claims every slot (it runs
    alone: no other job's import then shares its cores).
    """
    capacity = training_slots(mode, cpus, local)
    if mode == "strict" and threads > len(layout(cpus, local).dedicated):
        return capacity
    return min(threads, capacity)


def check_mode(mode: str | None) -> None:
    if mode is not None and mode not in MODES:
        raise ValueError(f"timing mode must be one of {MODES} or None, got {mode!r}")


# --------------------------------------------------------------------------- pinning


def thread_ids() -> list[int]:
    return sorted(int(tid) for tid in os.listdir("/proc/self/task"))


def thread_affinities() -> dict[int, set[int]]:
    """Affinity of every thread of this process."""
    found = {}
    for tid in thread_ids():
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):
            found[tid] = set(os.sched_getaffinity(tid))
    return found


def pin_process(cpus: Iterable[int]) -> None:
    """Pin every thread of this process to ``cpus`` (threads created later inherit it).

    Repeats until no new thread appeared meanwhile (one being created while we list
    inherits its creator's affinity, which may not have been pinned yet).
    """
    cpus, done = set(cpus), set()
    while True:
        todo = [tid for tid in thread_ids() if tid not in done]
        if not todo:
            return
        for tid in todo:
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                os.sched_setaffinity(tid, cpus)
            done.add(tid)


def confine_main_process(mode: str | None) -> tuple[int, ...] | None:
    """In Snakemake's main process (local, strict): pin it to the reserve core.

    Every job Snakemake starts then inherits that affinity: light jobs stay on the
    reserve, and a training job leaves it only for its timed part, onto cores allocated
    by :func:`exclusive`. Publishes the usable CPUs in ``MLPSTUDY_CPUS`` for the jobs.
    Returns the reserve's CPUs, or None when nothing was done (throughput mode, under
    SLURM, a single core).
    """
    check_mode(mode)
    if mode != "strict" or under_slurm():
        return None
    cpus = usable_cpus()
    plan = layout(cpus, local=True)
    if plan.reserve is None:
        return None
    os.environ[CPUS_ENV] = f"{socket.gethostname()}:{format_cpus(cpus)}"
    pin_process(plan.reserve)
    return plan.reserve


# --------------------------------------------------------------------------- locks


def lock_dir(path: str | os.PathLike | None = None) -> Path:
    """The machine's lock directory: ``$MLPSTUDY_CORES_DIR`` or ``/tmp/mlpstudy-cores-<uid>``.

    ``/tmp`` (not ``$TMPDIR``, which clusters often set per job) so that every job on a
    machine finds the same one. Created private (0700); refused if it is a symlink or
    someone else's.
    """
    path = Path(path or os.environ.get(LOCK_DIR_ENV) or f"/tmp/mlpstudy-cores-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeError(f"{path} is not a directory of this user: refusing it as lock dir")
    return path


def _locked_file(directory: Path, name: str) -> int:
    """Create ``name`` already holding an exclusive flock (created under a temporary name
    and renamed, so a file under its final name is always locked while its owner lives)."""
    tmp = directory / f".{name}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(tmp, directory / name)
    return fd


def _is_live(path: Path) -> bool | None:
    """Whether ``path``'s owner holds its lock; a dead owner's file is removed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def _held(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class LoopRegistry:
    """Timed loops running on this machine: each holds a locked ``loop-*.run`` file."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = lock_dir(directory)
        self.name: str | None = None
        self._fd: int | None = None

    def register(self) -> None:
        self.name = f"loop-{os.getpid()}-{secrets.token_hex(4)}.run"
        self._fd = _locked_file(self.directory, self.name)

    def unregister(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / self.name).unlink()
            os.close(self._fd)
            self._fd = None

    def others(self) -> set[str]:
        """Names of the other loops running now (stale files of killed runs are removed)."""
        return {
            path.name
            for path in self.directory.glob("loop-*.run")
            if path.name != self.name and _is_live(path)
        }


# --------------------------------------------------------------------------- borrowing


def _loop_waiting(directory: Path) -> bool:
    """Whether a timed loop waits for cores now (a live queue ticket)."""
    return any(_is_live(path) for path in directory.glob("wait-*.ticket"))


class Borrow:
    """An idle dedicated core lent to this process's untimed work (strict, run locally).

    Every job Snakemake starts in strict mode begins on the reserve core, where Snakemake
    runs too: the light jobs whole, and each training job's import, data loading and
    model build. When no timed loop holds a dedicated core or waits for one, that core
    would stay idle while two jobs share the reserve. A Borrow (a background thread)
    takes such a core's lock, the very lock a timed loop takes, so no loop can run there
    meanwhile, and lets every thread of this process use that core besides the reserve.
    As soon as any timed loop waits (a live queue ticket), it moves every thread back to
    the reserve first and then releases the lock: the waiter gets the core within one
    poll and never shares it. It borrows again once no loop waits.

    One core per process (Snakemake runs as many jobs as ``--cores``: each borrower gets
    a core of its own, and the reserve stays for Snakemake). Child processes are not
    moved back with their parent: spawn them inside :meth:`paused`. ``pin=False`` takes
    and releases the locks without pinning (tests on a fake CPU set).
    """

    def __init__(
        self,
        plan: Layout,
        directory: Path,
        *,
        poll_s: float = POLL_S,
        pin: bool = True,
    ):
        self.plan = plan
        self.directory = directory
        self.poll_s = poll_s
        self.pin = pin
        self.core: tuple[int, ...] | None = None
        self._fd: int | None = None
        self._paused = 0
        self._state = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlpstudy-borrow", daemon=True)

    def start(self) -> Borrow:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._state:
                if self._stop.is_set():
                    break
                if self._fd is None and not self._paused:
                    self._try_borrow()
                elif self._fd is not None and _loop_waiting(self.directory):
                    self._give_back()
            self._stop.wait(self.poll_s)

    def _try_borrow(self) -> None:
        with _held(self.directory / "alloc.lock"):
            if _loop_waiting(self.directory):
                return
            taken = _take(self.directory, list(self.plan.dedicated), 1)
        if taken:
            [(self.core, self._fd)] = taken
            if self.pin:
                pin_process(set(self.plan.reserve) | set(self.core))

    def _give_back(self) -> None:
        if self.pin:
            pin_process(self.plan.reserve)
        os.close(self._fd)
        self._fd = self.core = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The body runs on the reserve only, with no core borrowed (e.g. to spawn a child)."""
        with self._state:
            self._paused += 1
            if self._fd is not None:
                self._give_back()
        try:
            yield
        finally:
            with self._state:
                self._paused -= 1

    def stop(self) -> None:
        """Give the core back (every thread on the reserve again) and end the thread."""
        self._stop.set()
        with self._state:
            if self._fd is not None:
                self._give_back()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()


# This process's Borrow, if any: like _holding, process state (the affinity of every
# thread), which exclusive() must end before it pins the process to a loop's cores.
_borrow: Borrow | None = None


def borrow_idle_cores(
    *, directory: str | os.PathLike | None = None, poll_s: float = POLL_S
) -> Borrow | None:
    """Called by each job at its start: lend it an idle dedicated core (:class:`Borrow`)
    until its timed loop starts (:func:`exclusive` ends it) or it exits.

    Only where Snakemake confined itself to the reserve (strict, local: ``MLPSTUDY_CPUS``
    published for this host, not under SLURM) and there is a dedicated core. Returns the
    Borrow, or None where nothing is lent.
    """
    global _borrow
    if _borrow is not None:
        return _borrow
    host, _, published = os.environ.get(CPUS_ENV, "").partition(":")
    if not published or host != socket.gethostname() or under_slurm():
        return None
    plan = layout(usable_cpus(), local=True)
    if plan.reserve is None or not plan.dedicated:
        return None
    _borrow = Borrow(plan, lock_dir(directory), poll_s=poll_s).start()
    return _borrow


def end_borrowing() -> None:
    """Give back this process's borrowed core, if any, and lend it none any more."""
    global _borrow
    if _borrow is not None:
        _borrow.stop()
        _borrow = None


@contextlib.contextmanager
def borrowing_paused() -> Iterator[None]:
    """The body runs with no core borrowed (a child process spawned in it stays on the
    reserve, as it would without borrowing)."""
    if _borrow is None:
        yield
        return
    with _borrow.paused():
        yield


# --------------------------------------------------------------------------- allocation


@dataclass
class Allocation:
    """What a run got: its mode, the CPUs its threads are pinned to (empty: not pinned),
    whether it shares Snakemake's reserve core, how long it waited for its cores."""

    mode: str
    threads: int
    cpus: tuple[int, ...] = ()
    reserve_used: bool = False
    waited_s: float = 0.0
    usable: tuple[int, ...] = ()
    lock_dir: Path | None = None
    _fds: list[int] = field(default_factory=list, repr=False)

    def metrics(self) -> dict:
        return {
            "timing_mode": self.mode,
            "pinned_cpus": format_cpus(self.cpus) or None,
            "reserve_used": self.reserve_used,
            "core_wait_s": self.waited_s,
        }


@dataclass(frozen=True)
class CoreRequest:
    """The cores a timed loop is to take when it starts: ``threads`` of them, ``mode``
    as in :func:`exclusive` (None: no allocation). Built by ``training.run_training``;
    the set-up before the loop and the wrap-up after it stay where the job started."""

    threads: int
    mode: str | None

    def __post_init__(self):
        check_mode(self.mode)


#: What a timed loop is handed (``cores=`` of ``Backend.train`` and ``loop.run_epochs``):
#: cores to take when it starts, or an allocation its caller holds already (tests).
LoopCores = CoreRequest | Allocation


@contextlib.contextmanager
def timed_loop(cores: LoopCores | None) -> Iterator[Allocation | None]:
    """The timed loop's allocation: a :class:`CoreRequest`'s cores, taken now (waiting,
    untimed, in strict mode) and freed on exit; an :class:`Allocation` as it is (its
    holder frees it); None for None."""
    if isinstance(cores, CoreRequest):
        with exclusive(cores.threads, cores.mode) as allocation:
            yield allocation
    else:
        yield cores


class _Queue:
    """Waiters in arrival order: a locked ticket file each, the oldest live one first."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.name = f"wait-{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(2)}.ticket"
        self._fd = _locked_file(directory, self.name)

    def is_first(self) -> bool:
        ahead = sorted(p for p in self.directory.glob("wait-*.ticket") if p.name < self.name)
        return not any(_is_live(p) for p in ahead)

    def leave(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / self.name).unlink()
        os.close(self._fd)


def _take(directory: Path, candidates: list[tuple[int, ...]], n: int) -> list | None:
    """Lock ``n`` free cores among ``candidates`` (lowest first): [(core, fd)], or None."""
    taken = []
    for core in candidates:
        fd = _try_lock(directory / f"core-{_core_key(core)}.lock")
        if fd is not None:
            taken.append((core, fd))
            if len(taken) == n:
                return taken
    for _, fd in taken:
        os.close(fd)
    return None


@contextlib.contextmanager
def exclusive(
    threads: int,
    mode: str | None,
    *,
    cpus: Iterable[int] | None = None,
    local: bool | None = None,
    directory: str | os.PathLike | None = None,
    pin: bool = True,
    poll_s: float = POLL_S,
) -> Iterator[Allocation | None]:
    """Give the body ``threads`` cores of its own (strict), or record the mode (throughput).

    strict: waits (untimed, in arrival order with other waiters) until ``threads`` cores
    are free, pins every thread of the process to them, yields the :class:`Allocation`,
    and on exit restores each thread's affinity and frees the cores. The reserve
    (:func:`layout`) is used only when the dedicated cores are too few for ``threads``
    (``reserve_used``, also true for the only core of a local machine). Waiters are
    served in arrival order, without backfilling: a later one-core run does not overtake
    an earlier two-core one. throughput: no waiting, no pinning. None: yields None.

    ``cpus``, ``local``, ``directory`` and ``pin=False`` are for tests (a fake CPU set).
    """
    global _holding
    check_mode(mode)
    if mode is None:
        yield None
        return
    if _holding:
        raise RuntimeError("exclusive() does not nest: this process already holds cores")
    end_borrowing()  # the untimed work is over: every thread back where the job started
    usable = sorted(usable_cpus() if cpus is None else set(cpus))
    directory = lock_dir(directory)
    alloc = Allocation(mode, threads, usable=tuple(usable), lock_dir=directory)
    previous = thread_affinities() if pin else {}
    caller = threading.get_native_id()
    try:
        if mode == "strict":
            local = (not under_slurm()) if local is None else local
            plan = layout(usable, local)
            want = min(threads, len(plan.cores))
            candidates = list(plan.dedicated)
            if want > len(candidates):
                candidates.append(plan.reserve)
            started = time.perf_counter()
            queue = _Queue(directory)
            try:
                while True:
                    if queue.is_first():
                        with _held(directory / "alloc.lock"):
                            taken = _take(directory, candidates, want)
                        if taken:
                            break
                    time.sleep(poll_s)
            finally:
                queue.leave()
            alloc.waited_s = time.perf_counter() - started
            alloc._fds = [fd for _, fd in taken]
            cores = sorted(core for core, _ in taken)
            # a single core, locally, is Snakemake's too: as good as the reserve
            alloc.reserve_used = plan.reserve in cores or (local and len(plan.cores) == 1)
            # one CPU per core; more threads than cores: every CPU of those cores
            per_core = cores if threads > len(cores) else [core[:1] for core in cores]
            alloc.cpus = tuple(cpu for core in per_core for cpu in core)
            if pin:
                pin_process(alloc.cpus)
        _holding = True
        yield alloc
    finally:
        _holding = False
        if pin and alloc.cpus:
            fallback = previous.get(caller, set(usable))
            for tid in thread_ids():
                with contextlib.suppress(ProcessLookupError, FileNotFoundError, OSError):
                    os.sched_setaffinity(tid, previous.get(tid, fallback))
        for fd in alloc._fds:
            os.close(fd)
        alloc._fds = []
