"""NumPy's hand-written backward pass: entry by entry against central finite differences,
and numerically stable for huge logits.

Every backend's gradients against every other's and against finite differences along
random directions are in test_agreement.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlpstudy.backends import numpy_mlp
from mlpstudy.backends.base import MLP, SharedStart


def _batch(rows: int, dtype, seed: int = 0):
    """A small batch and parameters with nonzero biases (so their gradients are tested)."""
    rng = np.random.default_rng(seed)
    params = {k: v.astype(dtype) for k, v in SharedStart(seed, 0).params.items()}
    params["b1"] += rng.normal(0, 0.1, 64).astype(dtype)
    params["b2"] += rng.normal(0, 0.1, 10).astype(dtype)
    x = rng.random((rows, 784)).astype(dtype)
    y = rng.integers(0, 10, rows)
    return params, x, y


def test_gradients_match_central_finite_differences_float64():
    params, x, y = _batch(8, np.float64)
    loss, grads = numpy_mlp.gradients(MLP, params, x, y)
    assert loss == pytest.approx(numpy_mlp.evaluate(MLP, params, x, y)[0], rel=1e-12)
    rng, eps = np.random.default_rng(1), 1e-6
    for name in MLP.param_names:
        flat, grad = params[name].reshape(-1), grads[name].reshape(-1)
        # 40 entries per array, half of them among the largest gradients
        picks = np.unique(
            np.concatenate(
                [
                    rng.choice(flat.size, min(20, flat.size), replace=False),
                    np.argsort(-np.abs(grad))[:20],
                ]
            )
        )
        numeric = []
        for i in picks:
            saved = flat[i]
            flat[i] = saved + eps
            up = numpy_mlp.evaluate(MLP, params, x, y)[0]
            flat[i] = saved - eps
            down = numpy_mlp.evaluate(MLP, params, x, y)[0]
            flat[i] = saved
            numeric.append((up - down) / (2 * eps))
        numeric = np.array(numeric)
        rel = np.linalg.norm(numeric - grad[picks]) / np.linalg.norm(numeric + grad[picks])
        assert rel < 1e-6, (name, rel)


def test_loss_is_stable_for_huge_logits():
    """Shift by the row max: no overflow in exp, no log(0), the exact cross-entropy."""
    params, x, _ = _batch(4, np.float32)
    params["W2"][:] = 0
    params["b2"][:] = 0
    params["b2"][0] = 1e4  # logits (1e4, 0, ..., 0): p(class 0) = 1, p(other) = exp(-1e4)
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # exp(-1e4) = 0 is fine
        assert numpy_mlp.evaluate(MLP, params, x, np.zeros(4, int)) == (0.0, 1.0)
        loss, acc = numpy_mlp.evaluate(MLP, params, x, np.ones(4, int))
        assert loss == pytest.approx(1e4) and acc == 0.0
        _, grads = numpy_mlp.gradients(MLP, params, x, np.ones(4, int))
    np.testing.assert_allclose(grads["b2"][:2], [1.0, -1.0], atol=1e-6)  # y_hat - onehot
