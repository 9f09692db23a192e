"""Does mixed precision pay on this CPU? bfloat16 against float32, per backend, net, batch.

    .venv/bin/python benchmarks/bench_precision.py [--data results/data/mnist]
        [--backends numpy tensorflow jax torch] [--nets mlp cnn-small] [--batches 128 512]
        [--trials 3] [--epochs 3] [--n-train 12000] [--out benchmarks/precision.md]

Issue 19's benchmark. Every run is a fresh, pinned, single-thread child process (as a
workflow job's timed loop: ``bench_backends.child``'s set-up) training one backend on one
net at one batch size from the shared start, under ``precision`` float32 or bfloat16
(mixed: float32 weights, bfloat16 compute, as each framework does it; NumPy's written
out, docs/backends.md). The two precisions of a cell run alternately, trial by trial
(f32, bf16, f32, bf16, ...), so a drift of the machine falls on both. The figure of a
run is its steady-state epoch time (the median of the epochs after the first: the first
carries tracing and compilation); the cell's ratio is bf16 / f32 of the trials' medians,
with a 95 % interval from the trials' paired log-ratios (t interval, ``trials - 1`` df;
with 3 trials a wide one). Mixed precision *pays* where the whole interval is below 1,
*costs* where it is above 1, and is undecided otherwise.

The report (Markdown, ``--out``) names the machine and whether its CPU has native
bfloat16 (``avx512_bf16``/``amx_bf16`` in /proc/cpuinfo: without them every framework
emulates bfloat16 and is expected to lose). It also gives how far mixed precision moved
the runs: the largest per-epoch difference of a bfloat16 run's training loss (relative)
and test accuracy from its float32 twin's (same start, same batches). About 10 minutes
on a quiet 2-core machine with the defaults.
Never run it beside the test suite or another benchmark: it measures the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import bench_backends  # noqa: E402  (the pinned child's set-up, data, machine line)

PRECISIONS = ("float32", "bfloat16")
LEARNING_RATE = 0.05


def child(backend: str, net: str, batch: int, precision: str, args) -> dict:
    """One run in this fresh process, pinned to one CPU with one thread, as a job's loop."""
    from mlpstudy.training import thread_env

    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    os.environ.update(thread_env(1))
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    from mlpstudy import nets
    from mlpstudy.backends.base import TrainSpec
    from mlpstudy.training import run_training

    arrays = bench_backends.load_data(args.data, args.n_train, args.n_test)
    spec = TrainSpec(LEARNING_RATE, batch, args.epochs, seed=0, trial=args.trial,
                     net=nets.CATALOG[net], precision=precision)  # fmt: skip
    result = run_training(backend, spec, *arrays)
    return {
        "backend": backend,
        "net": net,
        "batch": batch,
        "precision": precision,
        "trial": args.trial,
        "steady_s": result.metrics["steady_epoch_s"],
        "first_s": result.metrics["first_epoch_s"],
        "final_loss": result.metrics["final_train_loss"],
        "losses": [row["train_loss"] for row in result.history],
        "accuracies": [row["test_accuracy"] for row in result.history],
    }


def run_child(backend, net, batch, precision, trial, args) -> dict:
    command = [sys.executable, __file__, "--child", backend, "--child-net", net,
               "--batch", str(batch), "--precision", precision, "--trial", str(trial),
               "--epochs", str(args.epochs), "--n-train", str(args.n_train),
               "--n-test", str(args.n_test)]  # fmt: skip
    command += ["--data", args.data] if args.data else []
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        if proc.returncode != 0:
            errors.seek(0)
            last = (errors.read().strip().splitlines() or [""])[-1]
            raise RuntimeError(f"{backend} {net} batch {batch} {precision}: {last[:200]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratio_interval(pairs: list[tuple[float, float]]) -> tuple[float, float, float]:
    """bf16 / f32 of the medians, and the 95 % t interval of the paired log-ratios."""
    from scipy import stats

    ratio = statistics.median(b for _, b in pairs) / statistics.median(a for a, _ in pairs)
    logs = [math.log(b / a) for a, b in pairs]
    if len(logs) < 2:
        return ratio, math.nan, math.nan
    half = stats.t.ppf(0.975, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    mean = statistics.fmean(logs)
    return ratio, math.exp(mean - half), math.exp(mean + half)


def verdict(low: float, high: float) -> str:
    if high < 1:
        return "pays"
    if low > 1:
        return "costs"
    return "undecided"


def report(rows: list[dict], args) -> list[str]:
    from mlpstudy.machine import native_bfloat16

    native = native_bfloat16()
    lines = [
        bench_backends.machine_line("bench_precision")
        + f" Native bfloat16 (avx512_bf16/amx_bf16): {native}.",
        "",
        f"{args.n_train} training rows, {args.epochs} epochs, {args.trials} trials per "
        "precision, alternating; steady epoch = median of the epochs after the first; the "
        "last two columns: the largest per-epoch difference of each bfloat16 run from its "
        "float32 twin (same start, same batches), over epochs and trials.",
        "",
        "| backend | net | batch | float32 s/epoch | bfloat16 s/epoch | bf16 / f32 [95 % CI] "
        "| mixed precision | loss bf16 vs f32 | test accuracy bf16 - f32 |",
        "|:---|:---|---:|---:|---:|:---|:---|---:|---:|",
    ]
    order = {name: i for i, name in enumerate(args.backends + args.nets)}
    cells = sorted({(r["backend"], r["net"], r["batch"]) for r in rows},
                   key=lambda c: (order[c[0]], order[c[1]], c[2]))  # fmt: skip
    for backend, net, batch in cells:
        runs = {(r["precision"], r["trial"]): r for r in rows
                if (r["backend"], r["net"], r["batch"]) == (backend, net, batch)}  # fmt: skip
        trials = sorted({t for _, t in runs})
        pairs = [(runs["float32", t]["steady_s"], runs["bfloat16", t]["steady_s"])
                 for t in trials]  # fmt: skip
        ratio, low, high = ratio_interval(pairs)
        # how far mixed precision moved the run: the largest per-epoch difference from
        # the float32 twin (same start and batches), over epochs and trials
        twins = [(runs["float32", t], runs["bfloat16", t]) for t in trials]
        loss_gap = max(abs(b / a - 1) for f, m in twins
                       for a, b in zip(f["losses"], m["losses"]))  # fmt: skip
        accuracy_gap = max(abs(b - a) for f, m in twins
                           for a, b in zip(f["accuracies"], m["accuracies"]))  # fmt: skip
        lines.append(
            f"| {backend} | {net} | {batch} | {statistics.median(a for a, _ in pairs):.3f} "
            f"| {statistics.median(b for _, b in pairs):.3f} | x{ratio:.2f} "
            f"[{low:.2f}, {high:.2f}] | {verdict(low, high)} "
            f"| <= {loss_gap:.1e} relative | <= {100 * accuracy_gap:.2f} points |"
        )
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="directory with train.parquet and test.parquet")
    parser.add_argument("--backends", nargs="+", default=["numpy", "tensorflow", "jax", "torch"])
    parser.add_argument("--nets", nargs="+", default=["mlp", "cnn-small"])
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=12000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--out", default=str(HERE / "precision.md"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-net", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    parser.add_argument("--trial", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        out = child(args.child, args.child_net, args.batch, args.precision, args)
        print(json.dumps(out), flush=True)
        os._exit(0)  # as a workflow job ends: no framework teardown
    rows = []
    for backend in args.backends:
        for net in args.nets:
            for batch in args.batches:
                for trial in range(args.trials):
                    for precision in PRECISIONS:  # alternating: a drift falls on both
                        rows.append(run_child(backend, net, batch, precision, trial, args))
                        r = rows[-1]
                        print(f"{backend} {net} {batch} {precision} t{trial}: "
                              f"{r['steady_s']:.3f} s/epoch", file=sys.stderr)  # fmt: skip
    lines = report(rows, args)
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
