"""The order in which the sweep's training runs start, so that time cannot favour a backend.

A sweep takes tens of minutes; the machine may drift meanwhile (other load, thermal
state, caches). If all NumPy runs came first and all TensorFlow runs last, that drift
would land on one backend. The order here is a randomized complete block design:

- **blocks by trial**: every run of trial 0 (all cells, all backends) comes before any
  run of trial 1, and so on, so each trial is a complete replicate and slow drift
  lands between replicates (where it widens the spread, not the difference);
- **cells in a seeded random order** within a trial;
- **a cell's backends next to each other, in a seeded random order**: the runs that the
  statistics compare pairwise (same cell, same trial) run back to back, so drift
  cancels in their difference, and no backend is systematically first.

The position of a run depends only on the seed and its own identity (a hash of both),
not on the rest of the grid: adding a learning rate later does not reorder the others.

Snakemake does not follow the order of its targets: it picks among the ready jobs by
``priority`` (greedy and ILP schedulers alike), and ties are broken by the iteration
order of a set of job objects (memory addresses). So the workflow gives each training
job ``priority = len(runs) - position`` (:func:`priorities`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

#: The run axes that define the blocks and the units randomized within a cell.
BLOCK, UNIT = "trial", "backend"


def _draw(seed: int, *parts: Any) -> str:
    """A uniform pseudo-random key for ``parts``, stable across processes and Pythons."""
    text = repr((seed, *parts)).encode()
    return hashlib.sha256(text).hexdigest()


def _cell(run: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in run.items() if k not in (BLOCK, UNIT)))


def sort_key(run: Mapping[str, Any], seed: int) -> tuple:
    """Where ``run`` goes: (trial, its cell's draw, its backend's draw within the cell)."""
    block, cell = int(run[BLOCK]), _cell(run)
    return (block, _draw(seed, block, cell), _draw(seed, block, cell, str(run[UNIT])))


def run_order(runs: Iterable[Mapping[str, Any]], seed: int) -> list[Mapping[str, Any]]:
    """``runs`` (mappings with at least ``trial`` and ``backend``) in the order to start them."""
    return sorted(runs, key=lambda run: sort_key(run, seed))


def priorities(
    runs: Iterable[Mapping[str, Any]], seed: int, key: Callable[[Mapping[str, Any]], Hashable]
) -> dict[Hashable, int]:
    """Snakemake priorities giving :func:`run_order`: the first run gets the highest (>= 1)."""
    ordered = run_order(runs, seed)
    return {key(run): len(ordered) - i for i, run in enumerate(ordered)}
