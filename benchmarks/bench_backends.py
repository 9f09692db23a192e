"""Per-epoch time of each backend against the compute bound and plain references.

    .venv/bin/python benchmarks/bench_backends.py [--quick] [--data results/data/mnist]

One thread everywhere. Every implementation runs in its own subprocess (fresh
interpreter, its own framework import, its own peak memory, read by ``os.wait4``) on
MNIST-sized data: random pixels in [0, 1] (60000 x 784 train, 10000 test), or the
parquet splits given with ``--data``. Rows, side by side, for each batch size:

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
def child(impl: str, batch_size: int, epochs: int, n_train: int, n_test: int, data) -> dict:
    """Run one implementation in this (fresh) process; return its per-epoch times."""
    from mlpstudy.training import thread_env

    # One CPU for the whole process, before any framework starts a thread (threads inherit
    # it), as the workflow's strict timing does: a framework with no thread-count API (JAX)
    # would otherwise use every core, and TensorFlow's runtime threads a second one.
    if not os.environ.get("BENCH_UNPINNED"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    os.environ.update(thread_env(1))
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np  # noqa: F401  (after the environment: BLAS reads it at load)

    arrays = load_data(data, n_train, n_test)
    out = {"impl": impl, "batch_size": batch_size}
    if impl in BACKEND_RUNS:
        from mlpstudy.backends.base import TrainSpec
        from mlpstudy.training import run_training

        backend, options = BACKEND_RUNS[impl]
        spec = TrainSpec(LEARNING_RATE, batch_size, epochs, seed=0, trial=0, options=options)
        cpu_marks = [time.process_time()]
        result = run_training(
            backend, spec, *arrays, on_epoch=lambda row: cpu_marks.append(time.process_time())
        )
        m = result.metrics
        out.update(
            epoch_s=[row["epoch_s"] for row in result.history],
            epoch_cpu_s=[b - a for a, b in zip(cpu_marks, cpu_marks[1:])],
            step_s=m["step_time_s"] / epochs,
            eval_s=m["eval_time_s"] / epochs,
            loop_s=m["training_time_s"],
            import_s=m["import_time_s"],
            threads=m["thread_settings"],
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


def run_child(impl, batch_size, epochs, n_train, n_test, data) -> dict:
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
    ]
    if data:
        args += ["--data", data]
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    job_s = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{impl} at batch {batch_size} failed ({proc.returncode})")
    result = json.loads(stdout.strip().splitlines()[-1])
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
    parser.add_argument("--quick", action="store_true", help="6000/1000 rows, 2 epochs")
    parser.add_argument("--data", help="directory with train.parquet and test.parquet")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--out", default=str(HERE / "backends.md"))
    parser.add_argument(
        "--unpinned",
        action="store_true",
        help="leave each run free to use every core (default: pinned to one CPU)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--n-train", type=int, default=60000, help=argparse.SUPPRESS)
    parser.add_argument("--n-test", type=int, default=10000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.unpinned:
        os.environ["BENCH_UNPINNED"] = "1"  # inherited by the children
    if args.child:
        print(
            json.dumps(
                child(args.child, args.batch, args.epochs, args.n_train, args.n_test, args.data)
            ),
            flush=True,
        )
        os._exit(0)  # as a workflow job ends (workflow/scripts/train.py): no teardown

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
        "epochs 2..; steps/eval: wall, means over all epochs (backends only); "
        "keras-plain evaluates at its training batch size (fit's validation_data, "
        "evaluate in a callback). import s: the framework's import in that job "
        "(backends only); job overhead s: the job's wall time minus its training loop. "
        f"Load average at the start: {load_start:.1f}, at the end: {os.getloadavg()[0]:.1f}.",
        "",
    ]
    text = "\n".join(head + table(rows, bound) + targets(rows, bound)) + "\n"
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
