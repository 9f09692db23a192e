"""The machine's speed at a moment: one fixed reference kernel, timed where a loop runs.

Two identical runs of a timed loop can differ by more than anything a process controls
(memory placement, alignment, huge pages: :mod:`mlpstudy.memory`): on a virtual machine
the host's other work and its clock move the speed of a virtual CPU from one second to
the next. A harness cannot remove that, but it can measure it: :func:`probe_s` times a
fixed computation, the same in every run (a float32 matrix product small enough to live
in the core's L2 cache, on one thread: no memory traffic, no framework), on the calling
thread's core. Timed just before and just after a run's loop
(:class:`mlpstudy.timing.LoopConditions`), it says how fast the machine was while the
run was timed: runs that differ by as much as their probes do differ by the machine,
not by the code.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

#: Side of the probe's square float32 matrices: 3 x 192^2 x 4 bytes = 432 KiB, in L2.
SIZE = 192
#: Products per timing and timings per probe (the probe is their median): about 4 ms
#: per timing on a 2020s server core, 20 ms per probe.
CALLS, REPEATS = 16, 5


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
