"""Are the sweep's timings the timings of runs alone? (issue 10: timings the study can trust)

    .venv/bin/python benchmarks/bench_timing.py [--workdir DIR] [--cores N]
        [--mirror ../shared/data/mnist] [--alone-timing throughput|strict] [--target T]
        [KEY=VALUE ...]           # grid overrides, YAML values, e.g. 'batch_sizes=[32]'
    .venv/bin/python benchmarks/bench_timing.py --noise [--workdir DIR] [--mirror ...]
    .venv/bin/python benchmarks/bench_timing.py --speed-series 60 [--processes 12]

``--noise`` (issue 21: run-to-run noise) runs the noise grid (lr 0.1 x batch 128, 512 x
3 trials x the configured backends) twice, with short runs (3 epochs) and long runs (10
epochs), each as a sweep with the default command (every target, from a fresh work
directory: the data is downloaded and prepared first, as a new user's sweep does) and
then each run again alone (strict timing, ``--cores 1``). It prints, per phase, backend
and batch size, the coefficient of variation across trials of the training time
(target <= 5 %) and of the steady-state epoch time (target <= 3 %), the contended loops
left after re-timing (target: none in the published table) and the attempts it took,
the huge-page coverage and CPU clock the runs recorded, and the machine's own spread:
the CV across trials of each run's speed probes (``probe_blas_s``, ``probe_python_s``:
fixed reference kernels timed on the loop's core before and after it,
``mlpstudy.speed``) and the correlation of the steady epoch with each. About 8 minutes on a quiet
2-core machine (up to 12 if many loops have to be re-timed).

1. **Sweep**: the default command, ``snakemake --cores N`` (default 2), every target
   (training, aggregation, figures, statistics), on the real MNIST (``data_mirrors``
   pointed at ``--mirror``), timing mode from the config (``strict`` by default).
2. **Alone**: the sweep's runs saved aside, every training run again, one job at a time
   (``--cores 1``, training targets only, nothing else running; unpinned by default:
   ``--alone-timing throughput``, i.e. as a user would time one run by hand).
3. Prints per backend, as Markdown: the median over cells of sweep / alone training time
   (target <= 1.05, every cell <= 1.10), the coefficient of variation across trials
   (target <= 3 %), the loops' wall / CPU ratios (and how many exceed 1.10), the others'
   CPU time on the pinned cores, overlapping runs; then the sweep's wall time against
   the sum of its training times and of its job wall times; and the per-job overhead
   (job wall time - training loop - wait for a core) against the framework's import + 1 s.

The default grid is small (1 learning rate x 2 batch sizes x 3 trials x 5 epochs x the
configured backends); pass the full grid's values to measure that. Never run it beside
the test suite or another benchmark: it measures the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mlpstudy import runs, speed, timing  # noqa: E402

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
SMALL_GRID = {"learning_rates": [0.01], "batch_sizes": [32, 512], "trials": 3, "epochs": 5}
NOISE_GRID = {"learning_rates": [0.1], "batch_sizes": [128, 512], "trials": 3}
NOISE_EPOCHS = {"short": 3, "long": 10}
#: issue 21's targets: CV across trials of a cell's training time and steady epoch time
NOISE_TARGETS = {"training_time_s": 0.05, "steady_epoch_s": 0.03}
CELL = [a.column for a in runs.AXES if a.name not in ("trial",)]


def write_config(workdir: Path, overrides: dict) -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config.update(overrides)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def snakemake(workdir: Path, cores: int, *args: str, check: bool = True) -> float:
    """Run the workflow in ``workdir``; return its wall time in seconds."""
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--configfile", str(workdir / "config.yaml"), "--cores", str(cores), *args]
    env = {**os.environ, "PATH": f"{Path(SNAKEMAKE).parent}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    done = subprocess.run(cmd, check=check, env=env)
    if done.returncode:
        print(f"WARNING: snakemake exited {done.returncode} in {workdir}", flush=True)
    return time.perf_counter() - started


def read_runs(root: Path) -> list[dict]:
    """metrics.json of every run under ``root`` (a results/runs tree), with its job wall."""
    found = []
    for path in sorted(root.glob("**/metrics.json")):
        metrics = json.loads(path.read_text())
        bench = path.parent / "benchmark.tsv"
        if bench.exists():
            header, values = bench.read_text().splitlines()[:2]
            metrics["job_wall_s"] = float(dict(zip(header.split("\t"), values.split("\t")))["s"])
        key = runs.parse(str(path.parent))
        found.append({**metrics, **key})
    return found


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def cell_of(run: dict) -> tuple:
    return tuple(run[c] for c in CELL)


def report(sweep: list[dict], alone: list[dict], sweep_wall_s: float) -> None:
    alone_by_cell: dict[tuple, list[float]] = {}
    for run in alone:
        alone_by_cell.setdefault(cell_of(run), []).append(run["training_time_s"])
    sweep_by_cell: dict[tuple, list[dict]] = {}
    for run in sweep:
        sweep_by_cell.setdefault(cell_of(run), []).append(run)

    print(
        "| backend | cells | median sweep / alone | max cell | <= 1.10 every cell "
        "| median CV across trials, sweep (alone) | wall / CPU median, max: sweep "
        "| wall / CPU median, max: alone | contended loops (published) "
        "| others' CPU on its cores, median s | overlapping runs, max |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for backend in sorted({r["backend"] for r in sweep}):
        cells = [c for c in sweep_by_cell if c[CELL.index("backend")] == backend]
        ratios, cvs, cvs_alone = [], [], []
        for c in cells:
            times = [r["training_time_s"] for r in sweep_by_cell[c]]
            if c in alone_by_cell:
                ratios.append(statistics.median(times) / statistics.median(alone_by_cell[c]))
                if len(alone_by_cell[c]) > 1:
                    a = alone_by_cell[c]
                    cvs_alone.append(statistics.stdev(a) / statistics.mean(a))
            if len(times) > 1:
                cvs.append(statistics.stdev(times) / statistics.mean(times))
        mine = [r for r in sweep if r["backend"] == backend]
        mine_alone = [r for r in alone if r["backend"] == backend]
        ratio_s = [r.get("wall_cpu_ratio") for r in mine]
        ratio_a = [r.get("wall_cpu_ratio") for r in mine_alone]
        contended = sum(bool(r.get("contended", timing.contended(r))) for r in mine)
        worst = max(ratios) if ratios else float("nan")
        print(
            f"| {backend} | {len(cells)} | {median(ratios):.3f} | {worst:.3f} "
            f"| {'yes' if worst <= 1.10 else 'NO'} "
            f"| {median(cvs):.1%} ({median(cvs_alone):.1%}) "
            f"| {median(ratio_s):.3f}, {max(filter(None, ratio_s), default=float('nan')):.3f} "
            f"| {median(ratio_a):.3f}, {max(filter(None, ratio_a), default=float('nan')):.3f} "
            f"| {contended} of {len(mine)} "
            f"| {median(r.get('others_cpu_s') for r in mine):.3f} "
            f"| {max((r.get('overlapping_runs') or 0 for r in mine), default=0)} |"
        )
    print()
    overhead(sweep, alone)
    modes = sorted({str(r.get("timing_mode")) for r in sweep})
    total_train = sum(r["training_time_s"] for r in sweep)
    total_jobs = sum(r.get("job_wall_s", 0.0) for r in sweep)
    print(
        f"\nSweep ({', '.join(modes)} timing, {len(sweep)} runs): wall time {sweep_wall_s:.0f} s; "
        f"sum of its training times {total_train:.0f} s (wall / sum = "
        f"{sweep_wall_s / total_train:.2f}); sum of its job wall times {total_jobs:.0f} s."
    )
    print(f"Machine: {os.cpu_count()} logical CPUs, {cpu_model()}.")


def overhead(sweep: list[dict], alone: list[dict]) -> None:
    """Per-job overhead: the job's wall time (Snakemake's benchmark, interpreter start to
    exit) minus its training loop and minus its wait for a core, against the target
    import + 1 s (issue 10, item 5); medians per backend, for the runs alone and in the
    sweep (there, set-up runs on the shared reserve core, beside the light jobs)."""
    print(
        "| backend | job - loop - core wait, alone: median s | framework import, alone: "
        "median s | target import + 1 s met (alone) | the same in the sweep: overhead, import |"
    )
    print("|---|---|---|---|---|")

    def medians(rows):
        rows = [r for r in rows if r.get("job_wall_s") is not None]
        spent = [r["job_wall_s"] - r["training_time_s"] - (r.get("core_wait_s") or 0) for r in rows]
        return median(spent), median(r.get("import_time_s") for r in rows)

    for backend in sorted({r["backend"] for r in sweep}):
        over_a, import_a = medians([r for r in alone if r["backend"] == backend])
        over_s, import_s = medians([r for r in sweep if r["backend"] == backend])
        met = "yes" if over_a <= import_a + 1 else "NO"
        print(
            f"| {backend} | {over_a:.2f} | {import_a:.2f} | {met} | {over_s:.2f}, {import_s:.2f} |"
        )


def cpu_model() -> str:
    from mlpstudy import machine

    return machine.cpu_model()


def parse_overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    return overrides


def measure(
    workdir: Path, overrides: dict, cores: int, alone_timing: str, targets=(), check=True
) -> tuple[list[dict], list[dict], float]:
    """The sweep (default command, every target unless ``targets``), then each of its
    training runs alone, one job at a time; returns (sweep runs, alone runs, sweep s)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(workdir, overrides)
    print(f"workdir {workdir}; grid {json.dumps(overrides)}", flush=True)

    # 1. the default command, every target
    sweep_wall = snakemake(workdir, cores, *targets, check=check)
    saved = workdir / "sweep_runs"
    shutil.rmtree(saved, ignore_errors=True)
    shutil.move(workdir / "results" / "runs", saved)

    # 2. each training run alone, one job at a time, nothing else requested
    write_config(workdir, {**overrides, "timing": alone_timing})
    run_targets = [f"{runs.run_dir(r)}/metrics.json" for r in runs.grid(config)]
    snakemake(workdir, 1, *run_targets, check=check)
    alone_runs = workdir / "alone_runs"
    shutil.rmtree(alone_runs, ignore_errors=True)
    shutil.move(workdir / "results" / "runs", alone_runs)
    write_config(workdir, overrides)
    return read_runs(saved), read_runs(alone_runs), sweep_wall


def cv(values) -> float:
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return float("nan")
    return statistics.stdev(values) / statistics.mean(values)


def corr(a, b) -> float:
    """Pearson's correlation of the pairs where both are known (NaN with fewer than 3)."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    if len(pairs) < 3:
        return float("nan")
    try:
        return statistics.correlation(*zip(*pairs, strict=True))
    except statistics.StatisticsError:  # a constant series
        return float("nan")


def noise_report(phases: dict[str, list[dict]]) -> bool:
    """Issue 21's noise table: one row per phase, backend and batch size; returns whether
    every target was met."""
    print(
        "| phase | backend | batch | trials | CV training time (<= 5 %) "
        "| CV steady epoch (<= 3 %) | steady epoch s, median | first epoch s, median "
        "| CV probe: BLAS, interpreter | corr. steady epoch with probe: BLAS, interpreter "
        "| contended published | attempts | data on huge pages, min | process on huge "
        "pages, median | cpu MHz |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    met = True
    for phase, found in phases.items():
        cells: dict[tuple, list[dict]] = {}
        for run in found:
            cells.setdefault(cell_of(run), []).append(run)
        for cell in sorted(
            cells, key=lambda c: (c[CELL.index("backend")], c[CELL.index("batch_size")])
        ):
            rows = cells[cell]
            got = {name: cv(r.get(name) for r in rows) for name in NOISE_TARGETS}
            ok = [got[n] <= t for n, t in NOISE_TARGETS.items()]
            contended = sum(bool(r.get("contended")) for r in rows)
            met = met and all(ok) and not contended
            marks = ["" if good else " NO" for good in ok]
            mhz = sorted({round(r["cpu_mhz"]) for r in rows if r.get("cpu_mhz")})
            data_share = [r.get("data_hugepage_share") for r in rows]
            probes = {k: [r.get(f"probe_{k}_s") for r in rows] for k in speed.KERNELS}
            steady = [r.get("steady_epoch_s") for r in rows]
            print(
                f"| {phase} | {cell[CELL.index('backend')]} | {cell[CELL.index('batch_size')]} "
                f"| {len(rows)} | {got['training_time_s']:.1%}{marks[0]} "
                f"| {got['steady_epoch_s']:.1%}{marks[1]} "
                f"| {median(r.get('steady_epoch_s') for r in rows):.3f} "
                f"| {median(r.get('first_epoch_s') for r in rows):.3f} "
                f"| {cv(probes['blas']):.1%}, {cv(probes['python']):.1%} "
                f"| {corr(steady, probes['blas']):+.2f}, {corr(steady, probes['python']):+.2f} "
                f"| {contended} | {sum(r.get('timing_attempts') or 1 for r in rows)} "
                f"| {min((v for v in data_share if v is not None), default=float('nan')):.2f} "
                f"| {median(r.get('process_hugepage_share') for r in rows):.2f} "
                f"| {', '.join(map(str, mhz)) or 'n/a'} |"
            )
    print()
    for phase, found in phases.items():
        for run in found:
            if (run.get("timing_attempts") or 1) > 1 or run.get("contended"):
                reasons = [a.get("contention") for a in run.get("attempts", [])]
                print(
                    f"- {phase}: {run['backend']} batch {run['batch_size']} trial {run['trial']}:"
                    f" {run.get('timing_attempts')} attempts, published attempt "
                    f"{run.get('accepted_attempt')} (contended: {run.get('contended')}); "
                    f"attempts' contention: {reasons}"
                )
    every = [{**r, "phase": phase} for phase, found in phases.items() for r in found]
    for backend in sorted({r["backend"] for r in every}):
        mine = [r for r in every if r["backend"] == backend]
        got = {k: speed.probe_correlation(mine, k, ["phase", *CELL]) for k in speed.KERNELS}
        print(
            f"- {backend}: the steady epoch against its run's probes, pooled over "
            f"{len({(r['phase'], cell_of(r)) for r in mine})} cells ({got['blas'][1]} runs): "
            + ", ".join(f"r = {r:+.2f} ({k})" for k, (r, _) in got.items())
        )
    print(f"\nAll noise targets met: {'yes' if met else 'NO'}.")
    return met


def noise(args) -> int:
    """``--noise``: the short and the long phase, each sweep + alone, then the table."""
    root = args.workdir or Path(
        subprocess.run(
            ["mktemp", "-d", "/tmp/bench_noise.XXXX"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    phases, walls = {}, {}
    started = time.perf_counter()
    for name, epochs in NOISE_EPOCHS.items():
        overrides = {**NOISE_GRID, "epochs": epochs, "data_mirrors": {"mnist": [args.mirror]}}
        overrides.update(parse_overrides(args.overrides))
        sweep, alone, walls[name] = measure(
            root / name, overrides, args.cores, "strict", args.target, check=False
        )
        epochs = overrides["epochs"]  # as run (an override applies to both phases)
        phases[f"{name} ({epochs} epochs), sweep"] = sweep
        phases[f"{name} ({epochs} epochs), alone"] = alone
    print()
    met = noise_report(phases)
    print(
        f"Sweep wall times: {', '.join(f'{k} {v:.0f} s' for k, v in walls.items())}; the whole "
        f"benchmark {time.perf_counter() - started:.0f} s. Machine: {os.cpu_count()} logical "
        f"CPUs, {cpu_model()}."
    )
    return 0 if met else 1


def speed_series(seconds: float, processes: int) -> int:
    """``--speed-series``: the machine's speed over time, from ``mlpstudy.speed``'s two
    kernels alternating in one process pinned to the last CPU for ``seconds``, then in
    ``processes`` fresh ones (3 s each): the spread of their 1-second medians, how long
    a state lasts (lag-1 autocorrelation), and the spread across processes."""
    code = (
        "import json, sys, time; from mlpstudy import speed\n"
        "out, start = {k: [] for k in speed.KERNELS}, time.perf_counter()\n"
        "while time.perf_counter() - start < float(sys.argv[1]):\n"
        "    for k, v in speed.probe().items(): out[k].append(v)\n"
        "print(json.dumps({**out, 'seconds': time.perf_counter() - start}))"
    )
    cpu = str(os.cpu_count() - 1)

    def series(duration):
        cmd = ["taskset", "-c", cpu, sys.executable, "-c", code, str(duration)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    long = series(seconds)
    fresh = [series(3) for _ in range(processes)]
    per_second = max(1, round(len(long["blas"]) / long["seconds"]))
    print(
        f"| kernel | one process, {long['seconds']:.0f} s: median, 5-95 % | CV of 1-s medians "
        f"| lag-1 autocorrelation | {processes} fresh processes: CV of their medians |"
    )
    print("|---|---|---|---|---|")
    for k in speed.KERNELS:
        v = long[k]
        chunks = [
            statistics.median(v[i : i + per_second])
            for i in range(0, len(v) - per_second + 1, per_second)
        ]
        q = statistics.quantiles(v, n=20)
        lag = statistics.correlation(v[:-1], v[1:])
        medians = [statistics.median(f[k]) for f in fresh]
        print(
            f"| {k} | {statistics.median(v) * 1e3:.3f} ms, {q[0] * 1e3:.3f}-{q[-1] * 1e3:.3f} "
            f"| {cv(chunks):.1%} | {lag:+.2f} | {cv(medians):.1%} |"
        )
    print(f"\nMachine: {os.cpu_count()} logical CPUs, {cpu_model()}; pinned to CPU {cpu}.")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="default: a new temporary directory")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--mirror", default=str(REPO.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--alone-timing", choices=("throughput", "strict"), default="throughput")
    parser.add_argument(
        "--noise", action="store_true", help="issue 21's noise report (short and long runs)"
    )
    parser.add_argument(
        "--speed-series",
        type=float,
        metavar="SECONDS",
        help="the machine's speed over time (mlpstudy.speed's kernels), then in fresh processes",
    )
    parser.add_argument("--processes", type=int, default=12, help="with --speed-series")
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        help="sweep targets (default: all, as users run it)",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.noise:
        return noise(args)
    if args.speed_series:
        return speed_series(args.speed_series, args.processes)

    workdir = args.workdir or Path(
        subprocess.run(
            ["mktemp", "-d", "/tmp/bench_timing.XXXX"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    overrides = {**SMALL_GRID, "data_mirrors": {"mnist": [args.mirror]}}
    overrides.update(parse_overrides(args.overrides))
    sweep, alone, sweep_wall = measure(
        workdir, overrides, args.cores, args.alone_timing, args.target
    )
    print()
    report(sweep, alone, sweep_wall)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
