"""One training run, as a job does it: thread budget, timed framework import, train.

``run_training`` is the entry point the workflow's train script calls. In order, it

1. puts the thread budget into the environment variables that libraries read only
   when they load (OpenMP, OpenBLAS, MKL, TensorFlow's pools, XLA's CPU backend);
2. imports the backend's framework, timing it (``import_time_s``, see below);
3. sets the thread counts through each library's own API (``set_threads``), before
   the framework runs any op, and records what is in effect (``thread_settings``);
4. trains, handing the backend the cores its timed loop is to take
   (``cores.CoreRequest(threads, timing_mode)``, passed down to ``loop.run_epochs``),
   and returns the backend's ``RunResult``, its metrics completed with
   ``import_time_s``, ``import_time_method``, ``threads``, ``thread_settings``, ``blas``.

``import_time_s``: when the framework is not loaded yet (TensorFlow in a fresh job),
the import done here is timed in-process ("in-process"). NumPy is always loaded already
(this package uses it), so its import is timed in a fresh Python subprocess
("subprocess"), once per process.
"""

from __future__ import annotations

import functools
import importlib
import os
import subprocess
import sys
import time

from threadpoolctl import threadpool_info

from . import cores
from .backends import framework_modules, get_backend, info
from .backends.base import EpochCallback, RunResult, TrainSpec


def thread_env(threads: int, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables that give every library ``threads`` threads.

    Existing ``XLA_FLAGS`` are kept; with one thread, XLA's CPU backend is told not to
    run Eigen multi-threaded.
    """
    environ = os.environ if environ is None else environ
    n = str(threads)
    env = {
        "OMP_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "TF_NUM_INTRAOP_THREADS": n,
        "TF_NUM_INTEROP_THREADS": n,
        "TF_CPP_MIN_LOG_LEVEL": environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
    if threads == 1:
        xla = environ.get("XLA_FLAGS", "")
        single = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        env["XLA_FLAGS"] = xla if single in xla else f"{xla} {single}".strip()
    return env


def import_framework(name: str) -> tuple[float, str]:
    """Import backend ``name``'s framework; return (seconds it took, how it was measured)."""
    modules = framework_modules(name)
    if any(module in sys.modules for module in modules):
        return _import_time_in_subprocess(modules), "subprocess"
    start = time.perf_counter()
    for module in modules:
        importlib.import_module(module)
    return time.perf_counter() - start, "in-process"


@functools.cache
def _import_time_in_subprocess(modules: tuple[str, ...]) -> float:
    code = (
        "import time; t = time.perf_counter()\n"
        + "".join(f"import {module}\n" for module in modules)
        + "print(time.perf_counter() - t)"
    )
    with cores.borrowing_paused():  # the child stays on the job's own cores
        out = subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        ).stdout
    return float(out.strip().splitlines()[-1])


def blas_name() -> str:
    """The BLAS NumPy uses, e.g. ``openblas 0.3.31 (SkylakeX, pthreads)``."""
    import numpy as np

    pools = [p for p in threadpool_info() if p["user_api"] == "blas"]
    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
    ours = [p for p in pools if p["filepath"].startswith(numpy_dir) and "numpy" in p["filepath"]]
    pool = (ours or pools or [None])[0]
    if pool is None:
        return "none found"
    return (
        f"{pool['internal_api']} {pool['version']} ({pool.get('architecture')}, "
        f"{pool.get('threading_layer')})"
    )


def run_training(
    backend_name: str,
    spec: TrainSpec,
    x_train,
    y_train,
    x_test,
    y_test,
    on_epoch: EpochCallback | None = None,
    timing_mode: str | None = None,
) -> RunResult:
    """Train backend ``backend_name`` as ``spec`` says, in this process; return the result."""
    framework_modules(backend_name)  # unknown name: ValueError before touching anything
    reason = info(backend_name).cannot_run.get(spec.precision)
    if reason:  # the config check says it before any job; a direct call learns it here
        raise ValueError(f"{backend_name} cannot run precision {spec.precision!r}: {reason}")
    # strict: the timed loop waits (untimed) for spec.threads dedicated cores and pins
    # every thread to them while it runs; the set-up before it stays where the job
    # started. throughput: record the mode only; None: nothing (mlpstudy.cores).
    # Built first so that an unknown mode fails before the import.
    loop_cores = cores.CoreRequest(spec.threads, timing_mode)
    os.environ.update(thread_env(spec.threads))
    import_time, import_method = import_framework(backend_name)
    backend = get_backend(backend_name)
    thread_settings = backend.set_threads(spec.threads)
    result = backend.train(
        spec, x_train, y_train, x_test, y_test, on_epoch=on_epoch, cores=loop_cores
    )
    result.metrics.update(
        backend=backend_name,
        import_time_s=import_time,
        import_time_method=import_method,
        threads=spec.threads,
        thread_settings=thread_settings,
        blas=blas_name(),
    )
    return result
