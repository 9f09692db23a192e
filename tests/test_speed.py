"""The machine-speed probe (mlpstudy.speed) and where runs record it (issue 21)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from mlpstudy import cores, speed, timing


def test_the_probe_computes_the_same_product_in_every_run():
    """Its operands are fixed numbers, so every run times the same computation."""
    first, second = speed._operands(8), speed._operands(8)
    for a, b in zip(first[:2], second[:2], strict=True):
        np.testing.assert_array_equal(a, b)
    assert first[0].dtype == np.float32 and first[0].shape == (8, 8)


def test_the_probe_is_one_positive_time_and_leaves_the_thread_pools_as_they_were():
    before = [(p["internal_api"], p["num_threads"]) for p in threadpool_info()]
    got = speed.probe_s(size=16, calls=2, repeats=3)
    assert isinstance(got, float) and got > 0 and math.isfinite(got)
    assert [(p["internal_api"], p["num_threads"]) for p in threadpool_info()] == before


def test_the_interpreter_probe_is_one_positive_time():
    got = speed.python_probe_s(iterations=100, repeats=3)
    assert isinstance(got, float) and got > 0 and math.isfinite(got)
    assert set(speed.probe()) == set(speed.KERNELS)


def test_a_pinned_loop_records_its_cores_speed_before_and_after(tmp_path):
    alloc = cores.Allocation("strict", 1, cpus=(0,), lock_dir=cores.lock_dir(tmp_path / "locks"))
    with timing.LoopConditions(alloc) as pinned:
        pass
    got = pinned.metrics(wall_s=1.0, cpu_s=1.0)
    assert len(got["probes"]) == 2  # one before the loop, one after
    for kernel in speed.KERNELS:
        timings = [p[kernel] for p in got["probes"]]
        assert all(t > 0 for t in timings)
        assert got[f"probe_{kernel}_s"] == sum(timings) / 2


def test_a_loop_outside_an_allocation_takes_no_probe():
    """Unit tests and direct calls are not timed runs: no probe, no cost."""
    with timing.LoopConditions(None) as free:
        pass
    got = free.metrics(wall_s=1.0, cpu_s=1.0)
    assert got["probes"] == [] and got["probe_blas_s"] is None and got["probe_python_s"] is None


def runs_of(times, probes, cells):
    return [
        {"backend": c, "steady_epoch_s": t, "probe_python_s": p}
        for c, t, p in zip(cells, times, probes, strict=True)
    ]


def test_runs_that_follow_the_machine_correlate_with_their_probe_whatever_their_cell():
    """Truth known: each run's time is its cell's time x its probe's share of its cell's
    speed, so r = 1 pooled over cells of very different times; a time that ignores the
    probe gives r near 0; runs without a probe (older ones) and lone cells are left out."""
    rng = np.random.default_rng(0)
    cells = ["numpy"] * 30 + ["tensorflow"] * 30
    probes = list(rng.uniform(0.5, 1.5, 60))
    follow = [(1.0 if c == "numpy" else 9.0) * p for c, p in zip(cells, probes, strict=True)]
    r, n = speed.probe_correlation(runs_of(follow, probes, cells), "python", ["backend"])
    assert r == pytest.approx(1.0) and n == 60
    ignore = list(rng.uniform(0.5, 1.5, 60))
    r, _ = speed.probe_correlation(runs_of(ignore, probes, cells), "python", ["backend"])
    assert abs(r) < 0.35
    inverse = [1 / t for t in follow]  # faster when the probe is slower: r = -1
    older = runs_of(inverse, probes, cells) + [
        {"backend": "numpy", "steady_epoch_s": 5.0, "probe_python_s": None},
        {"backend": "jax", "steady_epoch_s": 5.0, "probe_python_s": 1.0},  # a lone cell
    ]
    r, n = speed.probe_correlation(older, "python", ["backend"])
    assert r == pytest.approx(-1.0) and n == 60


def test_no_correlation_without_spread():
    same = runs_of([1.0, 1.0, 1.0], [0.5, 0.6, 0.7], ["numpy"] * 3)
    r, n = speed.probe_correlation(same, "python", ["backend"])
    assert math.isnan(r) and n == 3
