"""The conditions recorded with each timed loop (mlpstudy.timing, through backends/loop.py).

No test asserts a duration: only ratios and counts that a contended or overlapped loop
must show whatever the machine's speed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlpstudy import cores, timing
from mlpstudy.backends.base import TrainSpec
from mlpstudy.backends.loop import run_epochs, steady_epoch_s

SPEC = TrainSpec(learning_rate=0.1, batch_size=1, epochs=3, seed=0, trial=0)
HZ = os.sysconf("SC_CLK_TCK")


def busy(cpu_s: float) -> None:
    """Spend ``cpu_s`` seconds of this thread's CPU time."""
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        pass


def train(spec=SPEC, train_epoch=lambda data: busy(0.05), cores=None):
    return run_epochs(
        spec, lambda epoch: None, train_epoch, lambda: (0.5, 0.8, 0.8), cores=cores
    ).metrics


def test_the_table_columns_are_in_every_runs_metrics():
    metrics = train()
    assert set(timing.COLUMNS) <= set(metrics)
    # outside an allocation (unit tests, direct calls): nothing pinned, nothing counted
    assert metrics["timing_mode"] is None and metrics["pinned_cpus"] is None
    assert metrics["overlapping_runs"] is None and metrics["steal_scope"] == "machine"
    assert metrics["others_cpu_s"] is None and metrics["steal_s"] >= 0
    assert metrics["wall_cpu_ratio"] == pytest.approx(
        metrics["training_time_s"] / metrics["cpu_time_s"]
    )


def fake_stat(path: Path, steal: dict[str, int], busy_ticks: dict[str, int]) -> None:
    lines = []
    for name in ("cpu", "cpu0", "cpu1"):
        # user nice system idle iowait irq softirq steal guest guest_nice
        lines.append(f"{name} {busy_ticks[name]} 0 0 1000 0 0 0 {steal[name]} 0 0")
    path.write_text("\n".join(lines + ["intr 0", ""]))


def test_steal_is_read_from_the_pinned_cpus_lines_or_the_whole_machine(tmp_path):
    stat = tmp_path / "stat"
    fake_stat(stat, {"cpu": 10, "cpu0": 4, "cpu1": 6}, {"cpu": 0, "cpu0": 0, "cpu1": 0})
    alloc = cores.Allocation("strict", 1, cpus=(1,), lock_dir=cores.lock_dir(tmp_path / "locks"))
    with timing.LoopConditions(alloc, stat_path=str(stat)) as pinned:
        with timing.LoopConditions(None, stat_path=str(stat)) as machine:
            # during the loop: cpu1 lost 50 ticks to steal, cpu0 20; others ran 3 s on cpu1
            fake_stat(
                stat, {"cpu": 80, "cpu0": 24, "cpu1": 56}, {"cpu": 0, "cpu0": 0, "cpu1": 3 * HZ}
            )
    got = pinned.metrics(wall_s=2.0, cpu_s=1.0)
    assert got["steal_s"] == pytest.approx(50 / HZ) and got["steal_scope"] == "pinned"
    assert got["pinned_cpus"] == "1" and got["timing_mode"] == "strict"
    assert got["wall_cpu_ratio"] == 2.0
    # busy ticks minus this process's own CPU time (a few ms here, between two snapshots)
    assert got["others_cpu_s"] == pytest.approx(3.0, abs=0.2)
    got = machine.metrics(wall_s=1.0, cpu_s=1.0)
    assert got["steal_s"] == pytest.approx(70 / HZ) and got["steal_scope"] == "machine"
    assert got["others_cpu_s"] is None and got["overlapping_runs"] is None


@pytest.fixture
def neighbour():
    """Start a busy-loop process pinned to a given CPU; kill it afterwards."""
    procs = []

    def start(cpu: int) -> subprocess.Popen:
        code = "import os, sys; print(1, flush=True)\nwhile True: pass"
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )
        procs.append(proc)
        assert proc.stdout.readline().strip() == b"1"  # it runs
        return proc

    yield start
    for proc in procs:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_busy_neighbour_on_the_same_cpu_shows_in_the_conditions(tmp_path, neighbour):
    """Two busy processes on one CPU: the loop gets about half of it, and it says so."""
    cpu = max(os.sched_getaffinity(0))
    with cores.exclusive(1, "strict", cpus={cpu}, local=False, directory=tmp_path) as alloc:
        assert os.sched_getaffinity(0) == {cpu}
        other = neighbour(cpu)
        metrics = train(train_epoch=lambda data: busy(0.3), cores=alloc)
        assert os.sched_getaffinity(0) == {cpu}  # the loop used its caller's cores, kept
    assert alloc.cpus == (cpu,) and metrics["pinned_cpus"] == str(cpu)
    assert metrics["timing_mode"] == "strict" and metrics["steal_scope"] == "pinned"
    # fair share of one CPU between two spinning processes: wall/CPU near 2
    assert metrics["wall_cpu_ratio"] > 1.5 and timing.contended(metrics)
    # and the others' CPU time on our CPU is most of the loop's wall time
    assert metrics["others_cpu_s"] > 0.3 * metrics["training_time_s"]
    # who it was: the neighbour comes first among the tasks seen on our CPU
    assert metrics["others_on_cores"][0].startswith(f"python[{other.pid}] ")


def test_overlapping_loops_are_counted_once_each_and_dead_ones_not_at_all(tmp_path):
    """Loops seen at the start, during the epochs and at the end; a killed loop's file
    (no lock held) is neither counted nor kept."""
    locks = cores.lock_dir(tmp_path)
    (locks / "loop-999999-dead.run").touch()  # a loop killed long ago
    already = cores.LoopRegistry(locks)
    already.register()
    later = []

    def train_epoch(data):
        busy(0.01)
        if len(later) < 2:  # two more loops start during our first two epochs
            later.append(cores.LoopRegistry(locks))
            later[-1].register()

    with cores.exclusive(1, "throughput", directory=locks) as alloc:
        metrics = train(spec=TrainSpec(0.1, 1, 4, 0, 0), train_epoch=train_epoch, cores=alloc)
        # the first ends; it was still counted
        already.unregister()
    assert metrics["overlapping_runs"] == 3
    assert metrics["timing_mode"] == "throughput" and metrics["pinned_cpus"] is None
    assert not (locks / "loop-999999-dead.run").exists()
    for registry in later:
        registry.unregister()
    assert not list(locks.glob("loop-*.run"))  # ours is gone too


def test_a_loop_alone_counts_no_overlap(tmp_path, monkeypatch):
    """A loop given a request takes its allocation for the loop and lets it go after."""
    monkeypatch.setenv(cores.LOCK_DIR_ENV, str(tmp_path))
    metrics = train(cores=cores.CoreRequest(1, "throughput"))
    assert metrics["overlapping_runs"] == 0 and metrics["timing_mode"] == "throughput"
    assert not list(Path(tmp_path).glob("loop-*.run"))
    with cores.exclusive(1, "throughput") as alloc:  # not held any more
        assert train(cores=alloc)["overlapping_runs"] == 0


def test_run_training_in_strict_mode_times_the_loop_on_a_dedicated_core(tmp_path, monkeypatch):
    """The workflow's path: run_training(..., timing_mode="strict") pins the NumPy run's
    threads to a core of its own for the training, records it, and lets go afterwards."""
    import numpy as np

    from mlpstudy.training import run_training

    monkeypatch.setenv(cores.LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv(cores.CPUS_ENV, raising=False)
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 784), dtype=np.float32), np.arange(64) % 10
    before = os.sched_getaffinity(0)
    usable = sorted(before)
    metrics = run_training(
        "numpy", TrainSpec(0.1, 16, 2, 0, 0), x, y, x, y, timing_mode="strict"
    ).metrics
    # locally the lowest CPU is Snakemake's reserve; the run gets the next one
    want = usable[1] if len(usable) > 1 else usable[0]
    assert metrics["pinned_cpus"] == str(want) and metrics["timing_mode"] == "strict"
    assert metrics["reserve_used"] == (len(usable) == 1)
    assert metrics["overlapping_runs"] == 0 and metrics["steal_scope"] == "pinned"
    assert os.sched_getaffinity(0) == before


def test_only_the_timed_loop_holds_the_dedicated_core(tmp_path, monkeypatch):
    """The set-up before the loop (here the NumPy backend's start) runs where the job
    started, with no core taken; the loop runs pinned on its core; then the core is free."""
    import numpy as np

    from mlpstudy.backends import numpy_mlp
    from mlpstudy.training import run_training

    monkeypatch.setenv(cores.LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv(cores.CPUS_ENV, raising=False)
    before = os.sched_getaffinity(0)
    seen = {}

    def held_locks():
        held = []
        for path in Path(tmp_path).glob("core-*.lock"):
            fd = cores._try_lock(path)
            if fd is None:
                held.append(path.name)
            else:
                os.close(fd)
        return held

    real_start = numpy_mlp.start

    def start(spec):
        seen["setup"] = (os.sched_getaffinity(0), held_locks())
        return real_start(spec)

    def on_epoch(row):
        seen["loop"] = (os.sched_getaffinity(0), held_locks())

    monkeypatch.setattr(numpy_mlp, "start", start)
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 784), dtype=np.float32), np.arange(64) % 10
    metrics = run_training(
        "numpy", TrainSpec(0.1, 16, 2, 0, 0), x, y, x, y, on_epoch=on_epoch, timing_mode="strict"
    ).metrics
    assert seen["setup"] == (before, [])
    pinned = cores.parse_cpus(metrics["pinned_cpus"])
    affinity, held = seen["loop"]
    assert affinity == pinned and len(held) == 1
    assert held_locks() == [] and os.sched_getaffinity(0) == before


# --------------------------------------------------------------------------- the rule


def conditions(wall=1.2, ratio=1.0, others=0.0, steal=0.0):
    return {
        "training_time_s": wall,
        "wall_cpu_ratio": ratio,
        "others_cpu_s": others,
        "steal_s": steal,
    }


@pytest.mark.parametrize(
    "metrics, reasons",
    [
        (conditions(), []),
        # issue 21's first loop: NumPy batch 128, trial 0 of the sweep
        (conditions(1.4, 1.28, 0.17), ["wall_cpu_ratio 1.28 > 1.10", "others_cpu_s 0.17 > 0.07"]),
        # others' CPU alone, with the loop's wall/CPU still under 1.10
        (conditions(1.2, 1.05, 0.12), ["others_cpu_s 0.12 > 0.07"]),
        (conditions(1.2, 1.0, 0.0, 0.2), ["steal_s 0.20 > 0.07"]),
        # clock-tick noise: 0.03 s of others on a 3 s loop (the full grid's median) is clean
        (conditions(3.0, 1.04, 0.03, 0.02), []),
        # a two-thread run sits below wall/CPU 1; not recorded (None) is not contention
        (conditions(2.0, 0.55, None, None), []),
        ({"wall_cpu_ratio": 1.5}, ["wall_cpu_ratio 1.50 > 1.10"]),
    ],
)
def test_the_contention_rule(metrics, reasons):
    assert timing.contention(metrics) == reasons
    assert timing.contended(metrics) == bool(reasons)
    assert (timing.contention_score(metrics) > 1) == bool(reasons)


def test_the_score_orders_attempts_by_how_contended_they_were():
    scores = [
        timing.contention_score(m)
        for m in (conditions(1.2, 1.3), conditions(1.2, 1.05, 0.5), conditions(1.2, 1.12))
    ]
    assert scores.index(min(scores)) == 2 and scores.index(max(scores)) == 1


# --------------------------------------------------------------------------- steady state


@pytest.mark.parametrize(
    "times, steady",
    [
        ([1.8, 0.8, 0.9, 0.85], 0.85),  # median of epochs 2..4: the first is tracing
        ([1.8, 0.8, 0.9], pytest.approx(0.85)),  # an even count: the mean of the middle two
        ([0.7], 0.7),  # one epoch: the only one there is
        ([], None),
    ],
)
def test_steady_epoch_time_is_the_median_after_the_first(times, steady):
    assert steady_epoch_s(times) == steady


def test_a_diverged_run_has_a_steady_state_of_the_epochs_it_ran():
    losses = iter([0.5, float("nan"), 0.4])
    spent = iter([0.02, 0.06, 0.01])
    result = run_epochs(
        TrainSpec(0.1, 1, 3, 0, 0),
        lambda epoch: None,
        lambda data: busy(next(spent)),
        lambda: (next(losses), 0.5, 0.5),
    )
    epochs = [row["epoch_s"] for row in result.history]
    assert result.metrics["diverged_epoch"] == 2 and len(epochs) == 2
    assert result.metrics["steady_epoch_s"] == epochs[1]  # the epoch that diverged
    assert result.metrics["first_epoch_s"] == epochs[0]


def test_the_steps_and_the_evaluation_have_their_own_steady_state():
    """The first epoch's steps and evaluation carry tracing: the steady state of each
    part is the median of its later epochs (so, with one long first epoch, well under a
    third of the sum), beside their sums over all epochs; with one epoch, that one."""

    def run(steps, evals):
        spec = TrainSpec(0.1, 1, len(steps), 0, 0)
        steps, evals = iter(steps), iter(evals)

        def evaluate():
            busy(next(evals))
            return 0.5, 0.5, 0.5

        return run_epochs(spec, lambda e: None, lambda d: busy(next(steps)), evaluate).metrics

    m = run([0.08, 0.02, 0.02, 0.02], [0.08, 0.02, 0.02, 0.02])
    assert 0 < m["steady_step_s"] < m["step_time_s"] / 3
    assert 0 < m["steady_eval_s"] < m["eval_time_s"] / 3
    one = run([0.01], [0.01])
    assert (one["steady_step_s"], one["steady_eval_s"]) == (one["step_time_s"], one["eval_time_s"])


def test_the_loop_records_faults_clock_and_huge_pages():
    metrics = train()
    assert isinstance(metrics["major_faults"], int) and metrics["major_faults"] >= 0
    assert metrics["steady_epoch_s"] > 0
    share = metrics["process_hugepage_share"]
    assert share is None or 0 <= share <= 1
    mhz, source = timing.cpu_mhz()
    assert metrics["cpu_mhz_source"] == source
    assert (metrics["cpu_mhz"] is None) == (mhz is None)


def test_cpu_clock_from_cpufreq_or_cpuinfo(tmp_path):
    sysfs = tmp_path / "cpu"
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\ncpu MHz\t\t: 2596.144\n\nprocessor\t: 1\ncpu MHz\t\t: 3100.5\n"
    )
    assert timing.cpu_mhz(1, sysfs, cpuinfo) == (3100.5, "cpuinfo")
    (sysfs / "cpu1" / "cpufreq").mkdir(parents=True)
    (sysfs / "cpu1" / "cpufreq" / "scaling_cur_freq").write_text("3500000\n")
    assert timing.cpu_mhz(1, sysfs, cpuinfo) == (3500.0, "cpufreq")
    assert timing.cpu_mhz(0, sysfs, cpuinfo) == (2596.144, "cpuinfo")
    assert timing.cpu_mhz(0, sysfs, tmp_path / "missing") == (None, None)


def test_the_others_on_the_cores_are_the_tasks_that_grew_there():
    before = {10: ("kworker/1:0", 10, 1, 0), 20: ("python", 20, 1, 5_000_000)}
    after = {
        10: ("kworker/1:0", 10, 1, 20_000_000),  # 0.02 s on CPU 1
        20: ("python", 20, 1, 405_000_000),  # 0.4 s more on CPU 1
        21: ("python", 20, 0, 900_000_000),  # a new thread, but last seen on CPU 0
        30: ("ours", 99, 1, 800_000_000),  # this process
    }
    assert timing.others_on([1], before, after, pid=99) == [
        "python[20] 0.400 s",
        "kworker/1:0[10] 0.020 s",
    ]
    assert timing.others_on([1], before, after, pid=99, top=1) == ["python[20] 0.400 s"]
