"""Training, per registered backend: determinism, divergence, the metrics, the own starts.

Agreement between backends (gradients, one step, two epochs, per optimizer) is in
test_agreement.py; the optimizers' formulas in test_optimizers.py.
"""

from __future__ import annotations

import importlib.util
import itertools
import math

import numpy as np
import pytest
from test_agreement import backend, learnable_data

from mlpstudy.backends import BACKENDS, get_backend, info
from mlpstudy.backends.base import HISTORY_COLUMNS, MLP, SharedStart, TrainSpec
from mlpstudy.training import run_training


@pytest.fixture(params=BACKENDS)
def name(request):
    """Each registered backend, on one thread as in a job; skipped when its framework is
    not installed."""
    backend(request.param)
    return request.param


@pytest.fixture(scope="module")
def data():
    return (*learnable_data(300, 1, noise=0.3), *learnable_data(100, 2, noise=0.3))


def without_times(history):
    return [{k: v for k, v in row.items() if k != "epoch_s"} for row in history]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_metrics_are_the_history_and_the_timings_add_up(name, optimizer, data):
    spec = TrainSpec(0.01, 32, 2, seed=0, trial=1, optimizer=optimizer)  # 300 = 9*32+12
    r = get_backend(name).train(spec, *data)
    assert [list(row) for row in r.history] == [list(HISTORY_COLUMNS)] * 2
    assert [row["epoch"] for row in r.history] == [1, 2]
    first, last = r.history[0], r.history[-1]
    assert last["train_loss"] < first["train_loss"] and last["train_accuracy"] > 0.5  # learns
    m = r.metrics
    assert m["final_train_loss"] == last["train_loss"]
    assert m["test_accuracy"] == last["test_accuracy"]
    assert (m["diverged"], m["diverged_epoch"], m["epochs_completed"]) == (False, None, 2)
    assert (m["optimizer"], m["start"]) == (optimizer, "shared")
    assert m["optimizer_settings"] == spec.optimizer_settings
    assert m["first_epoch_s"] == first["epoch_s"]
    parts = m["step_time_s"] + m["eval_time_s"] + m["shuffle_time_s"]
    assert 0 < parts <= m["training_time_s"]
    assert sum(row["epoch_s"] for row in r.history) <= m["training_time_s"]
    assert set(r.params) == set(MLP.param_names)
    assert all(isinstance(p, np.ndarray) for p in r.params.values())


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_same_seed_gives_identical_runs(name, optimizer, data):
    spec = TrainSpec(0.01, 50, 2, seed=7, trial=0, optimizer=optimizer)
    a, b = (get_backend(name).train(spec, *data) for _ in range(2))
    assert without_times(a.history) == without_times(b.history)
    for k in MLP.param_names:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def test_divergence_stops_cleanly_and_is_recorded(name, data):
    spec = TrainSpec(learning_rate=1e30, batch_size=100, epochs=5, seed=0, trial=0)
    seen = []
    result = get_backend(name).train(spec, *data, on_epoch=seen.append)
    m = result.metrics
    assert m["diverged"] is True and m["diverged_epoch"] == 1
    assert m["epochs_completed"] == 1 and len(result.history) == 1 == len(seen)
    assert not math.isfinite(result.history[-1]["train_loss"])
    assert not math.isfinite(m["final_train_loss"])
    assert seen[0]["epoch"] == 1 and set(seen[0]) == set(HISTORY_COLUMNS)


def start_weights(name, trial, start, data):
    """W1 at the start: lr = 1e-30 leaves the weights where they started for one epoch."""
    spec = TrainSpec(1e-30, 300, 1, seed=0, trial=trial, start=start)
    return get_backend(name).train(spec, *data).params["W1"]


def test_independent_start_is_the_backends_own_draw(name, data):
    shared = SharedStart(0, 0).params["W1"]
    np.testing.assert_array_equal(start_weights(name, 0, "shared", data), shared)
    own = start_weights(name, 0, "independent", data)
    assert not np.array_equal(own, shared)
    limit = math.sqrt(6 / 784)  # still He-uniform
    assert np.abs(own).max() <= limit and np.abs(own).max() > 0.95 * limit
    np.testing.assert_array_equal(start_weights(name, 0, "independent", data), own)
    assert not np.array_equal(start_weights(name, 1, "independent", data), own)


def test_independent_starts_differ_between_backends(data):
    installed = [n for n in BACKENDS if importlib.util.find_spec(info(n).framework_modules[0])]
    for name in installed:
        backend(name)  # one thread
    own = {name: start_weights(name, 0, "independent", data) for name in installed}
    for a, b in itertools.combinations(own, 2):
        assert not np.array_equal(own[a], own[b]), (a, b)


def test_run_training_completes_the_metrics(name, data, monkeypatch):
    monkeypatch.setattr("mlpstudy.training._import_time_in_subprocess", lambda modules: 0.25)
    rows = []
    spec = TrainSpec(0.05, 64, 2, seed=0, trial=0, options={"steps_per_execution": 2})
    result = run_training(name, spec, *data, on_epoch=rows.append)
    m = result.metrics
    assert [r["epoch"] for r in rows] == [1, 2]
    assert m["threads"] == 1 and m["backend"] == name
    assert m["import_time_s"] > 0 and m["import_time_method"] in ("in-process", "subprocess")
    assert m["blas"].startswith(("openblas", "mkl", "blis"))
    assert all(isinstance(v, int) for v in m["thread_settings"].values())
    assert result.history_frame().columns.tolist() == list(HISTORY_COLUMNS)
    assert set(m["options"]) == set(info(name).options)
    if name == "numpy":
        assert m["options"] == {} and m["precision"] == "float32"
        assert set(m["thread_settings"].values()) == {1}
    elif name == "tensorflow":
        assert m["options"]["steps_per_execution"] == 2
        assert m["options"]["jit_compile"] in (True, False)  # "auto" resolved
        assert m["options"]["deterministic"] is True
        assert {"tf_intra_op", "tf_inter_op", "xla_cpu_multi_thread_eigen"} <= set(
            m["thread_settings"]
        )


def test_numpy_import_time_is_measured_in_a_fresh_interpreter():
    from mlpstudy.training import import_framework

    seconds, method = import_framework("numpy")
    assert method == "subprocess" and seconds > 0


def aligned_copy(array: np.ndarray, alignment: int = 64) -> np.ndarray:
    buffer = np.empty(array.nbytes + alignment, np.uint8)
    offset = -buffer.ctypes.data % alignment
    out = buffer[offset : offset + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    return out


def test_tensorflow_shares_aligned_data_and_copies_the_rest(data):
    """Zero-copy for 64-byte aligned arrays (DLPack), a copy otherwise: same results."""
    tensorflow_mlp = pytest.importorskip("mlpstudy.backends.tensorflow_mlp")
    x = aligned_copy(data[0])
    shared, copied = tensorflow_mlp._tensor(x), tensorflow_mlp._tensor(x[:, 1:].copy())
    readonly = aligned_copy(data[0])
    readonly.flags.writeable = False
    x[0, 0] += 1.0
    assert float(shared[0, 0]) == x[0, 0] and tensorflow_mlp._tensor(readonly).shape == x.shape
    x[0, 0] -= 1.0
    assert copied.shape == (len(x), 783)
    spec = TrainSpec(0.05, 64, 1, seed=0, trial=0)
    plain = get_backend("tensorflow").train(spec, *data)
    aligned = get_backend("tensorflow").train(spec, x, data[1], aligned_copy(data[2]), data[3])
    assert without_times(aligned.history) == without_times(plain.history)


@pytest.mark.parametrize("threads", [1, 2])
def test_tensorflow_feeds_fit_the_rows_in_order_on_the_runs_threads(threads):
    """``fit``'s batches: every row once, in the given order, the last batch partial (as
    ``fit`` cuts arrays); tf.data's autotuner off and its pool sized by the run's threads."""
    tensorflow_mlp = pytest.importorskip("mlpstudy.backends.tensorflow_mlp")
    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    y = np.arange(10)
    dataset = tensorflow_mlp.batches(x, y, 4, threads)
    got = [(bx.numpy(), by.numpy()) for bx, by in dataset]
    assert [len(by) for _, by in got] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([bx for bx, _ in got]), x)
    np.testing.assert_array_equal(np.concatenate([by for _, by in got]), y)
    options = dataset.options()
    assert options.autotune.enabled is False
    assert options.threading.private_threadpool_size == threads
    assert options.threading.max_intra_op_parallelism == 1


def test_a_precision_the_backend_cannot_run_fails_before_the_framework_import(monkeypatch):
    """One place checks ``cannot_run`` at run time, for every backend (the config check
    says it before any job; a direct call gets it here, before any import or timing)."""
    import dataclasses

    from mlpstudy import training
    from mlpstudy.backends import REGISTRY

    entry = dataclasses.replace(REGISTRY["numpy"], cannot_run={"float64": "no reason"})
    monkeypatch.setitem(REGISTRY, "numpy", entry)
    monkeypatch.setattr(training, "import_framework", lambda name: pytest.fail("imported"))
    spec = TrainSpec(0.1, 32, 1, 0, 0, precision="float64")
    with pytest.raises(ValueError, match="numpy cannot run precision 'float64': no reason"):
        training.run_training("numpy", spec, None, None, None, None)
