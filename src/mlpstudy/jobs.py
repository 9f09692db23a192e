"""One training job of the sweep: load the parquet data, train, write the run's files.

A run directory holds ``history.csv`` (one row per epoch) and ``metrics.json``
(final metrics, every timing, seed, threads, diverged flag, the environment). Both are
written atomically, the metrics last, so a run whose ``metrics.json`` exists is finished.

**Re-timing.** In strict timing, a run whose timed loop was contended
(``mlpstudy.timing.contention``) is trained again, whole, in a fresh process: the job
replaces itself (``os.execv``, same PID, so Snakemake and its benchmark see one job)
with ``python -m mlpstudy.jobs --resume STATE``, which loads the data, imports the
framework, builds the model and trains from the same start as a new job would, and adds
its attempt to ``STATE`` (``<metrics>.attempts.pickle``: the job's arguments, its spec
object included, and the attempts so far; removed when the job ends). At
most :data:`MAX_ATTEMPTS` attempts; the first uncontended one is published (its history
and metrics: the results and the timings of one execution), else the least contended,
marked ``contended``. ``metrics.json`` records every attempt (``attempts``: its timing
and conditions, its epoch times and a digest of its results) and whether the results
were the same in every attempt (``results_reproduced``). Why a fresh process and not a
second loop in the same one: docs/timing.md, "Re-timing".
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import os
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlpstudy import cores, dataset, machine, memory, timing
from mlpstudy.atomic import atomic_path, write_text
from mlpstudy.backends.base import HISTORY_COLUMNS, TrainSpec

log = logging.getLogger("mlpstudy.train")

#: How many times a contended run is timed at most (the first attempt included).
MAX_ATTEMPTS = 3
#: What each attempt records in ``metrics.json``'s ``attempts`` (with ``attempt``,
#: ``contention``, ``epoch_s`` and ``results_digest``).
ATTEMPT_FIELDS = (
    "training_time_s",
    "steady_epoch_s",
    "first_epoch_s",
    "cpu_time_s",
    *timing.COLUMNS,
    "others_cpu_s",
    "others_on_cores",
    "core_wait_s",
    "major_faults",
    "cpu_mhz",
    "process_hugepage_share",
    "data_hugepage_share",
    "probe_blas_s",
    "probe_python_s",
)


def log_epoch(row: dict[str, Any], epochs: int) -> None:
    log.info(
        "epoch %d/%d  train_loss=%.4f  train_accuracy=%.4f  test_accuracy=%.4f  (%.2f s)",
        row["epoch"],
        epochs,
        row["train_loss"],
        row["train_accuracy"],
        row["test_accuracy"],
        row["epoch_s"],
    )


def _json_safe(value):
    """NaN/inf are not JSON: store them as null (the history CSV keeps the raw values)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_history(rows: list[dict[str, Any]], path: str) -> None:
    """history.csv, one row per epoch (plain csv: a NumPy job never pays pandas' import)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def run_job(
    backend: str,
    spec: TrainSpec,
    train_path: str,
    test_path: str,
    history_path: str,
    metrics_path: str,
    dataset_name: str,
    timing_mode: str | None = None,
    reattempt: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Train ``spec`` with ``backend`` on the parquet splits; write history and metrics.

    ``dataset_name`` is recorded with the run (the spec does not know its data);
    ``timing_mode`` ("strict" | "throughput" | None) is how the timed loop gets its
    cores (``mlpstudy.cores``). A contended loop in strict mode is re-timed: the attempt
    is saved and ``reattempt(state_path)`` runs the next one (default: this process
    replaces itself with a fresh one, :func:`fresh_process`); the job's files are written
    once, by the last attempt. Returns the published metrics (None from an attempt that
    handed over to the next without returning, as a fresh process does not).
    """
    job = {
        "backend": backend,
        "spec": spec,
        "train_path": str(train_path),
        "test_path": str(test_path),
        "history_path": str(history_path),
        "metrics_path": str(metrics_path),
        "dataset_name": dataset_name,
        "timing_mode": timing_mode,
    }
    return _attempt(job, [], reattempt or fresh_process)


def resume(state_path: str, reattempt: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """The next attempt of the job saved in ``state_path`` (see :func:`run_job`)."""
    state = pickle.loads(Path(state_path).read_bytes())
    return _attempt(state["job"], state["attempts"], reattempt or fresh_process)


def fresh_process(state_path: str) -> None:
    """Replace this process with ``python -m mlpstudy.jobs --resume state_path``: the same
    PID (Snakemake waits for it) and log (file descriptor 2), a fresh interpreter."""
    cores.end_borrowing()  # ended by the loop already; a borrowed core must not leak
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "mlpstudy.jobs", "--resume", state_path])


def state_path(metrics_path: str) -> str:
    """Where a job keeps its attempts between processes (beside its metrics)."""
    return f"{metrics_path}.attempts.pickle"


def check_image_shape(path: str, expected, dataset_name: str) -> None:
    """Refuse a parquet split whose images (``image_shape`` in its metadata) are not the
    ones the run's spec takes (``input_shape``, the dataset catalog's ``image_shape``):
    the network would be built for one shape and fed another."""
    found, expected = dataset.image_shape(path), tuple(int(n) for n in expected)
    if found != expected:
        raise dataset.DatasetError(
            f"{path}: its images are {found} (H, W, C, from the file's metadata), but this "
            f"run's spec expects {expected} (the image_shape of dataset {dataset_name!r} "
            "in the catalog or the config's extra_datasets); the file was written for "
            "another image shape: delete it so that the workflow writes it again from the "
            "dataset's files, or correct the dataset's image_shape"
        )


def _attempt(job: dict, attempts: list[dict], reattempt: Callable[[str], Any]) -> dict | None:
    """Run one attempt of ``job``; then re-time (via ``reattempt``) or publish."""
    from mlpstudy import training  # imports the backend registry only, never a framework

    spec = job["spec"]
    number = len(attempts) + 1
    for split in ("train_path", "test_path"):  # before anything is loaded or trained
        check_image_shape(job[split], spec.input_shape, job["dataset_name"])
    started = time.perf_counter()
    x_train, y_train = dataset.load(job["train_path"])
    x_test, y_test = dataset.load(job["test_path"])
    log.info(
        "%s on %s: optimizer=%s start=%s lr=%s batch=%d trial=%d epochs=%d seed=%d "
        "threads=%d, %d train / %d test rows%s",
        job["backend"],
        job["dataset_name"],
        spec.optimizer,
        spec.start,
        spec.learning_rate,
        spec.batch_size,
        spec.trial,
        spec.epochs,
        spec.seed,
        spec.threads,
        len(x_train),
        len(x_test),
        f" (timing attempt {number} of at most {MAX_ATTEMPTS})" if number > 1 else "",
    )
    load_s = time.perf_counter() - started
    result = training.run_training(
        job["backend"],
        spec,
        x_train,
        y_train,
        x_test,
        y_test,
        on_epoch=lambda row: log_epoch(row, spec.epochs),
        timing_mode=job["timing_mode"],
    )
    metrics = {
        "dataset": job["dataset_name"],
        **result.metrics,
        # the options as the config asked for them ("options" holds what the backend
        # resolved them to, e.g. Keras' jit_compile="auto" -> False on this machine)
        "requested_options": dict(spec.options),
        "data_load_s": load_s,
        "data_hugepage_share": memory.hugepage_share(x_train),
        "environment": machine.environment(),
    }
    reasons = timing.contention(metrics)
    attempts.append(
        {"metrics": _json_safe(metrics), "history": _json_safe(result.history), "why": reasons}
    )
    state = state_path(job["metrics_path"])
    if reasons and job["timing_mode"] == "strict" and number < MAX_ATTEMPTS:
        log.warning(
            "timing attempt %d contended (%s): training again in a fresh process",
            number,
            "; ".join(reasons),
        )
        with atomic_path(state) as tmp:
            tmp.write_bytes(pickle.dumps({"job": job, "attempts": attempts}))
        return reattempt(state)
    metrics, history = published(attempts)
    write_history(history, job["history_path"])
    write_text(job["metrics_path"], json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    Path(state).unlink(missing_ok=True)
    if metrics.get("diverged"):
        log.warning("diverged in epoch %s: recorded as a result", metrics.get("diverged_epoch"))
    if metrics["contended"]:
        log.warning(
            "published timing attempt %d of %d is contended: %s",
            metrics["accepted_attempt"],
            metrics["timing_attempts"],
            "; ".join(metrics["contention"]),
        )
    log.info(
        "done: test_accuracy=%s training_time_s=%.2f (timing attempt %d of %d)",
        metrics.get("test_accuracy"),
        metrics["training_time_s"],
        metrics["accepted_attempt"],
        metrics["timing_attempts"],
    )
    return metrics


def results_digest(history: list[dict[str, Any]]) -> str:
    """A digest of a history's results (every column but the epoch times): equal for
    two attempts exactly when their losses and accuracies are bit-identical."""
    rows = [[row.get(c) for c in HISTORY_COLUMNS if c != "epoch_s"] for row in history]
    return hashlib.sha256(json.dumps(_json_safe(rows)).encode()).hexdigest()[:16]


def published(attempts: list[dict]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The metrics and history to publish from a job's attempts (``{"metrics",
    "history", "why"}`` each, in order): the first uncontended attempt, else the least
    contended one (``timing.contention_score``), with every attempt's record added."""
    clean = [i for i, a in enumerate(attempts) if not a["why"]]
    if clean:
        chosen = clean[0]
    else:
        scores = [timing.contention_score(a["metrics"]) for a in attempts]
        chosen = scores.index(min(scores))
    digests = [results_digest(a["history"]) for a in attempts]
    records = []
    for i, a in enumerate(attempts, start=1):
        record = {"attempt": i, **{k: a["metrics"].get(k) for k in ATTEMPT_FIELDS}}
        record.update(
            contention=a["why"],
            epoch_s=[row["epoch_s"] for row in a["history"]],
            results_digest=digests[i - 1],
        )
        records.append(record)
    metrics = dict(attempts[chosen]["metrics"])
    metrics.update(
        contended=bool(attempts[chosen]["why"]),
        contention=attempts[chosen]["why"],
        timing_attempts=len(attempts),
        accepted_attempt=chosen + 1,
        attempts=records,
        results_reproduced=None if len(attempts) == 1 else len(set(digests)) == 1,
    )
    return metrics, attempts[chosen]["history"]


def main(argv: list[str] | None = None) -> int:
    """``python -m mlpstudy.jobs --resume STATE``: the next attempt of a re-timed job, in a
    fresh process (what :func:`fresh_process` execs); logs to standard error."""
    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--resume", required=True, metavar="STATE")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    cores.borrow_idle_cores()  # as the train script does: untimed work, an idle core
    resume(args.resume)
    return 0


if __name__ == "__main__":
    main()
    # As the train script: the outputs are durable; skip the frameworks' slow teardown.
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)
