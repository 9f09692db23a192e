"""Training: both backends from the same start agree; determinism; divergence; own starts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlpstudy.backends import get_backend, numpy_mlp
from mlpstudy.backends.base import HISTORY_COLUMNS, PARAM_NAMES, SharedStart, TrainSpec
from mlpstudy.training import run_training

tensorflow_mlp = pytest.importorskip("mlpstudy.backends.tensorflow_mlp")
BOTH = ("numpy", "tensorflow")


def learnable_data(n: int, seed: int):
    """``n`` rows in [0, 1]: a noisy copy of one of 10 fixed prototypes per class."""
    prototypes = np.random.default_rng(99).random((10, 784))
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 10).astype(np.int64)
    x = np.clip(prototypes[y] + rng.normal(0, 0.3, (n, 784)), 0, 1).astype(np.float32)
    return x, y


@pytest.fixture(scope="module")
def data():
    return (*learnable_data(300, 1), *learnable_data(100, 2))


def without_times(history):
    return [{k: v for k, v in row.items() if k != "epoch_s"} for row in history]


def test_one_sgd_step_from_the_same_start(data):
    x, y = data[0][:64], data[1][:64]
    spec = TrainSpec(learning_rate=0.5, batch_size=64, epochs=1, seed=4, trial=2)
    start = SharedStart(spec.seed, spec.trial)
    order = start.permutation(64)  # the epoch's order: the same mean, summed in that order
    _, grads = numpy_mlp.gradients(start.params, x[order], y[order])
    expected = {k: start.params[k] - spec.learning_rate * grads[k] for k in PARAM_NAMES}
    after = {name: get_backend(name).train(spec, x, y, x, y).params for name in BOTH}
    for k in PARAM_NAMES:
        assert not np.allclose(expected[k], start.params[k], atol=1e-4), k  # it moved
        np.testing.assert_allclose(after["numpy"][k], expected[k], rtol=0, atol=1e-6, err_msg=k)
        np.testing.assert_allclose(
            after["tensorflow"][k], expected[k], rtol=0, atol=1e-6, err_msg=k
        )


def test_two_epochs_agree_between_backends(data):
    spec = TrainSpec(learning_rate=0.05, batch_size=32, epochs=2, seed=0, trial=1)  # 300 = 9*32+12
    results = {name: get_backend(name).train(spec, *data) for name in BOTH}
    histories = {name: r.history for name, r in results.items()}
    for name in BOTH:
        assert [list(row) for row in histories[name]] == [list(HISTORY_COLUMNS)] * 2
        assert [row["epoch"] for row in histories[name]] == [1, 2]
    for row_np, row_tf in zip(histories["numpy"], histories["tensorflow"]):
        assert row_np["train_loss"] == pytest.approx(row_tf["train_loss"], rel=1e-4)
        # same predictions; Keras' accuracy is a float32 mean
        assert round(row_np["train_accuracy"] * 300) == round(row_tf["train_accuracy"] * 300)
        assert round(row_np["test_accuracy"] * 100) == round(row_tf["test_accuracy"] * 100)
    first, last = histories["numpy"][0], histories["numpy"][-1]
    assert last["train_loss"] < first["train_loss"] and last["train_accuracy"] > 0.5  # it learns
    for r in results.values():
        m = r.metrics
        assert m["final_train_loss"] == r.history[-1]["train_loss"]
        assert m["test_accuracy"] == r.history[-1]["test_accuracy"]
        assert (m["diverged"], m["diverged_epoch"], m["epochs_completed"]) == (False, None, 2)
        assert m["first_epoch_s"] == r.history[0]["epoch_s"]
        parts = m["step_time_s"] + m["eval_time_s"] + m["shuffle_time_s"]
        assert 0 < parts <= m["training_time_s"]
        assert sum(row["epoch_s"] for row in r.history) <= m["training_time_s"]


@pytest.mark.parametrize("name", BOTH)
def test_same_seed_gives_identical_runs(name, data):
    spec = TrainSpec(learning_rate=0.05, batch_size=50, epochs=2, seed=7, trial=0)
    a, b = (get_backend(name).train(spec, *data) for _ in range(2))
    assert without_times(a.history) == without_times(b.history)
    for k in PARAM_NAMES:
        np.testing.assert_array_equal(a.params[k], b.params[k])


@pytest.mark.parametrize("name", BOTH)
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


def test_without_shared_start_each_framework_starts_on_its_own(data):
    """lr = 1e-30: one epoch leaves the weights at the start, which we compare."""

    def start_weights(name, trial, shared):
        start = "shared" if shared else "independent"
        spec = TrainSpec(1e-30, 300, 1, seed=0, trial=trial, start=start)
        return get_backend(name).train(spec, *data).params["W1"]

    shared = SharedStart(0, 0).params["W1"]
    own = {name: start_weights(name, 0, False) for name in BOTH}
    np.testing.assert_array_equal(start_weights("numpy", 0, True), shared)
    np.testing.assert_array_equal(start_weights("tensorflow", 0, True), shared)
    assert not np.array_equal(own["numpy"], shared)
    assert not np.array_equal(own["tensorflow"], shared)
    assert not np.array_equal(own["numpy"], own["tensorflow"])
    limit = math.sqrt(6 / 784)
    for w in own.values():  # still He-uniform
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
    np.testing.assert_array_equal(start_weights("tensorflow", 0, False), own["tensorflow"])
    assert not np.array_equal(start_weights("tensorflow", 1, False), own["tensorflow"])


@pytest.mark.parametrize("name", BOTH)
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
    if name == "numpy":
        assert m["options"] == {"dtype": "float32"}
        assert set(m["thread_settings"].values()) == {1}
    else:
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
