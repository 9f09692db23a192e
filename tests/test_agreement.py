"""Every pair of registered backends agrees from the shared start, for every optimizer.

Parametrized over ``mlpstudy.backends.BACKENDS``, so a newly registered backend is
compared with every other one without editing this file (a backend whose framework is
not installed is skipped). From the shared start:

- gradients of one batch agree (float32; and float64 to 1e-6 where the framework can
  compute in float64), and each backend's gradients match central finite differences
  of its own loss in float64;
- one optimizer step agrees to 1e-6 (absolute, on every parameter);
- two epochs' training losses agree to 1e-4 relative, with equal accuracies.

The data are small and synthetic (512 training rows): noisy copies of ten fixed
prototypes, clipped to [0, 1] like pixels, hard enough that two epochs end well below
100 % accuracy, so equal accuracies mean equal predictions.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from test_optimizers import keras_reference

from mlpstudy.backends import BACKENDS, get_backend, info
from mlpstudy.backends.base import PARAM_NAMES, SharedStart, TrainSpec

#: (id, optimizer, settings, learning rate): every optimizer of the axes, Nesterov too.
OPTIMIZERS = [
    ("sgd", "sgd", {}, 0.05),
    ("momentum", "momentum", {"nesterov": False}, 0.01),
    ("nesterov", "momentum", {"nesterov": True}, 0.01),
    ("adam", "adam", {}, 0.001),
]
PAIRS = list(itertools.combinations(BACKENDS, 2))
TRAIN_ROWS, TEST_ROWS = 512, 128


def learnable_data(n: int, seed: int, noise: float = 1.0):
    """``n`` rows in [0, 1]: a noisy copy of one of 10 fixed prototypes per class."""
    prototypes = np.random.default_rng(99).random((10, 784))
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 10).astype(np.int64)
    x = np.clip(prototypes[y] + rng.normal(0, noise, (n, 784)), 0, 1).astype(np.float32)
    return x, y


@functools.cache
def data():
    return (*learnable_data(TRAIN_ROWS, 1), *learnable_data(TEST_ROWS, 2))


@functools.cache
def _one_thread(name: str) -> None:
    get_backend(name).set_threads(1)


def backend(name: str):
    """The backend module, limited to one thread as in a job (a framework's default pool
    of one thread per core spins against everything else on a busy machine: PyTorch
    took 1.6 s instead of 0.01 s per epoch here), or a skip when its framework is not
    installed."""
    pytest.importorskip(info(name).framework_modules[0])
    _one_thread(name)
    return get_backend(name)


def batch(rows: int, dtype, seed: int = 0):
    """Shared-start parameters with nonzero biases (so their gradients are tested) and a
    batch of the synthetic data."""
    rng = np.random.default_rng(seed)
    params = {k: v.astype(dtype) for k, v in SharedStart(seed, 0).params.items()}
    params["b1"] += rng.normal(0, 0.1, 64).astype(dtype)
    params["b2"] += rng.normal(0, 0.1, 10).astype(dtype)
    x, y = learnable_data(rows, seed + 10)
    return params, x.astype(dtype), y


@functools.cache
def trained(name: str, case: str, kind: str):
    """One training run of backend ``name`` (cached: every pair reuses it).

    kind "step": one step of the whole training set; "epochs": two epochs at batch 32.
    """
    _, optimizer, settings, lr = next(c for c in OPTIMIZERS if c[0] == case)
    if kind == "step":
        spec = TrainSpec(lr, TRAIN_ROWS, 1, seed=4, trial=2, optimizer=optimizer,
                         optimizer_settings=settings)  # fmt: skip
    else:
        spec = TrainSpec(lr, 32, 2, seed=0, trial=1, optimizer=optimizer,
                         optimizer_settings=settings)  # fmt: skip
    return backend(name).train(spec, *data())


def gradients(name: str, dtype):
    params, x, y = batch(64, dtype, seed=2)
    loss, grads = backend(name).gradients(params, x, y)
    return loss, grads


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_gradients_of_one_batch_agree_float32(a, b):
    (loss_a, grads_a), (loss_b, grads_b) = gradients(a, np.float32), gradients(b, np.float32)
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    for name in PARAM_NAMES:
        assert grads_a[name].dtype == grads_b[name].dtype == np.float32, name
        assert grads_a[name].shape == grads_b[name].shape, name
        scale = np.abs(grads_a[name]).max()
        np.testing.assert_allclose(
            grads_a[name], grads_b[name], rtol=1e-5, atol=1e-6 * scale, err_msg=name
        )


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_gradients_of_one_batch_agree_float64(a, b):
    (loss_a, grads_a), (loss_b, grads_b) = gradients(a, np.float64), gradients(b, np.float64)
    for name, grads in ((a, grads_a), (b, grads_b)):
        if grads["W1"].dtype != np.float64:
            pytest.skip(f"{name} computes its gradients in {grads['W1'].dtype}")
    assert loss_a == pytest.approx(loss_b, rel=1e-12)
    for name in PARAM_NAMES:
        scale = np.abs(grads_a[name]).max()
        np.testing.assert_allclose(
            grads_a[name], grads_b[name], rtol=1e-6, atol=1e-9 * scale, err_msg=name
        )


@pytest.mark.parametrize("name", BACKENDS)
def test_gradients_match_central_finite_differences(name):
    """Directional derivatives of the backend's own float64 loss (its ``evaluate``) along
    random directions, one per parameter array and one along all of them."""
    module = backend(name)
    params, x, y = batch(16, np.float64, seed=3)
    loss, grads = module.gradients(params, x, y)
    if grads["W1"].dtype != np.float64:
        pytest.skip(f"{name} computes its gradients in {grads['W1'].dtype}")
    assert loss == pytest.approx(module.evaluate(params, x, y)[0], rel=1e-12)
    rng, eps = np.random.default_rng(5), 1e-5
    for along in [*PARAM_NAMES, "all"]:
        names = PARAM_NAMES if along == "all" else (along,)
        direction = {k: rng.standard_normal(params[k].shape) for k in names}

        def loss_at(t, names=names, direction=direction):
            moved = {k: params[k] + t * direction[k] if k in names else params[k]
                     for k in PARAM_NAMES}  # fmt: skip
            return module.evaluate(moved, x, y)[0]

        numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
        analytic = sum(float(np.sum(grads[k] * direction[k])) for k in names)
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9), along


@pytest.mark.parametrize("case", [c[0] for c in OPTIMIZERS])
@pytest.mark.parametrize("name", BACKENDS)
def test_one_step_is_the_textbook_update(name, case):
    """The anchor of the pairs below: one step of the whole (shuffled) training set is
    Keras' formula applied to NumPy's float64 gradient of it."""
    start = SharedStart(4, 2)
    x, y = data()[0], data()[1]
    order = start.permutation(TRAIN_ROWS)  # the same mean, summed in the epoch's order
    params64 = {k: v.astype(np.float64) for k, v in start.params.items()}
    _, grads = get_backend("numpy").gradients(params64, x[order].astype(np.float64), y[order])
    lr = next(c[3] for c in OPTIMIZERS if c[0] == case)
    after = trained(name, case, "step").params
    for k in PARAM_NAMES:
        expected = keras_reference(case, params64[k].ravel(), grads[k].ravel()[None], lr=lr)
        np.testing.assert_allclose(
            after[k].ravel(), expected, rtol=0, atol=1e-6, err_msg=f"{name} {k}"
        )


@pytest.mark.parametrize("case", [c[0] for c in OPTIMIZERS])
@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_one_step_agrees(a, b, case):
    start = SharedStart(4, 2).params
    after_a = trained(a, case, "step").params
    after_b = trained(b, case, "step").params
    for k in PARAM_NAMES:
        assert not np.allclose(after_a[k], start[k], atol=1e-5), k  # it moved
        np.testing.assert_allclose(after_a[k], after_b[k], rtol=0, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("case", [c[0] for c in OPTIMIZERS])
@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_two_epochs_agree(a, b, case):
    history_a = trained(a, case, "epochs").history
    history_b = trained(b, case, "epochs").history
    assert [row["epoch"] for row in history_a] == [row["epoch"] for row in history_b] == [1, 2]
    for row_a, row_b in zip(history_a, history_b, strict=True):
        assert row_a["train_loss"] == pytest.approx(row_b["train_loss"], rel=1e-4)
        # the same predictions (accuracies may be float32 means: compare counts)
        for column, rows in (("train_accuracy", TRAIN_ROWS), ("test_accuracy", TEST_ROWS)):
            assert round(row_a[column] * rows) == round(row_b[column] * rows), column
    first, last = history_a[0], history_a[-1]
    assert last["train_loss"] < first["train_loss"]  # it learns ...
    assert last["train_accuracy"] < 0.95  # ... but not everything: predictions can differ
