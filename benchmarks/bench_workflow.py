"""What the workflow costs beyond training: per-job overhead, dry-run time, sweep wall time.

    .venv/bin/python benchmarks/bench_workflow.py dryrun            # 2,000-job grid, dry run
    .venv/bin/python benchmarks/bench_workflow.py sweep [SNAKEMAKE ARGS...]
        # runs `snakemake ARGS` here (--cores 2 unless given), timing it, then reports from
        # results/tf_vs_np.csv: per-job overhead (job wall time from Snakemake's
        # benchmark file minus training_time_s) against its target (framework import
        # time + 1 s), and the sweep's wall time against the sum of its training times.
    .venv/bin/python benchmarks/bench_workflow.py report [--wall-s S]  # report only

The sweep and report modes also print, per backend, the peak RSS of a training job, its
slowest seconds per epoch and its start-up time: the measurements behind the training
rule's mem_mb and runtime in workflow/rules/common.smk; and how far the runs' steady
epochs follow the machine's speed (the correlation with each run's probes, pooled over
cells: ``mlpstudy.speed.probe_correlation``).

Prints Markdown tables for README.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
sys.path.insert(0, str(REPO / "src"))

from mlpstudy import aggregate, speed  # noqa: E402


def dryrun(n_lrs=10, n_batches=10, trials=10) -> None:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config.update(
        learning_rates=[round(0.001 * (i + 1), 3) for i in range(n_lrs)],
        batch_sizes=[8 * (i + 1) for i in range(n_batches)],
        trials=trials,
        data_mirrors={"mnist": ["/nonexistent"]},  # a dry run fetches nothing
    )
    n_jobs = n_lrs * n_batches * trials * len(config["backends"])
    with tempfile.TemporaryDirectory() as work:
        Path(work, "config.yaml").write_text(yaml.safe_dump(config))
        cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", work, "--cores", "2", "-n", "-q"]
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
    print(
        f"| dry run of a {n_jobs}-training-job grid | best of 3: {min(times):.1f} s | "
        f"target <= 10 s | {'met' if min(times) <= 10 else 'NOT met'} |"
    )


def report(table_path: Path, wall_s: float | None) -> None:
    t = aggregate.read_table(table_path)
    t["overhead_s"] = t["job_wall_s"] - t["training_time_s"]
    t["target_s"] = t["import_time_s"] + 1.0
    print(
        "| backend | runs | median job wall s | median training s | median overhead s "
        "| median import s | overhead <= import + 1 s |"
    )
    print("|---|---|---|---|---|---|---|")
    for backend, g in t.groupby("backend"):
        met = (g["overhead_s"] <= g["target_s"]).mean()
        print(
            f"| {backend} | {len(g)} | {g.job_wall_s.median():.2f} | "
            f"{g.training_time_s.median():.2f} | {g.overhead_s.median():.2f} | "
            f"{g.import_time_s.median():.2f} | {met:.0%} of runs |"
        )
    total_train = t["training_time_s"].sum()
    total_jobs = t["job_wall_s"].sum()
    print(
        f"\nSum of training times: {total_train:.0f} s; sum of job wall times: {total_jobs:.0f} s"
        + (
            f"; sweep wall time: {wall_s:.0f} s on {os.cpu_count()} cores "
            f"(ratio wall / sum of training = {wall_s / total_train:.2f})"
            if wall_s
            else ""
        )
    )


def machine_speed(table_path: Path) -> None:
    """How far the runs' steady epochs follow the machine's speed (``mlpstudy.speed``):
    each backend's pooled within-cell correlation with its runs' probes."""
    t = aggregate.read_table(table_path)
    if not {f"probe_{k}_s" for k in speed.KERNELS} <= set(t.columns):
        return
    rows = t.astype(object).where(t.notna(), None).to_dict("records")
    print(
        "\n| backend | r of steady epoch with its probe: " + ", ".join(speed.KERNELS) + " | runs |"
    )
    print("|---|---|---|")
    for backend in sorted(t["backend"].unique()):
        mine = [r for r in rows if r["backend"] == backend]
        got = [
            speed.probe_correlation(mine, k, ["learning_rate", "batch_size"]) for k in speed.KERNELS
        ]
        print(f"| {backend} | {', '.join(f'{r:+.2f}' for r, _ in got)} | {got[0][1]} |")


def resources(table_path: Path) -> None:
    """The figures behind the training rule's mem_mb and runtime (workflow/rules/common.smk)."""
    t = aggregate.read_table(table_path)
    t["epoch_s"] = t["training_time_s"] / t["epochs"]
    t["startup_s"] = t["job_wall_s"] - t["training_time_s"]
    print(
        "\n| backend | peak RSS of a job, MB (max) | s per epoch (max, at batch) "
        "| job start-up + teardown s (max) |"
    )
    print("|---|---|---|---|")
    for backend, g in t.groupby("backend"):
        slow = g.loc[g["epoch_s"].idxmax()]
        print(
            f"| {backend} | {g.job_max_rss_mb.max():.0f} | {slow.epoch_s:.2f} "
            f"(batch {slow.batch_size}) | {g.startup_s.max():.1f} |"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("dryrun")
    sub.add_parser("sweep")  # every further argument goes to snakemake
    rep = sub.add_parser("report")
    rep.add_argument("--table", type=Path, default=Path("results/tf_vs_np.csv"))
    rep.add_argument("--wall-s", type=float)
    args, extra = parser.parse_known_args(argv)
    if extra and args.cmd != "sweep":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.cmd == "dryrun":
        dryrun()
    elif args.cmd == "sweep":
        t0 = time.perf_counter()
        cores = [] if "--cores" in extra or "-c" in extra else ["--cores", "2"]
        subprocess.run([SNAKEMAKE, *cores, *extra], check=True)
        wall = time.perf_counter() - t0
        report(Path("results/tf_vs_np.csv"), wall)
        resources(Path("results/tf_vs_np.csv"))
        machine_speed(Path("results/tf_vs_np.csv"))
    else:
        report(args.table, args.wall_s)
        resources(args.table)
        machine_speed(args.table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
