"""Where a NumPy training step's time goes: each layer's forward and backward pass.

    .venv/bin/python benchmarks/profile_numpy.py [--nets cnn-small mlp] [--batches 128]
        [--data results/data/mnist] [--n-train 12000] [--steps 300]

One thread, pinned to one CPU before NumPy loads, as ``bench_backends``' children are:
OpenBLAS starts its threads when NumPy is imported, and a thread started before the pin
keeps every CPU (a profile pinned after the import lets a large product run on two
cores). Per (net, batch), the training loop of ``mlpstudy.backends.numpy_mlp`` on the
first ``--n-train`` rows (``--data``'s parquet, else random pixels), ``--steps`` steps
after 20 of warm-up, from the run's shared start with SGD: the median of each part of a
step, in ms: the batch's gather from the shuffled order, every op's forward and backward
passes (summed over the step's passes, ``numpy_layers.pass_rows``), the rest of the
backward pass (softmax gradient, chunk bookkeeping) and the SGD update; and the
evaluation's time per 1000 images. Timing wraps each op's methods (well under a
microsecond a call), so the parts sum to a little more than an unwrapped step.

Run it on a quiet machine (nothing else running). Markdown to stdout.
"""

from __future__ import annotations

import os

# Before NumPy loads (see above): one CPU, one thread.
if not os.environ.get("BENCH_UNPINNED"):
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
os.environ.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backends import IMAGE_SHAPE, LEARNING_RATE, load_data, machine_line  # noqa: E402

WARMUP = 20


def profile(net_name: str, batch: int, arrays, steps: int) -> dict:
    """Median ms per step of each part of ``steps`` training steps (module docstring)."""
    from mlpstudy import nets
    from mlpstudy.backends import numpy_layers, numpy_mlp
    from mlpstudy.backends.base import TrainSpec

    net = nets.CATALOG[net_name]
    x_train, y_train, x_test, _ = arrays
    spec = TrainSpec(LEARNING_RATE, batch, 1, seed=0, trial=0, net=net, input_shape=IMAGE_SHAPE)
    run_start = numpy_mlp.start(spec)
    flat, params = numpy_layers.flat({k: run_start.params[k] for k in net.param_names}, np.float32)
    x = np.ascontiguousarray(x_train, np.float32).reshape(len(x_train), *IMAGE_SHAPE)
    onehot = numpy_layers.one_hot(y_train, net.n_classes, np.float32)
    model = numpy_layers.trainer(net, IMAGE_SHAPE, batch, np.float32)
    sgd = numpy_mlp.SGD(flat, model.grad, LEARNING_RATE, {})
    batch_x = np.empty((batch, *IMAGE_SHAPE), np.float32)
    batch_y = np.empty((batch, net.n_classes), np.float32)
    spent: dict[str, float] = defaultdict(float)

    def timed(name, method):
        def call(*args, **kwargs):
            t = time.perf_counter()
            out = method(*args, **kwargs)
            spent[name] += time.perf_counter() - t
            return out

        return call

    for i, op in enumerate(model.ops):
        label = f"{i} {type(op).__name__.removesuffix('Op')}"
        op.forward = timed(f"{label} forward", op.forward)
        op.backward = timed(f"{label} backward", op.backward)
    parts: dict[str, list[float]] = defaultdict(list)
    order = np.random.default_rng(0).permutation(len(x))
    starts = range(0, len(x) - batch + 1, batch)
    for k in range(WARMUP + steps):
        s = starts[k % len(starts)]
        spent.clear()
        t0 = time.perf_counter()
        xb = np.take(x, order[s : s + batch], axis=0, out=batch_x, mode="clip")
        yb = np.take(onehot, order[s : s + batch], axis=0, out=batch_y, mode="clip")
        t1 = time.perf_counter()
        model.backward(params, xb, yb, LEARNING_RATE / batch)
        t2 = time.perf_counter()
        sgd.step()
        t3 = time.perf_counter()
        if k < WARMUP:
            continue
        parts["step"].append(t3 - t0)
        parts["gather"].append(t1 - t0)
        for name, s_ in spent.items():
            parts[name].append(s_)
        parts["rest of backward"].append((t2 - t1) - sum(spent.values()))
        parts["SGD update"].append(t3 - t2)
    evaluator = numpy_layers.evaluator(net, IMAGE_SHAPE, len(x_test), np.float32)
    evals = []
    for _ in range(5):
        t = time.perf_counter()
        evaluator.evaluate(params, x_test.reshape(len(x_test), *IMAGE_SHAPE), arrays[3])
        evals.append((time.perf_counter() - t) / len(x_test) * 1000)
    out = {name: 1e3 * statistics.median(v) for name, v in parts.items()}
    out["evaluation per 1000 images"] = 1e3 * statistics.median(evals)
    out["passes"] = -(-batch // model.rows)
    return out


def report(results: dict[tuple[str, int], dict]) -> list[str]:
    lines = [machine_line("NumPy step profile"), ""]
    for (net, batch), parts in results.items():
        lines += [
            f"{net}, batch {batch}: {parts.pop('passes')} pass(es) per step",
            "",
            "| part | ms |",
            "|:---|---:|",
        ]
        lines += [f"| {name} | {ms:.3f} |" for name, ms in parts.items()]
        lines.append("")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nets", nargs="+", default=["cnn-small", "mlp"])
    parser.add_argument("--batches", nargs="+", type=int, default=[128])
    parser.add_argument("--data", help="a directory with train.parquet and test.parquet")
    parser.add_argument("--n-train", type=int, default=12000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    arrays = load_data(args.data, args.n_train, args.n_test)
    results = {
        (net, batch): profile(net, batch, arrays, args.steps)
        for net in args.nets
        for batch in args.batches
    }
    print("\n".join(report(results)))


if __name__ == "__main__":
    main()
