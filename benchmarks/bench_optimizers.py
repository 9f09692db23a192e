"""Seconds per epoch of every optimizer beside SGD, per backend and batch size.

Each measurement is one fresh subprocess (the job's own path: ``run_training``, one
thread, pinned to one core) training on the real MNIST, read from the original gz files
(read-only). Measurements are interleaved: every repeat runs each (backend, optimizer,
batch) once, in a shuffled order, so slow phases of the machine hit every cell alike.
A run's s/epoch is the median of its epochs after the first (the first carries tracing
and compilation); a cell's is the median over repeats.

Printed: a table with the ratio of each optimizer to the same backend's SGD and of
NumPy to every other backend at the same optimizer and batch, then the targets of
issue 11: NumPy Adam <= 2.0x NumPy SGD per epoch at batch 32 and <= 1.2x at batch
512, and NumPy no slower than Keras for any optimizer at any batch size.

    .venv/bin/python benchmarks/bench_optimizers.py          # 60000 rows, 3 epochs, 3 repeats
    .venv/bin/python benchmarks/bench_optimizers.py --quick  # 6000 rows, 2 epochs, 1 repeat

Run it on a quiet machine (not beside the test suite or another benchmark).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

#: label -> (optimizer, settings): the axes' optimizers, Nesterov as its own row.
OPTIMIZERS = {
    "sgd": ("sgd", {}),
    "momentum": ("momentum", {"nesterov": False}),
    "nesterov": ("momentum", {"nesterov": True}),
    "adam": ("adam", {}),
}
DEFAULT_DATA = "/work/shared/data/mnist"


def load(data_dir: str, rows: int | None):
    """MNIST from the original gz files: (x_train, y_train, x_test, y_test), float32 in [0, 1]."""
    from mlpstudy import dataset, idx

    def split(images, labels, n):
        x, y = idx.read_pair(Path(data_dir) / images, Path(data_dir) / labels)
        x, y = dataset.to_features(x[:n]), y[:n].astype("int64")
        return x, y

    test_rows = None if rows is None else max(1000, rows // 6)
    return (
        *split("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", rows),
        *split("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", test_rows),
    )


def worker(args) -> None:
    """One measurement in this (fresh) process; prints its result as one JSON line."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    from mlpstudy.backends.base import TrainSpec
    from mlpstudy.training import run_training

    data = load(args.data, args.rows)
    optimizer, settings = OPTIMIZERS[args.optimizer]
    spec = TrainSpec(
        learning_rate=args.lr,
        batch_size=args.batch,
        epochs=args.epochs,
        seed=0,
        trial=0,
        optimizer=optimizer,
        optimizer_settings=settings,
    )
    result = run_training(args.backend, spec, *data)
    epochs = [row["epoch_s"] for row in result.history]
    m = result.metrics
    print(
        json.dumps(
            {
                "epoch_s": statistics.median(epochs[1:] or epochs),
                "step_s": m["step_time_s"] / m["epochs_completed"],
                "first_epoch_s": m["first_epoch_s"],
                "final_train_loss": m["final_train_loss"],
            }
        )
    )


def measure(backend, optimizer, batch, args, cpu) -> dict:
    cmd = [
        sys.executable, __file__, "--worker", "--backend", backend, "--optimizer", optimizer,
        "--batch", str(batch), "--epochs", str(args.epochs), "--lr", str(args.lr),
        "--data", args.data, "--cpu", str(cpu),
    ]  # fmt: skip
    if args.rows:
        cmd += ["--rows", str(args.rows)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{backend}/{optimizer}/{batch} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(cells: dict, args) -> list[str]:
    """The table and the target lines, as printed."""
    lines = [
        "| batch | backend | optimizer | s/epoch | x own SGD | steps s/epoch | "
        "x own SGD (steps) | numpy x this | final loss |",
        "|---:|:---|:---|---:|---:|---:|---:|---:|---:|",
    ]
    med = {key: statistics.median(r["epoch_s"] for r in runs) for key, runs in cells.items()}
    step = {key: statistics.median(r["step_s"] for r in runs) for key, runs in cells.items()}
    for batch in args.batches:
        for backend in args.backends:
            for opt in args.optimizers:
                key = (backend, opt, batch)
                sgd = (backend, "sgd", batch)
                ours = ("numpy", opt, batch)
                loss = statistics.median(r["final_train_loss"] for r in cells[key])
                vs_numpy = f"{med[ours] / med[key]:.2f}" if ours in med else ""
                lines.append(
                    f"| {batch} | {backend} | {opt} | {med[key]:.3f} | "
                    f"{med[key] / med[sgd]:.2f} | {step[key]:.3f} | {step[key] / step[sgd]:.2f} | "
                    f"{vs_numpy} | {loss:.4f} |"
                )
    lines.append("")
    checks = []
    for batch, limit in ((32, 2.0), (512, 1.2)):
        key, sgd = ("numpy", "adam", batch), ("numpy", "sgd", batch)
        if key in med and sgd in med:
            ratio = med[key] / med[sgd]
            checks.append((f"NumPy Adam / NumPy SGD at batch {batch}: {ratio:.2f} <= {limit}",
                           ratio <= limit))  # fmt: skip
    for backend in args.backends:
        if backend == "numpy":
            continue
        for batch in args.batches:
            for opt in args.optimizers:
                ours, theirs = ("numpy", opt, batch), (backend, opt, batch)
                if ours in med and theirs in med:
                    ratio = med[ours] / med[theirs]
                    checks.append(
                        (f"NumPy / {backend} {opt} at batch {batch}: {ratio:.2f} <= 1", ratio <= 1)
                    )
    lines += [f"{'PASS' if ok else 'FAIL'}  {text}" for text, ok in checks]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6000 rows, 2 epochs, 1 repeat")
    parser.add_argument("--backends", default="numpy,tensorflow")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--batches", default="32,512")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=None, help="training rows (default: all)")
    parser.add_argument("--lr", type=float, default=0.01, help="the same for every optimizer")
    parser.add_argument("--data", default=DEFAULT_DATA, help="directory of the MNIST .gz files")
    # one measurement (internal)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--optimizer", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.quick:
        args.rows, args.epochs, args.repeats = args.rows or 6000, 2, 1
    args.backends = args.backends.split(",")
    args.optimizers = args.optimizers.split(",")
    args.batches = [int(b) for b in args.batches.split(",")]
    if "sgd" not in args.optimizers:
        args.optimizers.insert(0, "sgd")  # the reference of every ratio
    cpu = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    grid = [(b, o, n) for b in args.backends for o in args.optimizers for n in args.batches]
    cells: dict = {key: [] for key in grid}
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    rng = random.Random(0)
    for repeat in range(args.repeats):
        order = grid[:]
        rng.shuffle(order)
        for key in order:
            cells[key].append(measure(*key, args, cpu))
            print(f"repeat {repeat + 1}/{args.repeats} {key}: {cells[key][-1]['epoch_s']:.3f} "
                  "s/epoch", file=sys.stderr, flush=True)  # fmt: skip
    from mlpstudy import machine

    env = machine.environment()
    print(
        f"Optimizer benchmark, {time.strftime('%Y-%m-%d')}: {env['cpu_model']}, "
        f"{env['logical_cores']} logical cores, one thread per run, pinned to CPU {cpu}; "
        f"Python {env['python']}, "
        + ", ".join(f"{k} {env[k]}" for k in ("numpy", "tensorflow", "keras") if env.get(k))
        + "."
    )
    print(
        f"\nData: MNIST from {args.data} ({args.rows or 60000} train rows), {args.epochs} "
        f"epochs, lr {args.lr}, {args.repeats} interleaved repeats, one subprocess each; "
        "s/epoch: median over epochs 2.. (shuffle + steps + evaluation), then over repeats; "
        "steps s/epoch: the optimisation steps only (mean over all epochs). "
        f"Load average at the start: {load_start:.1f}, at the end: {os.getloadavg()[0]:.1f}; "
        f"{time.perf_counter() - started:.0f} s in all.\n"
    )
    print("\n".join(report(cells, args)))


if __name__ == "__main__":
    main()
