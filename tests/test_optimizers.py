"""The optimizers: NumPy's in-place updates against textbook formulas, the frameworks'
conventions against each other, Keras' optimizers built with the spec's numbers.

Each backend against the others is in test_agreement.py; here the optimizer math alone,
on streams of random gradients (no network), so a wrong formula cannot hide behind
agreeing backends.
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from mlpstudy.backends import numpy_mlp
from mlpstudy.backends.base import TrainSpec
from mlpstudy.backends.optimizers import OPTIMIZERS, as_float32

SIZE, STEPS, LR = 1000, 25, 0.01
SETTINGS = {
    "sgd": {},
    "momentum": {"momentum": 0.9, "nesterov": False},
    "nesterov": {"momentum": 0.9, "nesterov": True},
    "adam": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
}


def gradient_stream(seed: int = 0):
    """Gradients over 3 decades of magnitude with sign changes, and some exact zeros."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-4, -1, SIZE)
    grads = rng.standard_normal((STEPS, SIZE)) * scale
    grads[:, :20] = 0.0
    return rng.standard_normal(SIZE) * 0.1, grads


def keras_reference(case: str, w, grads, lr=LR):
    """The formulas of ``keras.optimizers.SGD``/``Adam`` (Keras 3 source), in float64."""
    s, w = SETTINGS[case], w.astype(np.float64).copy()
    v, m = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        if case == "sgd":
            w -= lr * g
        elif case in ("momentum", "nesterov"):
            v = s["momentum"] * v - lr * g
            w += s["momentum"] * v - lr * g if s["nesterov"] else v
        else:
            b1, b2 = s["beta_1"], s["beta_2"]
            alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
            m += (g - m) * (1 - b1)
            v += (g * g - v) * (1 - b2)
            w -= m * alpha / (np.sqrt(v) + s["epsilon"])
    return w


def torch_reference(case: str, w, grads, lr=LR):
    """The formulas of ``torch.optim.SGD``/``Adam`` (PyTorch's docs), in float64; Adam's
    eps is given per step as ``epsilon / sqrt(1 - beta_2^t)``, the torch backend's way
    of running Keras' Adam."""
    s, w = SETTINGS[case], w.astype(np.float64).copy()
    b, m, v = None, np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        if case == "sgd":
            w -= lr * g
        elif case in ("momentum", "nesterov"):
            b = g.copy() if b is None else s["momentum"] * b + g
            w -= lr * (g + s["momentum"] * b if s["nesterov"] else b)
        else:
            b1, b2 = s["beta_1"], s["beta_2"]
            eps = s["epsilon"] / math.sqrt(1 - b2**t)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
            w -= lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


def numpy_optimizer(case: str, w, dtype):
    """NumPy's optimizer for ``case`` on a copy of ``w``, with its gradient buffer."""
    w, g = w.astype(dtype), np.zeros(len(w), dtype)
    optimizer = "momentum" if case == "nesterov" else case
    return numpy_mlp.OPTIMIZERS[optimizer](w, g, LR, SETTINGS[case]), w, g


def test_settings_cover_the_optimizers():
    assert {"momentum" if k == "nesterov" else k for k in SETTINGS} == set(OPTIMIZERS)
    assert set(numpy_mlp.OPTIMIZERS) == set(OPTIMIZERS)


@pytest.mark.parametrize("case", list(SETTINGS))
def test_keras_and_pytorch_conventions_give_the_same_weights(case):
    """Momentum: v = -lr b for a constant learning rate; Adam: eps_t as above."""
    w, grads = gradient_stream()
    np.testing.assert_allclose(
        torch_reference(case, w, grads), keras_reference(case, w, grads), rtol=1e-12, atol=1e-15
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", list(SETTINGS))
def test_numpy_optimizers_follow_keras_formulas(case, dtype):
    w0, grads = gradient_stream(1)
    optimizer, w, g = numpy_optimizer(case, w0, dtype)
    for grad in grads:
        g[:] = grad * optimizer.grad_scale  # what the backward pass hands over
        optimizer.step()
    expected = keras_reference(case, w0, grads)
    assert w.dtype == dtype
    moved = np.abs(expected - w0).max()
    tolerance = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(w, expected, rtol=0, atol=tolerance * max(1.0, moved))


@pytest.mark.parametrize("case", list(SETTINGS))
def test_numpy_optimizer_steps_allocate_nothing(case):
    """No array is allocated per step: tracemalloc sees NumPy's allocations, and one
    temporary of the vector would be 4 bytes x SIZE."""
    w0, grads = gradient_stream(2)
    optimizer, _, g = numpy_optimizer(case, w0, np.float32)
    g[:] = grads[0]
    optimizer.step()  # warm-up: anything created once
    tracemalloc.start()
    try:
        for grad in grads[1:]:
            g[:] = grad
            optimizer.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < SIZE, peak


def test_adam_tolerates_zero_gradients():
    """An exact zero gradient leaves a never-updated weight alone (0 / (0 + eps) = 0)."""
    optimizer, w, g = numpy_optimizer("adam", np.ones(SIZE), np.float32)
    with np.errstate(all="raise"):
        optimizer.step()
    np.testing.assert_array_equal(w, 1.0)


@pytest.mark.parametrize("case", list(SETTINGS))
def test_keras_gets_its_own_optimizer_with_the_specs_numbers(case):
    tensorflow_mlp = pytest.importorskip("mlpstudy.backends.tensorflow_mlp")
    optimizer = "momentum" if case == "nesterov" else case
    settings = dict(SETTINGS[case])
    if case == "adam":
        settings = {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-6}  # not Keras' defaults
    spec = TrainSpec(0.02, 32, 1, 0, 0, optimizer=optimizer, optimizer_settings=settings)
    keras_optimizer = tensorflow_mlp.optimizer(spec)
    config = keras_optimizer.get_config()
    assert config["learning_rate"] == pytest.approx(0.02)
    expected_class = "Adam" if case == "adam" else "SGD"
    assert type(keras_optimizer).__name__ == expected_class
    assert type(keras_optimizer).__module__.startswith("keras.")
    f32 = as_float32  # the spec's numbers are the nearest float32 ones (optimizers.resolve)
    if case == "adam":
        assert (config["beta_1"], config["beta_2"], config["epsilon"]) == (
            f32(0.8),
            f32(0.99),
            f32(1e-6),
        )
    else:
        assert config["momentum"] == f32(settings.get("momentum", 0.0))
        assert config["nesterov"] == settings.get("nesterov", False)
