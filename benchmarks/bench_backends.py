"""Per-epoch time of each backend against the compute bound and plain references.

    .venv/bin/python benchmarks/bench_backends.py [--quick] [--data results/data/mnist]
        [--nets mlp cnn ...] [--epochs 2] [--trials 1] [--figure scaling.png]
        [--n-train 60000] [--n-test 10000]
    .venv/bin/python benchmarks/bench_backends.py --references [--quick] [--data ...]

One thread everywhere. Every implementation runs in its own subprocess (fresh
interpreter, its own framework import, its own peak memory, read by ``os.wait4``) on
MNIST-sized data: random pixels in [0, 1] (60000 x 784 train, 10000 test), or the
parquet splits given with ``--data``.

**Across nets** (the default; issue 18): every backend (``--impls``, default numpy,
tensorflow, jax, torch) on every catalog net (``--nets``) at batch 32, 128 and 512,
``--epochs`` epochs (default 2: the first carries tracing and compilation, the
figures are the steady state after it) and ``--trials`` fresh runs each (default 1; trial k of
every backend shares its seed). Per (net, batch): s/epoch with the steps and the
evaluation apart, peak memory, and the net's compute bound measured in the same run
from its own shapes: each parameterised layer's matrix products of a training step,
timed alone on random float32 arrays in a pinned single-thread child like the others
(median of repeats): for a dense layer ``x W`` (batch, n_in) x (n_in, units), its kernel
gradient ``x^T dy`` and its input gradient ``dy W^T``; for a conv the im2col product
(batch Ho Wo, kh kw C) x (kh kw C, filters) and its two backward products; the first
parameterised layer has no input gradient (``mlpstudy.nets.Net.flops``' convention). The
steps' bound per epoch is the sum over the epoch's steps (the partial last batch timed at
its own size); the evaluation's is the forward products of the training and test sets
(timed on chunks of ``EVAL_ROWS`` images). The report: a table (s/epoch, x bound), each
framework's crossover against NumPy (``mlpstudy.figures.scaling``: with one trial the
point estimate only) and the issue's targets; ``--figure`` writes the scaling figure
(time per step against FLOPs per step, the bound drawn) as the workflow's overview draws
it. Markdown to ``benchmarks/backends_nets.md`` (``--out``).

**References** (``--references``: the study's MLP only, the former default, to
``benchmarks/backends.md``). Rows, side by side, for each batch size:

- ``numpy``: the NumPy backend (``mlpstudy.backends.numpy_mlp``, via ``run_training``);
- ``numpy-textbook``: a plain float32 NumPy loop written below, as a textbook would;
- ``tensorflow``: the TensorFlow backend (op determinism on, its default);
- ``tensorflow-nondet``: the same with op determinism off (what determinism costs);
- ``keras-plain``: a plain ``model.fit`` Keras model, Keras defaults, written below;
- ``jax``: the JAX backend, one compiled step per mini-batch;
- ``jax-scan``: the same with ``scan_epoch`` (one compiled epoch over ``lax.scan``);
- ``torch``: the PyTorch backend, eager;
- ``torch-compile``: the same with ``compile`` (``torch.compile``, Inductor);
- ``torch-plain``: a PyTorch loop as the tutorials write it, written below (index a
  ``randperm``); the PyTorch backend should be no slower;
- ``torch-dataloader``: the same loop fed by ``DataLoader(TensorDataset, shuffle=True)``
  (what the backend would cost with a ``DataLoader``).

The per-epoch time (wall, and CPU of the run's process) is the median over the epochs
after the first (the first carries
tracing and warm-up; it is shown separately). One epoch is the training steps plus the
evaluation of the full training set (loss, accuracy) and of the test set (accuracy).
The compute bound of one epoch is its FLOPs (multiply-adds of the three training
matrix products per sample, of the forward pass per evaluated sample) divided by the
single-thread float32 matmul rate measured in this run (a 2048^3 product, best of 5).

Per-job overhead: the child process's wall time (interpreter start to exit, as the
parent sees it) minus its training loop; for a backend it holds the framework import
(``import_time_s``), the data (generated or loaded) and the set-up. The child ends as a
workflow job does, with ``os._exit`` once its result is out (no framework teardown).
Target: at most the import + 1 s. The targets of the JAX/PyTorch issue are checked at
the end of the report (when their rows were run).

Writes the table to stdout and, as Markdown, to ``benchmarks/backends.md``.

A child that fails (a backend that cannot build a net yet) is reported as failed, with
the last line of its error, and the run goes on.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

IMPLS = (
    "numpy",
    "numpy-textbook",
    "tensorflow",
    "tensorflow-nondet",
    "keras-plain",
    "jax",
    "jax-scan",
    "torch",
    "torch-compile",
    "torch-plain",
    "torch-dataloader",
)
#: implementation -> (registered backend, its options), for the rows run by ``run_training``.
BACKEND_RUNS = {
    "numpy": ("numpy", {}),
    "tensorflow": ("tensorflow", {"deterministic": True}),
    "tensorflow-nondet": ("tensorflow", {"deterministic": False}),
    "jax": ("jax", {"scan_epoch": False}),
    "jax-scan": ("jax", {"scan_epoch": True}),
    "torch": ("torch", {"compile": False}),
    "torch-compile": ("torch", {"compile": True}),
}
LEARNING_RATE = 0.01
N_IN, N_HIDDEN, N_OUT = 784, 64, 10
#: Across nets: the backends' plain rows by default; the references are the MLP's only.
NET_IMPLS = ("numpy", "tensorflow", "jax", "torch")
REFERENCE_IMPLS = ("numpy-textbook", "keras-plain", "torch-plain", "torch-dataloader")
IMAGE_SHAPE = (28, 28, 1)
#: How to run it: the first lines of every report this writes (no numbers).
HOW_TO = """\
How to run (on a quiet machine: nothing else running, not beside the test suite):

    # every backend on every catalog net at batch 32, 128, 512, with each net's
    # measured compute bound, the crossovers and the scaling figure -> backends_nets.md
    .venv/bin/python benchmarks/bench_backends.py --data results/data/mnist \\
        --trials 3 --n-train 12000 --n-test 2000 --figure benchmarks/backends_nets.png
    # the study's MLP against the plain references (numpy-textbook, keras-plain,
    # torch-plain, torch-dataloader) -> backends.md
    .venv/bin/python benchmarks/bench_backends.py --references --data results/data/mnist
    # smoke runs (a few thousand rows; their numbers mean nothing)
    .venv/bin/python benchmarks/bench_backends.py --quick --nets mlp cnn-small \\
        --batches 128 --out /tmp/smoke.md

Options: --nets, --impls, --batches, --epochs (default 2 across nets, 4 with
--references), --trials (fresh runs per cell: the crossover's interval needs 2 or more,
and with 2 its t quantile is 6.3; 3 give a usable one),
--n-train, --n-test (the first n rows: a step costs the same whatever the set's size),
--figure, --out, --unpinned. Each run is a fresh process pinned to one CPU, one thread.
"""
#: Images per chunk the evaluation's bound is timed on (then scaled to the sets' sizes).
EVAL_ROWS = 1000
#: A product is timed in batches of calls lasting at least this long; median of REPEATS.
MIN_TIMING_S, REPEATS = 0.02, 5


# --------------------------------------------------------------------------- the bound
def epoch_flops(n_train: int, n_test: int, batch_size: int) -> float:
    """FLOPs of one epoch: training steps + evaluation of the training and test sets.

    Per sample, forward: 2*(784*64 + 64*10); backward: dW2 = a1^T d2, d2 W2^T and
    dW1 = X^T d1, 2*(64*10 + 64*10 + 784*64). Element-wise work is not counted.
    """
    del batch_size  # every sample costs the same whatever the batch size
    forward = 2 * (N_IN * N_HIDDEN + N_HIDDEN * N_OUT)
    backward = 2 * (2 * N_HIDDEN * N_OUT + N_IN * N_HIDDEN)
    return n_train * (forward + backward) + (n_train + n_test) * forward


def matmul_rate(size: int = 2048, repeats: int = 5) -> float:
    """Single-thread float32 matmul rate in FLOP/s (best of ``repeats``)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        rng = np.random.default_rng(0)
        a, b = rng.random((size, size), np.float32), rng.random((size, size), np.float32)
        out = np.empty_like(a)
        np.matmul(a, b, out=out)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


# --------------------------------------------------------------------------- a net's bound
def step_products(net, input_shape, rows: int, forward_only: bool = False) -> list[tuple]:
    """The matrix products of one training step of ``net`` on ``rows`` images, as
    ``(layer, what, (m, k), (k, n), transposed)``: per parameterised layer (a conv as
    its im2col product: m = rows Ho Wo, k = kh kw C, n = filters; a dense layer: m = rows,
    k = n_in, n = units) the forward product (m, k) x (k, n), then, unless
    ``forward_only``, the kernel gradient (k, m) x (m, n) and, except for the first
    parameterised layer, the input gradient (m, n) x (n, k). ``transposed`` says which
    operand is a transposed view (as the backward pass uses them)."""
    from mlpstudy import nets

    shapes = net.shapes(input_shape)
    out = []
    for k, i in enumerate(net.param_layers, 1):
        layer, before, after = net.layers[i], shapes[i], shapes[i + 1]
        if isinstance(layer, nets.Conv2D):
            m, inner, n = (
                rows * after[0] * after[1],
                layer.kernel[0] * layer.kernel[1] * before[2],
                after[2],
            )
        else:
            m, inner, n = rows, before[0], after[0]
        out.append((f"W{k}", "forward", (m, inner), (inner, n), None))
        if forward_only:
            continue
        out.append((f"W{k}", "kernel gradient", (inner, m), (m, n), "a"))
        if k > 1:
            out.append((f"W{k}", "input gradient", (m, n), (n, inner), "b"))
    return out


def time_product(a_shape, b_shape, transposed=None) -> float:
    """Seconds of one float32 product ``a @ b`` alone (random operands, the transposed
    operand a view of a C-contiguous array): median of ``REPEATS`` timings, each of as
    many calls as last ``MIN_TIMING_S``."""
    import numpy as np

    rng = np.random.default_rng(0)

    def operand(shape, t):
        x = rng.random(shape[::-1] if t else shape, dtype=np.float32)
        return x.T if t else x

    a, b = operand(a_shape, transposed == "a"), operand(b_shape, transposed == "b")
    out = np.empty((a_shape[0], b_shape[1]), np.float32)
    np.matmul(a, b, out=out)
    calls, spent = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            np.matmul(a, b, out=out)
        spent = time.perf_counter() - start
        if spent >= MIN_TIMING_S:
            break
        calls *= 2
    times = [spent / calls]
    for _ in range(REPEATS - 1):
        start = time.perf_counter()
        for _ in range(calls):
            np.matmul(a, b, out=out)
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def step_bound_s(net, input_shape, rows: int, forward_only: bool = False) -> float:
    """The compute bound of one step on ``rows`` images: its products' times, summed."""
    return sum(
        time_product(a, b, t)
        for _, _, a, b, t in step_products(net, input_shape, rows, forward_only)
    )


def bound_child(net_name: str, batch_size: int, n_train: int, n_test: int) -> dict:
    """The compute bound of one epoch of ``net_name`` at ``batch_size`` (run in a pinned
    child): the steps' (full batches, then the partial last one) and the evaluation's."""
    from threadpoolctl import threadpool_limits

    from mlpstudy import nets

    threadpool_limits(limits=1)
    net = nets.CATALOG[net_name]
    full, last = divmod(n_train, batch_size)
    step_s = step_bound_s(net, IMAGE_SHAPE, batch_size)
    last_s = step_bound_s(net, IMAGE_SHAPE, last) if last else 0.0
    eval_rows = min(EVAL_ROWS, n_train + n_test)
    eval_s = step_bound_s(net, IMAGE_SHAPE, eval_rows, forward_only=True)
    return {
        "impl": "bound",
        "net": net_name,
        "batch_size": batch_size,
        "step_s": step_s,
        "steps_bound_s": full * step_s + last_s,
        "eval_bound_s": eval_s * (n_train + n_test) / eval_rows,
    }


# --------------------------------------------------------------------------- the data
def load_data(data: str | None, n_train: int, n_test: int):
    import numpy as np

    if data:
        from mlpstudy import dataset

        x_train, y_train = dataset.load(str(Path(data) / "train.parquet"))
        x_test, y_test = dataset.load(str(Path(data) / "test.parquet"))
        return x_train[:n_train], y_train[:n_train], x_test[:n_test], y_test[:n_test]
    rng = np.random.default_rng(12345)
    x_train = rng.random((n_train, N_IN), dtype=np.float32)
    x_test = rng.random((n_test, N_IN), dtype=np.float32)
    return x_train, rng.integers(0, 10, n_train), x_test, rng.integers(0, 10, n_test)


# --------------------------------------------------------------------------- references
def textbook_numpy(batch_size, epochs, x_train, y_train, x_test, y_test):
    """The MLP as a textbook writes it in NumPy: float32, allocate as you go."""
    import numpy as np

    rng = np.random.default_rng(0)
    w1 = rng.uniform(-np.sqrt(6 / N_IN), np.sqrt(6 / N_IN), (N_IN, N_HIDDEN)).astype(np.float32)
    w2 = rng.uniform(-np.sqrt(6 / N_HIDDEN), np.sqrt(6 / N_HIDDEN), (N_HIDDEN, N_OUT))
    w2 = w2.astype(np.float32)
    b1, b2 = np.zeros(N_HIDDEN, np.float32), np.zeros(N_OUT, np.float32)
    lr = np.float32(LEARNING_RATE)

    def forward(x):
        z1 = x @ w1 + b1
        a1 = np.maximum(z1, 0)
        z2 = a1 @ w2 + b2
        z2 = z2 - z2.max(axis=1, keepdims=True)
        return z1, a1, z2

    def scores(x, y):
        _, _, z2 = forward(x)
        log_p = z2 - np.log(np.exp(z2).sum(axis=1, keepdims=True))
        return -log_p[np.arange(len(y)), y].mean(), (z2.argmax(axis=1) == y).mean()

    times, cpu = [], []
    for _ in range(epochs):
        start, cpu_start = time.perf_counter(), time.process_time()
        order = rng.permutation(len(x_train))
        for s in range(0, len(x_train), batch_size):
            idx = order[s : s + batch_size]
            xb, yb = x_train[idx], y_train[idx]
            z1, a1, z2 = forward(xb)
            p = np.exp(z2)
            p /= p.sum(axis=1, keepdims=True)
            d2 = p
            d2[np.arange(len(yb)), yb] -= 1
            d2 /= len(yb)
            g_w2, g_b2 = a1.T @ d2, d2.sum(axis=0)
            d1 = (d2 @ w2.T) * (z1 > 0)
            g_w1, g_b1 = xb.T @ d1, d1.sum(axis=0)
            w1 -= lr * g_w1
            b1 -= lr * g_b1
            w2 -= lr * g_w2
            b2 -= lr * g_b2
        scores(x_train, y_train), scores(x_test, y_test)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return times, cpu


def plain_keras(batch_size, epochs, x_train, y_train, x_test, y_test):
    """``model.fit`` as a Keras user writes it, Keras defaults (no determinism, shuffle)."""
    import keras

    times, cpu = [], []

    class EpochClock(keras.callbacks.Callback):
        """Per epoch: fit's steps and its validation (test set), then the training set."""

        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.model.evaluate(x_train, y_train, batch_size=batch_size, verbose=0)
            times.append(time.perf_counter() - self.start)
            cpu.append(time.process_time() - self.cpu_start)

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(N_IN,)),
            keras.layers.Dense(N_HIDDEN, activation="relu", kernel_initializer="he_uniform"),
            keras.layers.Dense(N_OUT, activation="softmax", kernel_initializer="he_uniform"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=(x_test, y_test),
        callbacks=[EpochClock()],
        verbose=0,
    )
    return times, cpu


def plain_torch(batch_size, epochs, x_train, y_train, x_test, y_test, loader=False):
    """A PyTorch loop as the tutorials write it: ``nn.Sequential``, ``CrossEntropyLoss``,
    ``SGD``; the batches from indexing a ``randperm`` (or from a ``DataLoader``); the
    evaluation in one forward pass per set under ``no_grad``."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    x_train, y_train = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    x_test, y_test = torch.from_numpy(x_test), torch.from_numpy(y_test).long()
    model = nn.Sequential(nn.Linear(N_IN, N_HIDDEN), nn.ReLU(), nn.Linear(N_HIDDEN, N_OUT))
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()
    data = DataLoader(TensorDataset(x_train, y_train), batch_size=batch_size, shuffle=True)

    times, cpu = [], []
    for _ in range(epochs):
        start, cpu_start = time.perf_counter(), time.process_time()
        model.train()
        if loader:
            batches = data
        else:
            batches = (
                (x_train[i], y_train[i]) for i in torch.randperm(len(x_train)).split(batch_size)
            )
        for xb, yb in batches:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(x_train)
            loss_fn(logits, y_train).item(), (logits.argmax(1) == y_train).float().mean().item()
            (model(x_test).argmax(1) == y_test).float().mean().item()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return times, cpu


# --------------------------------------------------------------------------- one child
def child(
    impl: str,
    batch_size: int,
    epochs: int,
    n_train: int,
    n_test: int,
    data,
    net: str | None = None,
    trial: int = 0,
) -> dict:
    """Run one implementation in this (fresh) process; return its per-epoch times.
    ``net``: a catalog net for the backends (default: the study's MLP); ``impl`` "bound":
    that net's compute bound (:func:`bound_child`)."""
    from mlpstudy.training import thread_env

    # One CPU for the whole process, before any framework starts a thread (threads inherit
    # it), as the workflow's strict timing does: a framework with no thread-count API (JAX)
    # would otherwise use every core, and TensorFlow's runtime threads a second one.
    if not os.environ.get("BENCH_UNPINNED"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    os.environ.update(thread_env(1))
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np  # noqa: F401  (after the environment: BLAS reads it at load)

    if impl == "bound":
        return bound_child(net, batch_size, n_train, n_test)
    arrays = load_data(data, n_train, n_test)
    out = {"impl": impl, "batch_size": batch_size, "net": net, "trial": trial}
    if impl in BACKEND_RUNS:
        from mlpstudy import nets
        from mlpstudy.backends.base import TrainSpec
        from mlpstudy.runs import STUDY_COLUMNS
        from mlpstudy.training import run_training

        backend, options = BACKEND_RUNS[impl]
        spec = TrainSpec(
            LEARNING_RATE,
            batch_size,
            epochs,
            seed=0,
            trial=trial,
            options=options,
            net=nets.CATALOG[net or nets.DEFAULT],
            input_shape=IMAGE_SHAPE,
        )
        cpu_marks = [time.process_time()]
        result = run_training(
            backend, spec, *arrays, on_epoch=lambda row: cpu_marks.append(time.process_time())
        )
        m = result.metrics
        out.update(
            epoch_s=[row["epoch_s"] for row in result.history],
            epoch_cpu_s=[b - a for a, b in zip(cpu_marks, cpu_marks[1:])],
            step_s=m["steady_step_s"],
            eval_s=m["steady_eval_s"],
            loop_s=m["training_time_s"],
            import_s=m["import_time_s"],
            threads=m["thread_settings"],
            study={c: m[c] for c in STUDY_COLUMNS if c in m},  # the run's own coordinates
        )
    elif impl == "numpy-textbook":
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
        out["epoch_s"], out["epoch_cpu_s"] = textbook_numpy(batch_size, epochs, *arrays)
    elif impl == "keras-plain":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        out["epoch_s"], out["epoch_cpu_s"] = plain_keras(batch_size, epochs, *arrays)
    elif impl in ("torch-plain", "torch-dataloader"):
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
        out["epoch_s"], out["epoch_cpu_s"] = plain_torch(
            batch_size, epochs, *arrays, loader=impl == "torch-dataloader"
        )
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    return out


class ChildFailed(RuntimeError):
    """A child exited with an error; the message ends with its last line of stderr."""


def run_child(impl, batch_size, epochs, n_train, n_test, data, net=None, trial=0) -> dict:
    args = [
        sys.executable,
        __file__,
        "--child",
        impl,
        "--batch",
        str(batch_size),
        "--epochs",
        str(epochs),
        "--n-train",
        str(n_train),
        "--n-test",
        str(n_test),
        "--trial",
        str(trial),
    ]
    if data:
        args += ["--data", data]
    if net:
        args += ["--child-net", net]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors, text=True)
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        job_s = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            errors.seek(0)
            last = (errors.read().strip().splitlines() or [""])[-1]
            where = f"{impl} at batch {batch_size}" + (f" on {net}" if net else "")
            raise ChildFailed(f"{where} failed ({proc.returncode}): {last[:200]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    if impl == "bound":
        return result
    result["peak_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    result["overhead_s"] = job_s - result.get("loop_s", sum(result["epoch_s"]))
    return result


# --------------------------------------------------------------------------- report
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(rows: list[dict], bound: dict[int, float]) -> list[str]:
    lines = [
        "| batch | implementation | s/epoch | x bound | CPU s/epoch | steps s/epoch "
        "| eval s/epoch | first epoch s | peak MB | import s | job overhead s |",
        "|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        per_epoch = steady(r)
        cells = [
            str(r["batch_size"]),
            r["impl"],
            f"{per_epoch:.3f}",
            f"{per_epoch / bound[r['batch_size']]:.2f}",
            f"{statistics.median(r['epoch_cpu_s'][1:] or r['epoch_cpu_s']):.3f}",
            f"{r['step_s']:.3f}" if "step_s" in r else "",
            f"{r['eval_s']:.3f}" if "eval_s" in r else "",
            f"{r['epoch_s'][0]:.3f}",
            f"{r['peak_mb']:.0f}",
            f"{r['import_s']:.2f}" if "import_s" in r else "",
            f"{r['overhead_s']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def steady(row: dict) -> float:
    """Median s/epoch over the epochs after the first."""
    return statistics.median(row["epoch_s"][1:] or row["epoch_s"])


def targets(rows: list[dict], bound: dict[int, float]) -> list[str]:
    """The JAX/PyTorch issue's targets, for the rows this run has: met or not, with the
    numbers."""
    by = {(r["impl"], r["batch_size"]): r for r in rows}
    lines = []

    def check(ok: bool, text: str) -> None:
        lines.append(f"- {'met' if ok else 'NOT met'}: {text}")

    for batch, limit in ((512, 1.5), (32, 2.0)):
        if ("jax-scan", batch) in by:
            ratio = steady(by["jax-scan", batch]) / bound[batch]
            check(
                ratio <= limit,
                f"jax-scan at batch {batch}: {ratio:.2f}x the bound (target <= {limit}x)",
            )
    for batch in sorted(bound):
        if ("torch", batch) in by and ("torch-plain", batch) in by:
            ours, plain = steady(by["torch", batch]), steady(by["torch-plain", batch])
            check(
                ours <= plain,
                f"torch at batch {batch}: {ours:.3f} s/epoch, plain PyTorch "
                f"loop {plain:.3f} (target: no slower)",
            )
    for r in rows:
        if "import_s" in r and r["batch_size"] == min(bound):
            check(
                r["overhead_s"] <= r["import_s"] + 1,
                f"{r['impl']} per-job overhead {r['overhead_s']:.2f} s, import "
                f"{r['import_s']:.2f} s (target <= import + 1 s)",
            )
    return ["", "Targets:", ""] + lines if lines else []


def framework_versions() -> dict[str, str]:
    """Installed versions of the frameworks benchmarked (those that are installed)."""
    from importlib import metadata

    found = {}
    for name in ("tensorflow-cpu", "keras", "jax", "jaxlib", "optax", "torch"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 6000/1000 rows, 2 epochs (--references); 2000/500 rows, 1 epoch",
    )
    parser.add_argument(
        "--references",
        action="store_true",
        help="the study's MLP only, with the plain references (the former default)",
    )
    parser.add_argument("--nets", nargs="+", help="catalog nets (default: every one)")
    parser.add_argument("--trials", type=int, default=1, help="fresh runs per cell")
    parser.add_argument("--figure", help="write the scaling figure (PNG) here")
    parser.add_argument("--data", help="directory with train.parquet and test.parquet")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument(
        "--impls",
        nargs="+",
        choices=IMPLS,
        help=f"default: {' '.join(NET_IMPLS)} (all with --references)",
    )
    parser.add_argument("--out", help="Markdown report (default: backends.md, backends_nets.md)")
    parser.add_argument(
        "--unpinned",
        action="store_true",
        help="leave each run free to use every core (default: pinned to one CPU)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-net", help=argparse.SUPPRESS)
    parser.add_argument("--trial", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--n-train", type=int, default=60000, help="training rows (the split's first n)"
    )
    parser.add_argument("--n-test", type=int, default=10000, help="test rows (the first n)")
    args = parser.parse_args(argv)
    if args.unpinned:
        os.environ["BENCH_UNPINNED"] = "1"  # inherited by the children
    if args.child:
        print(
            json.dumps(
                child(
                    args.child,
                    args.batch,
                    args.epochs,
                    args.n_train,
                    args.n_test,
                    args.data,
                    net=args.child_net,
                    trial=args.trial,
                )
            ),
            flush=True,
        )
        os._exit(0)  # as a workflow job ends (workflow/scripts/train.py): no teardown

    if args.references:
        return references(args)
    return across_nets(parser, args)


def references(args) -> int:
    """The study's MLP with every implementation, references included (former default)."""
    args.impls = args.impls or list(IMPLS)
    args.out = args.out or str(HERE / "backends.md")
    n_train, n_test = (6000, 1000) if args.quick else (args.n_train, args.n_test)
    epochs = args.epochs or (2 if args.quick else 4)
    load_start = os.getloadavg()[0]
    rate = matmul_rate()
    bound = {b: epoch_flops(n_train, n_test, b) / rate for b in args.batches}
    rows = []
    for batch_size in args.batches:
        for impl in args.impls:
            rows.append(run_child(impl, batch_size, epochs, n_train, n_test, args.data))
            print(
                f"  {impl:18s} batch {batch_size:4d}: {steady(rows[-1]):.3f} s/epoch",
                file=sys.stderr,
            )
    rate_after = matmul_rate()  # the machine's state may drift: report both

    import numpy as np

    from mlpstudy.training import blas_name

    versions = framework_versions()
    head = [
        f"Backend benchmark, {datetime.date.today().isoformat()}: {cpu_model()}, "
        f"{os.cpu_count()} cores, one thread per run; Python {platform.python_version()}, "
        f"NumPy {np.__version__} ({blas_name()})"
        + "".join(f", {name} {version}" for name, version in versions.items())
        + ".",
        "",
        f"Data: {'parquet from ' + args.data if args.data else 'random, MNIST-sized'} "
        f"({n_train} train / {n_test} test rows), {epochs} epochs, lr {LEARNING_RATE}. "
        f"Single-thread float32 matmul: {rate / 1e9:.1f} GFLOP/s "
        f"({rate_after / 1e9:.1f} at the end). "
        f"Compute bound per epoch: {epoch_flops(n_train, n_test, 0) / 1e9:.2f} GFLOP "
        f"-> {next(iter(bound.values())):.3f} s.",
        "",
        "s/epoch (wall) and CPU s/epoch (this process, all its threads): medians over "
        "epochs 2..; steps/eval: wall, the same medians (backends only); "
        "keras-plain evaluates at its training batch size (fit's validation_data, "
        "evaluate in a callback). import s: the framework's import in that job "
        "(backends only); job overhead s: the job's wall time minus its training loop. "
        f"Load average at the start: {load_start:.1f}, at the end: {os.getloadavg()[0]:.1f}.",
        "",
    ]
    text = "\n".join(head + table(rows, bound) + targets(rows, bound)) + "\n"
    print(text)
    Path(args.out).write_text(HOW_TO + "\n" + text)
    return 0


# --------------------------------------------------------------------------- across nets
def machine_line(what: str) -> str:
    """The machine, the software and the threads: the report's first line."""
    import numpy as np

    from mlpstudy.training import blas_name

    return (
        f"{what}, {datetime.date.today().isoformat()}: {cpu_model()}, "
        f"{os.cpu_count()} cores, one thread per run; Python {platform.python_version()}, "
        f"NumPy {np.__version__} ({blas_name()})"
        + "".join(f", {name} {version}" for name, version in framework_versions().items())
        + "."
    )


def per_trial_frame(runs: list[dict], n_train: int, dataset: str):
    """The backends' runs as :func:`mlpstudy.figures.scaling.per_trial` gives the
    workflow's: time per step (the steps' time per epoch over the epoch's steps) and
    FLOPs per step per (backend, net, batch size, trial)."""
    import pandas as pd

    from mlpstudy import nets

    rows = []
    for r in runs:
        per_image = sum(nets.CATALOG[r["net"]].flops(IMAGE_SHAPE))
        rows.append(
            {
                **r["study"],
                "dataset": dataset,
                "backend": r["impl"],
                "net": r["net"],
                "batch_size": r["batch_size"],
                "trial": r["trial"],
                "flops_per_step": r["batch_size"] * per_image,
                "time_per_step_s": r["step_s"] / -(-n_train // r["batch_size"]),
            }
        )
    return pd.DataFrame(rows)


def crossover_lines(trials, n_trials: int) -> list[str]:
    """Each framework's crossover against NumPy: the workflow's rule with two trials or
    more; with one, the first cell by FLOPs where its time per step is below NumPy's
    (a point estimate, no interval)."""
    from mlpstudy.figures import scaling

    lines = ["", "Crossover against NumPy (first (net, batch) by FLOPs per step):", ""]
    if n_trials >= 2:
        for _, r in scaling.crossover_table(trials).iterrows():
            text = r["crossover"]
            if r["crossover"] != scaling.NOT_WITHIN:
                low, high = r["ratio_ci_low"], r["ratio_ci_high"]
                text += (
                    f": {r['ratio']:.2f}x NumPy's time per step, "
                    f"{r['confidence']:.0%} interval {low:.2f}-{high:.2f}"
                )
            lines.append(f"- {r['backend']}: {text} ({r['cells_compared']} cells compared)")
        return lines if len(lines) > 3 else lines + ["- no framework but NumPy ran"]
    ref = trials[trials["backend"] == scaling.REFERENCE].set_index(["net", "batch_size"])
    for impl in [m for m in dict.fromkeys(trials["backend"]) if m != scaling.REFERENCE]:
        mine = trials[trials["backend"] == impl].sort_values("flops_per_step", kind="stable")
        text = scaling.NOT_WITHIN
        for _, r in mine.iterrows():
            key = (r["net"], r["batch_size"])
            if key in ref.index and r["time_per_step_s"] < ref.loc[key, "time_per_step_s"]:
                ratio = r["time_per_step_s"] / ref.loc[key, "time_per_step_s"]
                text = f"net={key[0]}, batch {key[1]}: {ratio:.2f}x NumPy's time per step"
                break
        lines.append(f"- {impl}: {text} (one trial: point estimate, no interval)")
    return lines if len(lines) > 3 else lines + ["- no framework but NumPy ran"]


def nets_table(runs: list[dict], bounds: dict, failed: list[str]) -> list[str]:
    lines = [
        "| net | batch | implementation | s/epoch | x bound | steps s/epoch | x steps bound "
        "| eval s/epoch | x eval bound | first epoch s | peak MB |",
        "|:---|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_cell: dict = {}
    for r in runs:
        by_cell.setdefault((r["net"], r["batch_size"]), {}).setdefault(r["impl"], []).append(r)
    for (net, batch), b in bounds.items():
        epoch_bound = b["steps_bound_s"] + b["eval_bound_s"]
        lines.append(
            f"| {net} | {batch} | *bound* | {epoch_bound:.3f} | 1.00 | {b['steps_bound_s']:.3f} "
            f"| 1.00 | {b['eval_bound_s']:.3f} | 1.00 |  |  |"
        )
        for impl, trials in by_cell.get((net, batch), {}).items():

            def mean(f, trials=trials):
                return statistics.fmean(f(t) for t in trials)

            epoch, steps, evals = (
                mean(steady),
                mean(lambda t: t["step_s"]),
                mean(lambda t: t["eval_s"]),
            )
            cells = [
                net,
                str(batch),
                impl,
                f"{epoch:.3f}",
                f"{epoch / epoch_bound:.2f}",
                f"{steps:.3f}",
                f"{steps / b['steps_bound_s']:.2f}",
                f"{evals:.3f}",
                f"{evals / b['eval_bound_s']:.2f}",
                f"{mean(lambda t: t['epoch_s'][0]):.3f}",
                f"{max(t['peak_mb'] for t in trials):.0f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    if failed:
        lines += ["", "Failed:", ""] + [f"- {f}" for f in failed]
    return lines


def nets_targets(runs: list[dict], bounds: dict) -> list[str]:
    """Issue 18's benchmark targets, for the rows this run has."""
    lines = []
    numpy_runs: dict[tuple, list[dict]] = {}
    for r in runs:
        if r["impl"] == "numpy":
            numpy_runs.setdefault((r["net"], r["batch_size"]), []).append(r)
    for net, batch, limit in (("cnn", 128, 2.0), ("cnn-small", 128, 2.0), ("mlp", 512, 1.3)):
        if (net, batch) in numpy_runs and (net, batch) in bounds:
            b = bounds[net, batch]
            epoch = statistics.mean(steady(r) for r in numpy_runs[net, batch])  # as the table
            ratio = epoch / (b["steps_bound_s"] + b["eval_bound_s"])
            lines.append(
                f"- {'met' if ratio <= limit else 'NOT met'}: numpy {net} at batch {batch}: "
                f"{ratio:.2f}x its bound (target <= {limit}x)"
            )
    for r in runs:
        if (r["net"], r["batch_size"], r["trial"]) == ("cnn", 128, 0):
            lines.append(
                f"- {r['impl']} cnn at batch 128: peak {r['peak_mb']:.0f} MB (target: within "
                "the memory request the workflow makes for it, workflow/rules/common.smk "
                "train_mem_mb)"
            )
    return ["", "Targets:", ""] + lines if lines else []


def across_nets(parser, args) -> int:
    """Every backend on every net at every batch size (module docstring)."""
    from mlpstudy import nets

    names = args.nets or list(nets.CATALOG)
    unknown = [n for n in names if n not in nets.CATALOG]
    if unknown:
        parser.error(f"unknown net(s) {unknown}; the catalog has {', '.join(nets.CATALOG)}")
    impls = args.impls or list(NET_IMPLS)
    refs = [i for i in impls if i in REFERENCE_IMPLS]
    if refs:
        parser.error(f"{', '.join(refs)}: written for the study's MLP only; use --references")
    n_train, n_test = (2000, 500) if args.quick else (args.n_train, args.n_test)
    epochs = args.epochs or 2  # the second is the steady state: the first traces, compiles
    load_start = os.getloadavg()[0]
    bounds, runs, failed = {}, [], []
    for net in names:
        for batch in args.batches:
            bounds[net, batch] = run_child("bound", batch, 1, n_train, n_test, None, net=net)
            for trial in range(args.trials):
                for impl in impls:
                    try:
                        r = run_child(
                            impl, batch, epochs, n_train, n_test, args.data, net=net, trial=trial
                        )
                    except ChildFailed as error:
                        failed.append(str(error))
                        print(f"  {error}", file=sys.stderr)
                        continue
                    runs.append(r)
                    print(
                        f"  {net:10s} {impl:18s} batch {batch:4d} trial {trial}: "
                        f"{steady(r):.3f} s/epoch",
                        file=sys.stderr,
                    )
    dataset = "mnist" if args.data else "random"
    trials = per_trial_frame(runs, n_train, dataset)
    head = [
        machine_line("Backend benchmark across nets"),
        "",
        f"Data: {'parquet from ' + args.data if args.data else 'random, MNIST-sized'} "
        f"({n_train} train / {n_test} test rows), {epochs} epoch(s), {args.trials} trial(s) "
        f"per cell, lr {LEARNING_RATE}, SGD. Load average at the start: {load_start:.1f}, "
        f"at the end: {os.getloadavg()[0]:.1f}.",
        "",
        "s/epoch: the median over the epochs after the first (the only one with one epoch: "
        "it then carries tracing and compilation), and the same for the steps and the eval; "
        "each a mean over trials. *bound*: the net's matrix products of the epoch timed "
        "alone in a pinned single-thread child (steps: every step's forward and backward "
        f"products; eval: the forward products over the training and test sets, timed on "
        f"{EVAL_ROWS} images); x bound: the time over its bound. Peak MB: the child's "
        "peak RSS (the largest over trials).",
        "",
    ]
    text = head + nets_table(runs, bounds, failed)
    if len(trials):
        text += crossover_lines(trials, args.trials)
    text += nets_targets(runs, bounds)
    text = "\n".join(text) + "\n"
    print(text)
    Path(args.out or HERE / "backends_nets.md").write_text(HOW_TO + "\n" + text)
    if args.figure and len(trials):
        import pandas as pd

        from mlpstudy.figures import scaling

        bound = pd.DataFrame(
            [
                {
                    "flops_per_step": batch * sum(nets.CATALOG[net].flops(IMAGE_SHAPE)),
                    "time_per_step_s": b["step_s"],
                }
                for (net, batch), b in bounds.items()
            ]
        )
        crossovers = scaling.crossover_table(trials) if args.trials >= 2 else None
        scaling.plot_scaling(
            scaling.scaling_table(trials), args.figure, bound=bound, crossovers=crossovers
        )
        print(f"wrote {args.figure}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
