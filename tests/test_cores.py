"""The core allocator (mlpstudy.cores): exclusive cores across processes, the reserve,
a killed job's core coming back, SLURM-like CPU sets, pinning of every thread.

Every test uses its own lock directory, so it never waits for (or blocks) a real sweep
running on the same machine. Tests that need more CPUs than this machine has use a fake
CPU set with ``pin=False``: the allocation logic is the same, only the pinning is skipped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mlpstudy import cores

REAL_CPUS = sorted(os.sched_getaffinity(0))
SRC = str(Path(__file__).resolve().parents[1] / "src")
needs_two_cpus = pytest.mark.skipif(len(REAL_CPUS) < 2, reason="needs 2 usable CPUs")


def python(code: str, *, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """A child Python running ``code`` with this repository's src/ importable, outside
    SLURM and any sweep's confinement unless ``env`` says otherwise."""
    base = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", cores.CPUS_ENV)}
    full_env = {**base, "PYTHONPATH": SRC, **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        stdout=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for_line(proc: subprocess.Popen, timeout: float = 60) -> str:
    """The child's next stdout line (fails the test instead of hanging)."""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert result and result[0], f"no line from child {proc.pid} within {timeout} s"
    return result[0].strip()


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


# --------------------------------------------------------------------------- CPU lists


@pytest.mark.parametrize(
    "cpus, text", [({1}, "1"), ({2, 3}, "2-3"), ({0, 2, 3, 4, 7}, "0,2-4,7"), (set(), "")]
)
def test_cpu_lists_round_trip(cpus, text):
    assert cores.format_cpus(cpus) == text
    assert cores.parse_cpus(text) == cpus


def fake_sysfs(tmp_path: Path, siblings: dict[int, str]) -> Path:
    for cpu, text in siblings.items():
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "core_cpus_list").write_text(text + "\n")
    return tmp_path


def test_hyperthreads_of_one_core_are_one_core(tmp_path):
    # 4 cores x 2 threads, numbered like Linux does: cpu N and N+4 share a core
    sysfs = fake_sysfs(tmp_path, {c: f"{c % 4},{c % 4 + 4}" for c in range(8)})
    assert cores.cpu_cores(range(8), sysfs) == [(0, 4), (1, 5), (2, 6), (3, 7)]
    # a CPU set holding one thread of a core: the core is still known by its lowest CPU
    assert cores.cpu_cores({5, 2, 6}, sysfs) == [(5,), (2, 6)]


def test_without_topology_each_cpu_is_a_core(tmp_path):
    assert cores.cpu_cores({3, 1}, tmp_path / "none") == [(1,), (3,)]


# --------------------------------------------------------------------------- the plan


def test_reserve_is_the_lowest_core_locally_only():
    local = cores.layout({4, 5, 6}, local=True)
    assert local.reserve == (4,) and local.dedicated == ((5,), (6,))
    assert cores.layout({4, 5, 6}, local=False).reserve is None
    assert cores.layout({4}, local=True).reserve is None  # nothing to reserve on one core


def test_slots_let_one_job_prepare_while_the_dedicated_cores_run_loops():
    two, eight = {0, 1}, set(range(8))
    assert cores.training_slots("strict", two) == 2  # 1 dedicated + 1 preparing
    assert cores.training_slots("strict", eight) == 8  # 7 + 1
    assert cores.training_slots("strict", {0}) == 1  # no reserve: nothing can overlap
    assert cores.training_slots("throughput", eight) == 8
    assert cores.slots_claimed(1, "strict", {0}) == 1
    assert cores.slots_claimed(1, "strict", eight) == 1
    assert cores.slots_claimed(2, "strict", eight) == 2
    # needs the reserve too: takes every slot, so nothing prepares beside it
    assert cores.slots_claimed(2, "strict", two) == 2
    assert cores.slots_claimed(8, "strict", eight) == 8
    assert cores.slots_claimed(16, "throughput", eight) == 8  # never above the capacity


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="timing mode"):
        with cores.exclusive(1, "fast"):
            pass
    with pytest.raises(ValueError, match="timing mode"):
        cores.CoreRequest(1, "fast")  # before the job imports its framework


# --------------------------------------------------------------------------- exclusivity

HOLDER = """
    import json, os, sys, time
    from mlpstudy import cores
    cpus, hold, mode = {cpus!r}, {hold!r}, {mode!r}
    for _ in range({rounds}):
        with cores.exclusive(1, mode, cpus=cpus, local=True, directory={dir!r}, pin=False) as a:
            start = time.monotonic()
            time.sleep(hold)
            print(json.dumps([a.cpus, a.reserve_used, start, time.monotonic()]), flush=True)
"""


def test_concurrent_jobs_never_share_a_core_and_leave_the_reserve(tmp_path):
    """Four processes, three rounds each, on a fake 3-core set: two dedicated cores."""
    procs = [
        python(HOLDER.format(cpus={0, 1, 2}, hold=0.05, mode="strict", rounds=3, dir=str(tmp_path)))
        for _ in range(4)
    ]
    held = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        held += [json.loads(line) for line in out.splitlines()]
    assert len(held) == 12
    by_cpu: dict[int, list] = {}
    for cpus, reserve_used, start, end in held:
        assert len(cpus) == 1 and cpus[0] in (1, 2) and not reserve_used  # 0 is the reserve
        by_cpu.setdefault(cpus[0], []).append((start, end))
    for cpu, intervals in by_cpu.items():
        intervals.sort()
        for (_, end), (start, _) in zip(intervals, intervals[1:]):
            assert start >= end, f"CPU {cpu} held by two jobs at once"


def test_throughput_mode_neither_waits_nor_pins(tmp_path):
    with cores.exclusive(2, "strict", cpus={0, 1}, local=True, directory=tmp_path, pin=False):
        # every core is taken; a throughput run still starts at once
        child = python(
            HOLDER.format(cpus={0, 1}, hold=0, mode="throughput", rounds=1, dir=str(tmp_path))
        )
        out, _ = child.communicate(timeout=60)
    cpus, reserve_used, *_ = json.loads(out)
    assert cpus == [] and not reserve_used


def test_a_run_needing_every_core_takes_the_reserve_and_says_so(tmp_path):
    with cores.exclusive(
        3, "strict", cpus={0, 1, 2}, local=True, directory=tmp_path, pin=False
    ) as a:
        assert a.cpus == (0, 1, 2) and a.reserve_used
        assert a.metrics()["pinned_cpus"] == "0-2"
    with cores.exclusive(
        2, "strict", cpus={0, 1, 2}, local=True, directory=tmp_path, pin=False
    ) as a:
        assert a.cpus == (1, 2) and not a.reserve_used
    # more threads than cores: every CPU of the cores it got
    with cores.exclusive(5, "strict", cpus={0, 1}, local=False, directory=tmp_path, pin=False) as a:
        assert a.cpus == (0, 1)


def test_exclusive_does_not_nest(tmp_path):
    with cores.exclusive(1, "throughput", directory=tmp_path):
        with pytest.raises(RuntimeError, match="does not nest"):
            with cores.exclusive(1, "throughput", directory=tmp_path):
                pass
    with cores.exclusive(1, "throughput", directory=tmp_path) as again:  # held no more
        assert again.mode == "throughput"


def test_a_killed_jobs_core_comes_back_and_its_queue_ticket_does_not_block(tmp_path):
    """SIGKILL a holder and a waiter: the kernel drops their locks, the next run gets in."""
    spec = dict(cpus={0, 1}, hold=3600, mode="strict", rounds=1, dir=str(tmp_path))
    procs = []

    def start(code: str, queued: int | None = None) -> subprocess.Popen:
        procs.append(python(code))
        while queued is not None and len(list(tmp_path.glob("wait-*.ticket"))) < queued:
            assert procs[-1].poll() is None
            time.sleep(0.02)
        return procs[-1]

    try:
        holder = start(HOLDER.format(**spec).replace("time.sleep", "print(0, flush=1); time.sleep"))
        assert wait_for_line(holder) == "0"  # it holds CPU 1, the only dedicated core
        dead_waiter = start(HOLDER.format(**spec), queued=1)  # first in the queue ...
        waiter = start(HOLDER.format(**{**spec, "hold": 0}), queued=2)
        os.kill(dead_waiter.pid, signal.SIGKILL)  # ... dies waiting
        dead_waiter.wait()
        assert waiter.poll() is None  # still waiting: the core is held
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        cpus, reserve_used, *_ = json.loads(wait_for_line(waiter))
        assert cpus == [1] and not reserve_used
        assert waiter.wait(timeout=60) == 0
    finally:
        for proc in procs:
            kill(proc)
    assert not list(tmp_path.glob("wait-*.ticket"))


# --------------------------------------------------------------------------- pinning


@needs_two_cpus
def test_every_thread_is_pinned_and_restored(tmp_path):
    stop = threading.Event()
    early = late = threading.Thread(target=stop.wait)
    early.start()
    before = cores.thread_affinities()
    try:
        with cores.exclusive(1, "strict", directory=tmp_path, local=True) as alloc:
            assert alloc.cpus == (REAL_CPUS[1],)  # the lowest usable CPU is the reserve
            late = threading.Thread(target=stop.wait)
            late.start()
            pinned = cores.thread_affinities()
            assert late.native_id in pinned and early.native_id in pinned
            assert all(cpus == {REAL_CPUS[1]} for cpus in pinned.values())
        after = cores.thread_affinities()
        for tid, cpus in before.items():
            assert after[tid] == cpus
        assert after[late.native_id] == before[threading.get_native_id()]
    finally:
        stop.set()
        for thread in (early, late):
            thread.join()


PROBE = """
    import json, os
    from mlpstudy import cores
    with cores.exclusive(1, "strict", directory={dir!r}) as a:
        inside = sorted(os.sched_getaffinity(0))
    print(json.dumps(dict(cpus=a.cpus, inside=inside, reserve_used=a.reserve_used,
                          usable=a.usable, after=sorted(os.sched_getaffinity(0)))))
"""


def probe(tmp_path, affinity, env) -> dict:
    proc = python(
        PROBE.format(dir=str(tmp_path)),
        env=env,
        preexec_fn=lambda: os.sched_setaffinity(0, affinity),
    )
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    return json.loads(out)


@needs_two_cpus
def test_slurm_cpu_set_is_the_isolation(tmp_path):
    """Under SLURM the job's CPU set is all it may use: no reserve, the published set ignored."""
    cpu = REAL_CPUS[0]
    env = {"SLURM_JOB_ID": "4242", cores.CPUS_ENV: f"{socket.gethostname()}:0-1023"}
    got = probe(tmp_path, {cpu}, env)
    assert got["usable"] == [cpu] and got["cpus"] == [cpu] and got["inside"] == [cpu]
    assert not got["reserve_used"] and got["after"] == [cpu]


@needs_two_cpus
def test_a_job_confined_to_the_reserve_takes_a_dedicated_core(tmp_path):
    """What a local sweep does: Snakemake confines itself (and so its jobs) to the reserve
    and publishes the usable CPUs; the job's timed part moves to a dedicated core."""
    reserve, other = REAL_CPUS[0], REAL_CPUS[1]
    env = {cores.CPUS_ENV: f"{socket.gethostname()}:{cores.format_cpus(REAL_CPUS)}"}
    got = probe(tmp_path, {reserve}, env)
    assert got["inside"] == [other] and got["after"] == [reserve]
    # published for another host: ignored, the job keeps the CPU it has (the only core)
    got = probe(tmp_path, {reserve}, {cores.CPUS_ENV: "another-host:0-1023"})
    assert got["cpus"] == [reserve] and got["usable"] == [reserve]


CONFINE = """
    import json, os, subprocess, sys, threading
    from mlpstudy import cores
    t = threading.Thread(target=threading.Event().wait, daemon=True)
    t.start()
    reserve = cores.confine_main_process({mode!r})
    code = "import os; print(sorted(os.sched_getaffinity(0)))"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    threads = sorted(map(sorted, cores.thread_affinities().values()))
    published = os.environ.get(cores.CPUS_ENV)
    print(json.dumps(dict(reserve=reserve, threads=threads, published=published,
                          child=child.stdout.strip())))
"""


@needs_two_cpus
@pytest.mark.parametrize("mode", ["strict", "throughput"])
def test_snakemake_confined_to_the_reserve_in_strict_mode_only(tmp_path, mode):
    out, _ = python(CONFINE.format(mode=mode)).communicate(timeout=60)
    got = json.loads(out)
    if mode == "throughput":
        assert got["reserve"] is None and got["published"] is None
        assert got["child"] == str(REAL_CPUS)
        return
    assert got["reserve"] == [REAL_CPUS[0]]
    assert got["threads"] == [[REAL_CPUS[0]]] * 2  # both threads of the process
    assert got["child"] == str([REAL_CPUS[0]])  # what Snakemake's jobs inherit
    host, _, cpus = got["published"].partition(":")
    assert host == socket.gethostname() and cores.parse_cpus(cpus) == set(REAL_CPUS)


def test_lock_dir_is_private_and_refuses_a_symlink(tmp_path):
    made = cores.lock_dir(tmp_path / "locks")
    assert made.is_dir() and (made.stat().st_mode & 0o777) == 0o700
    (tmp_path / "link").symlink_to(made)
    with pytest.raises(RuntimeError, match="refusing"):
        cores.lock_dir(tmp_path / "link")


# --------------------------------------------------------------------------- borrowing


def fake_borrow(directory, cpus=(0, 1, 2)) -> cores.Borrow:
    plan = cores.layout(cpus, local=True)
    return cores.Borrow(plan, cores.lock_dir(directory), poll_s=0.01, pin=False).start()


def until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_idle_dedicated_cores_are_lent_one_per_job_never_the_reserve(tmp_path):
    borrows = [fake_borrow(tmp_path) for _ in range(3)]
    try:
        until(lambda: sum(b.core is not None for b in borrows) == 2)
        time.sleep(0.1)  # the third finds no core free, ever: the reserve is not lent
        lent = sorted(b.core for b in borrows if b.core is not None)
        assert lent == [(1,), (2,)]
    finally:
        for b in borrows:
            b.stop()
    assert all(b.core is None for b in borrows)


def test_a_waiting_loop_gets_a_lent_core_and_nothing_is_lent_while_it_waits(tmp_path):
    """Every dedicated core lent: a timed loop that asks gets one at once (untimed wait);
    while its ticket lives no core is lent, and after it both are lent again."""
    borrows = [fake_borrow(tmp_path) for _ in range(2)]
    try:
        until(lambda: all(b.core is not None for b in borrows))
        holder = python(
            HOLDER.format(cpus={0, 1, 2}, hold=0.5, mode="strict", rounds=1, dir=str(tmp_path))
        )
        out, _ = holder.communicate(timeout=60)
        cpus, reserve_used, *_ = json.loads(out)
        assert cpus in ([1], [2]) and not reserve_used
        until(lambda: all(b.core is not None for b in borrows))
        # a live ticket (a loop waiting): every lent core comes back, none is lent anew
        queue = cores._Queue(cores.lock_dir(tmp_path))
        try:
            until(lambda: all(b.core is None for b in borrows))
            time.sleep(0.1)
            assert all(b.core is None for b in borrows)
        finally:
            queue.leave()
        until(lambda: all(b.core is not None for b in borrows))
    finally:
        for b in borrows:
            b.stop()


def test_paused_borrowing_gives_the_core_back_for_the_body(tmp_path):
    borrow = fake_borrow(tmp_path, cpus=(0, 1))
    try:
        until(lambda: borrow.core is not None)
        with borrow.paused():
            assert borrow.core is None
            time.sleep(0.05)
            assert borrow.core is None
        until(lambda: borrow.core is not None)
    finally:
        borrow.stop()


def test_nothing_is_lent_outside_a_strict_local_sweep(tmp_path, monkeypatch):
    monkeypatch.delenv(cores.CPUS_ENV, raising=False)  # not started by a confined Snakemake
    assert cores.borrow_idle_cores(directory=tmp_path) is None
    monkeypatch.setenv(cores.CPUS_ENV, f"{socket.gethostname()}:0-1023")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # a cluster job: its CPU set is all it has
    assert cores.borrow_idle_cores(directory=tmp_path) is None
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv(cores.CPUS_ENV, "another-host:0-1023")
    assert cores.borrow_idle_cores(directory=tmp_path) is None


BORROWER = """
    import json, os, subprocess, sys, threading, time
    from mlpstudy import cores
    borrow = cores.borrow_idle_cores(directory={dir!r}, poll_s=0.01)
    def busy():
        while True:
            pass
    spin = threading.Thread(target=busy, daemon=True)
    spin.start()  # untimed work, busy on whatever the job may use
    while borrow.core is None:
        time.sleep(0.01)
    lent = sorted(os.sched_getaffinity(0))
    with cores.borrowing_paused():
        code = "import os; print(sorted(os.sched_getaffinity(0)))"
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    while borrow.core is None:
        time.sleep(0.01)
    print(json.dumps(dict(lent=lent, child=child.stdout.strip())), flush=True)
    if {loop!r}:
        with cores.exclusive(1, "strict", directory={dir!r}) as a:
            inside = sorted(map(sorted, cores.thread_affinities().values()))
        after = sorted(map(sorted, cores.thread_affinities().values()))
        print(json.dumps(dict(cpus=a.cpus, inside=inside, after=after, borrow=cores._borrow)))
    else:
        time.sleep(3600)
"""

LOOP_SEES = """
    import json, os
    from mlpstudy import cores
    other = {other}
    with cores.exclusive(1, "strict", directory={dir!r}) as a:
        seen = sorted({{cpu for tid in os.listdir(f"/proc/{{other}}/task")
                        for cpu in os.sched_getaffinity(int(tid))}})
    print(json.dumps(dict(cpus=a.cpus, other=seen)))
"""


@needs_two_cpus
def test_a_job_borrows_the_idle_core_and_a_loop_never_shares_it(tmp_path):
    """Real pinning, as in a sweep: a job confined to the reserve borrows the dedicated
    core (every thread, busy); a child spawned while paused stays on the reserve; a timed
    loop that then asks gets the core with the borrower's threads all moved off it."""
    reserve, other = REAL_CPUS[0], REAL_CPUS[1]
    env = {cores.CPUS_ENV: f"{socket.gethostname()}:{cores.format_cpus(REAL_CPUS)}"}
    confine = dict(env=env, preexec_fn=lambda: os.sched_setaffinity(0, {reserve}))
    borrower = python(BORROWER.format(dir=str(tmp_path), loop=False), **confine)
    try:
        got = json.loads(wait_for_line(borrower))
        assert got["lent"] == [reserve, other] and got["child"] == str([reserve])
        loop = python(LOOP_SEES.format(dir=str(tmp_path), other=borrower.pid), **confine)
        out, _ = loop.communicate(timeout=60)
        seen = json.loads(out)
        assert seen["cpus"] == [other] and seen["other"] == [reserve]
    finally:
        kill(borrower)


@needs_two_cpus
def test_a_jobs_borrowing_ends_when_its_own_timed_loop_starts(tmp_path):
    reserve, other = REAL_CPUS[0], REAL_CPUS[1]
    env = {cores.CPUS_ENV: f"{socket.gethostname()}:{cores.format_cpus(REAL_CPUS)}"}
    job = python(
        BORROWER.format(dir=str(tmp_path), loop=True),
        env=env,
        preexec_fn=lambda: os.sched_setaffinity(0, {reserve}),
    )
    try:
        wait_for_line(job)
        got = json.loads(wait_for_line(job))
        assert got["cpus"] == [other] and got["borrow"] is None
        assert all(cpus == [other] for cpus in got["inside"])  # its own borrow ended first
        assert all(cpus == [reserve] for cpus in got["after"])  # where the job started
    finally:
        kill(job)
