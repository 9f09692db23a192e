"""The start order of training runs (mlpstudy.order), and that Snakemake follows it."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlpstudy import order

SRC = Path(__file__).resolve().parents[1] / "src"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def grid(lrs=("0.01", "0.1"), batches=("32", "512"), trials=3, backends=("numpy", "tensorflow")):
    return [
        dict(backend=b, lr=lr, batch=bs, trial=str(t))
        for b, lr, bs, t in itertools.product(backends, lrs, batches, range(trials))
    ]


def cell(run):
    return (run["lr"], run["batch"])


def test_trials_are_blocks_and_a_cells_backends_run_back_to_back():
    ordered = order.run_order(grid(), seed=0)
    assert sorted(map(str, ordered)) == sorted(map(str, grid()))
    assert [int(r["trial"]) for r in ordered] == sorted(int(r["trial"]) for r in ordered)
    for first, second in zip(ordered[::2], ordered[1::2]):
        assert cell(first) == cell(second) and first["trial"] == second["trial"]
        assert {first["backend"], second["backend"]} == {"numpy", "tensorflow"}


def test_the_order_is_random_within_blocks_and_balanced_between_backends():
    runs = grid(lrs=[str(i) for i in range(10)], batches=[str(b) for b in range(10)], trials=2)
    ordered = order.run_order(runs, seed=0)
    firsts = [a["backend"] for a in ordered[::2]]
    # 200 pairs: each backend first about half the time (binomial sd 7; fixed seed)
    assert 70 <= firsts.count("numpy") <= 130
    # the cells are not in grid order, nor the same in both trials
    cells = [cell(r) for r in ordered[::2]]
    assert cells[:100] != sorted(cells[:100]) and cells[:100] != cells[100:]
    # another seed, another order; the same seed, the same order
    assert order.run_order(runs, seed=1) != ordered
    assert order.run_order(list(reversed(runs)), seed=0) == ordered


def test_adding_a_value_to_the_grid_keeps_the_others_order():
    before = order.run_order(grid(), seed=0)
    after = order.run_order(grid(lrs=("0.01", "0.1", "0.3")), seed=0)
    assert [r for r in after if r["lr"] != "0.3"] == before


def test_priorities_decrease_along_the_order():
    prio = order.priorities(grid(), 0, key=lambda r: tuple(r.values()))
    ordered = [tuple(r.values()) for r in order.run_order(grid(), 0)]
    assert [prio[k] for k in ordered] == list(range(len(ordered), 0, -1))


TOY = """
    import sys
    sys.path.insert(0, {src!r})
    from mlpstudy import order

    RUNS = {runs!r}
    PATH = "runs/backend={{backend}}/lr={{lr}}/batch={{batch}}/trial={{trial}}"
    PRIORITY = order.priorities(RUNS, 0, key=lambda r: PATH.format(**r))


    def train_priority(wildcards):
        return PRIORITY[PATH.format(**wildcards)]


    rule all:
        input: [PATH.format(**r) + "/done" for r in RUNS]


    rule train:
        output: PATH + "/done"
        priority: train_priority
        params: name=lambda w: " ".join(w[k] for k in ("backend", "lr", "batch", "trial"))
        shell: "echo {{params.name}} >> started.txt; touch {{output}}"
"""


@pytest.mark.parametrize("scheduler", ["greedy", "ilp"])
def test_snakemake_starts_the_jobs_in_this_order(tmp_path, scheduler):
    """Snakemake picks ready jobs by priority (ties: a set's order); with one job at a
    time it starts them exactly in run_order, whatever order the targets are listed in."""
    runs = grid()
    (tmp_path / "Snakefile").write_text(textwrap.dedent(TOY.format(src=str(SRC), runs=runs)))
    proc = subprocess.run(
        [str(SNAKEMAKE), "--cores", "1", "--scheduler", scheduler, "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    started = (tmp_path / "started.txt").read_text().splitlines()
    want = [" ".join(r.values()) for r in order.run_order(runs, 0)]
    assert started == want
