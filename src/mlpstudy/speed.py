"""The machine's speed at a moment: fixed reference kernels, timed where a loop runs.

Two identical runs of a timed loop can differ by more than anything a process controls
(memory placement, alignment, huge pages: :mod:`mlpstudy.memory`): on a virtual machine
the host's other work moves the speed of a virtual CPU from one second to the next. A
harness cannot remove that, but it can measure it. :func:`probe` times two fixed
computations, the same in every run, on the calling thread's core:

- ``blas``: a float32 matrix product small enough to live in the core's L2 cache, on
  one thread (no memory traffic, no framework): the vector units, what NumPy's steps
  spend their time in;
- ``python``: a loop of the interpreter's own integer additions: the scalar, branchy
  work of a framework's per-step dispatch (Python and C++ overhead).

Measured on this project's 2-core VM (``benchmarks/bench_timing.py --speed-series``;
README, "Do identical runs reproduce each other?"), the second one's time spans 1.7x
within one process, in states that last, while the first moves by a few per cent.
Timed just before and just after a run's loop (:class:`mlpstudy.timing.LoopConditions`),
they say how fast the machine was while the run was timed, and :func:`probe_correlation`
how far a set of runs' times follows them.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

#: The reference kernels, by the name their columns carry (``probe_<name>_s``).
KERNELS = ("blas", "python")
#: Side of the probe's square float32 matrices: 3 x 192^2 x 4 bytes = 432 KiB, in L2.
SIZE = 192
#: Products per timing and timings per probe (the probe is their median): about 3 ms
#: per timing on a 2020s server core, 15 ms per probe.
CALLS, REPEATS = 16, 5
#: Iterations of the interpreter loop per timing: about 2 ms.
PYTHON_ITERATIONS = 40_000


def _operands(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)  # the same numbers in every run
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    return a, b, np.empty((size, size), np.float32)


def probe_s(size: int = SIZE, calls: int = CALLS, repeats: int = REPEATS) -> float:
    """Seconds of one ``size`` x ``size`` float32 product on one thread: the median of
    ``repeats`` timings of ``calls`` products each, after one untimed product."""
    from threadpoolctl import threadpool_limits

    a, b, out = _operands(size)
    with threadpool_limits(limits=1, user_api="blas"):
        np.matmul(a, b, out=out)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                np.matmul(a, b, out=out)
            times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def python_probe_s(iterations: int = PYTHON_ITERATIONS, repeats: int = REPEATS) -> float:
    """Seconds of ``iterations`` integer additions by the interpreter: the median of
    ``repeats`` timings, after one untimed loop."""

    def loop() -> float:
        start, total = time.perf_counter(), 0
        for i in range(iterations):
            total += i
        return time.perf_counter() - start

    loop()
    return statistics.median(loop() for _ in range(repeats))


def probe() -> dict[str, float]:
    """Both reference kernels' seconds, by name: ``blas`` (:func:`probe_s`) and
    ``python`` (:func:`python_probe_s`)."""
    return {"blas": probe_s(), "python": python_probe_s()}


def probe_correlation(
    runs: Iterable[Mapping], kernel: str, cell: Sequence[str], time: str = "steady_epoch_s"
) -> tuple[float, int]:
    """How far the runs' times follow the machine: Pearson's r, pooled over cells, of each
    run's log ``time`` and its log ``probe_<kernel>_s``, both taken from their cell's mean
    (``cell``: the columns that make a cell, e.g. backend, learning rate, batch size), and
    the number of runs it is over. Runs without both values are left out; so is a cell
    with fewer than two runs. NaN when nothing is left or a side does not vary."""
    cells: dict[tuple, list[tuple[float, float]]] = {}
    for run in runs:
        t, p = run.get(time), run.get(f"probe_{kernel}_s")
        if t is None or p is None or not (t > 0 and p > 0):
            continue
        cells.setdefault(tuple(run[c] for c in cell), []).append((math.log(t), math.log(p)))
    xs, ys = [], []
    for pairs in cells.values():
        if len(pairs) < 2:
            continue
        mean_t = statistics.fmean(t for t, _ in pairs)
        mean_p = statistics.fmean(p for _, p in pairs)
        ys += [t - mean_t for t, _ in pairs]
        xs += [p - mean_p for _, p in pairs]
    sxx, syy = sum(x * x for x in xs), sum(y * y for y in ys)
    if not xs or sxx == 0 or syy == 0:
        return float("nan"), len(xs)
    return sum(x * y for x, y in zip(xs, ys, strict=True)) / math.sqrt(sxx * syy), len(xs)
