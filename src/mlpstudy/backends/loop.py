"""The timed epoch loop that every backend runs, so both are timed and stopped the same way.

A backend supplies three callables and this module does the rest:

- ``shuffle(epoch) -> data``: the epoch's shuffled training data (or whatever its
  steps consume), timed as ``shuffle_time_s``;
- ``train_epoch(data)``: every optimisation step of one epoch, timed as ``step_time_s``;
- ``evaluate() -> (train_loss, train_accuracy, test_accuracy)``: mean loss and accuracy
  over the full training set and accuracy on the test set, timed as ``eval_time_s``;
- ``penalty() -> float`` (only with a penalty, ``TrainSpec.penalty``): what the run adds
  to the data loss at the current weights; ``train_objective`` = ``train_loss`` + it
  (evaluation time).

``training_time_s`` is the study's training time (section 5.2): wall clock from the
start of the training loop to its end, per-epoch evaluation included. ``epoch_s`` in the
history is one epoch's shuffle + steps + evaluation; ``first_epoch_s`` is the first
one's (it carries any tracing or compilation), ``steady_epoch_s`` the steady state
(:func:`steady_epoch_s`: the median of the epochs after the first); ``step_time_s`` and
``eval_time_s`` are the steps' and the evaluations' time summed over the epochs,
``steady_step_s`` and ``steady_eval_s`` their steady state, per epoch. ``cpu_time_s``
is the process's CPU time over the loop, all threads together: above
``training_time_s`` means several cores were busy. The conditions of the timing
(``wall_cpu_ratio``, ``steal_s``, ``pinned_cpus``, ``overlapping_runs``, ``timing_mode``,
...) come from ``mlpstudy.timing.LoopConditions``, given the run's core allocation, if
any. The cores come as an argument (``cores``, passed down from ``Backend.train``): a
``mlpstudy.cores.CoreRequest`` is taken when the loop starts and freed when it ends
(``mlpstudy.cores.timed_loop``), waiting for them untimed; an ``Allocation`` already
held is used as it is; None: no allocation (unit tests, direct calls).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .. import timing
from ..cores import LoopCores, timed_loop
from .base import EpochCallback, RunResult, TrainSpec, is_diverged, spec_fields


def steady_epoch_s(epoch_times: list[float]) -> float | None:
    """The steady-state epoch time: the median of the epoch times after the first (which
    carries the one-off tracing, compilation and first touches of memory), or the only
    epoch's time when there is one; None for none. A diverged run's epochs count up to
    and including the one that diverged (it ran in full)."""
    times = sorted(float(t) for t in epoch_times[1:]) or [float(t) for t in epoch_times[:1]]
    if not times:
        return None
    mid = len(times) // 2
    return times[mid] if len(times) % 2 else (times[mid - 1] + times[mid]) / 2


def run_epochs(
    spec: TrainSpec,
    shuffle: Callable[[int], Any],
    train_epoch: Callable[[Any], None],
    evaluate: Callable[[], tuple[float, float, float]],
    on_epoch: EpochCallback | None = None,
    options: dict[str, Any] | None = None,
    cores: LoopCores | None = None,
    penalty: Callable[[], float] | None = None,
) -> RunResult:
    """Run ``spec.epochs`` epochs (fewer if the loss stops being finite) on ``cores``
    (:func:`mlpstudy.cores.timed_loop`); return the result."""
    history: list[dict[str, Any]] = []
    spent = {"shuffle": 0.0, "step": 0.0, "eval": 0.0}
    per_epoch = {"step": [], "eval": []}  # for the steady state of each part
    diverged_epoch = None
    with timed_loop(cores) as allocation, timing.LoopConditions(allocation) as conditions:
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        for epoch in range(1, spec.epochs + 1):
            t0 = time.perf_counter()
            data = shuffle(epoch)
            t1 = time.perf_counter()
            train_epoch(data)
            t2 = time.perf_counter()
            train_loss, train_accuracy, test_accuracy = evaluate()
            objective = float(train_loss) + (penalty() if penalty is not None else 0.0)
            t3 = time.perf_counter()
            spent["shuffle"] += t1 - t0
            spent["step"] += t2 - t1
            spent["eval"] += t3 - t2
            per_epoch["step"].append(t2 - t1)
            per_epoch["eval"].append(t3 - t2)
            row = {
                "epoch": epoch,
                "train_loss": float(train_loss),
                "train_accuracy": float(train_accuracy),
                "test_accuracy": float(test_accuracy),
                "epoch_s": t3 - t0,
                "train_objective": objective,
            }
            history.append(row)
            if on_epoch is not None:
                on_epoch(dict(row))
            if is_diverged(row["train_loss"]):
                diverged_epoch = epoch
                break
            conditions.epoch()
        training_time = time.perf_counter() - wall_start
        cpu_time = time.process_time() - cpu_start
    last = history[-1]
    metrics = {
        **spec_fields(spec),
        "training_time_s": training_time,
        "step_time_s": spent["step"],
        "eval_time_s": spent["eval"],
        "shuffle_time_s": spent["shuffle"],
        "first_epoch_s": history[0]["epoch_s"],
        "steady_epoch_s": steady_epoch_s([row["epoch_s"] for row in history]),
        "steady_step_s": steady_epoch_s(per_epoch["step"]),
        "steady_eval_s": steady_epoch_s(per_epoch["eval"]),
        "cpu_time_s": cpu_time,
        "final_train_loss": last["train_loss"],
        "final_train_objective": last["train_objective"],
        "final_train_accuracy": last["train_accuracy"],
        "test_accuracy": last["test_accuracy"],
        "diverged": diverged_epoch is not None,
        "diverged_epoch": diverged_epoch,
        "epochs_completed": len(history),
        "options": dict(options or {}),
        **conditions.metrics(training_time, cpu_time),
    }
    return RunResult(history=history, metrics=metrics)
