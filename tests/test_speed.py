"""The machine-speed probe (mlpstudy.speed) and where runs record it (issue 21)."""

from __future__ import annotations

import math

import numpy as np
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
