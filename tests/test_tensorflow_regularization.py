"""What is specific to Keras' regularisation (``tensorflow_mlp``'s module docstring).

Agreement with NumPy (gradients, the textbook step, two epochs) is
``test_agreement_regularization.py``'s, on nets with one regularisation each. Here:
``SharedDropout`` takes each step's rows of the fed masks (short last batch, several steps
per execution); the decays leave biases and a user net's batch-norm gammas and betas
alone; the l2 run's data loss is the penalty-free loss, in chunks too; under mixed
precision the batch norm keeps float32 statistics.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlpstudy import nets
from mlpstudy.backends import base, get_backend
from mlpstudy.backends.base import SharedStart, TrainSpec

pytest.importorskip("tensorflow")
import ml_dtypes  # noqa: E402
import tensorflow as tf  # noqa: E402

#: A user's net with its own batch norm: weight decay meets a gamma and a beta.
NORMED = nets.Net.from_config(
    "normed",
    [
        {"type": "flatten"},
        {"type": "dense", "units": 16, "activation": "linear"},
        {"type": "batchnorm", "momentum": 0.9, "activation": "relu"},
        {"type": "dense", "units": 10, "activation": "softmax"},
    ],
)


@pytest.fixture(scope="module")
def tensorflow_mlp():
    module = get_backend("tensorflow")
    module.set_threads(1)
    return module


@pytest.fixture(scope="module")
def data():
    """100 training rows (batch 32 leaves a short last batch of 4), 40 test rows."""
    rng = np.random.default_rng(0)
    x = rng.random((140, 784), dtype=np.float32)
    y = rng.integers(0, 10, 140)
    return x[:100], y[:100], x[100:], y[100:]


def spec(kind: str, settings: dict, **kw) -> TrainSpec:
    kw = {"optimizer": "sgd", "batch_size": 32, "epochs": 2, **kw}
    return TrainSpec(kw.pop("lr", 0.05), kw.pop("batch_size"), kw.pop("epochs"), seed=3,
                     trial=0, regularization=kind, regularization_settings=settings,
                     **kw)  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shared_dropout_takes_each_steps_rows_of_the_fed_masks(tensorflow_mlp, dtype):
    """Steps of 4, 4 and 2 rows take masks 0..4, 4..8, 8..10, kept numbers scaled by
    1 / (1 - rate) in the input's dtype; evaluation is the identity and moves nothing."""
    rate = 0.3
    layer = tensorflow_mlp.SharedDropout(rate, 10, (6,), dtype=dtype.__name__)
    masks = np.random.default_rng(1).random((10, 6)) >= rate
    layer.feed(masks)
    x = np.random.default_rng(2).random((10, 6)).astype(dtype) + 1
    np.testing.assert_array_equal(layer(tf.constant(x[:4]), training=False).numpy(), x[:4])
    for s, e in ((0, 4), (4, 8), (8, 10)):
        out = layer(tf.constant(x[s:e]), training=True).numpy()
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, x[s:e] * masks[s:e] * dtype(1 / (1 - rate)))
    layer.feed(~masks)  # the next epoch's masks rewind the position
    out = layer(tf.constant(x[:4]), training=True).numpy()
    np.testing.assert_array_equal(out == 0, masks[:4])


def test_several_steps_per_execution_take_the_same_masks(tensorflow_mlp, data):
    """Keras' steps_per_execution runs 3 steps in one call: the position advances inside
    it, so the run (short last batch included) is the one-step-per-call run."""
    runs = [
        tensorflow_mlp.train(
            spec("dropout", {"rate": 0.3}, options={"steps_per_execution": n}), *data
        )
        for n in (1, 3)
    ]
    losses = [[row["train_loss"] for row in run.history] for run in runs]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-6)
    for k in runs[0].params:
        np.testing.assert_allclose(runs[1].params[k], runs[0].params[k], atol=1e-6)


@pytest.mark.parametrize(("kind", "settings"), [("l2", {"lambda": 0.5}),
                                                ("decoupled", {"weight_decay": 1.0})])  # fmt: skip
def test_decays_touch_the_kernels_only(tensorflow_mlp, data, kind, settings):
    """Two SGD steps of 50 rows on a net with its own batch norm, by formula on the
    backend's own gradients: kernels W - lr (g + lambda W) or W - lr wd W - lr g; biases,
    gamma and beta W - lr g, though after the first step they are far enough from 0 (b2,
    beta) or at 1 (gamma) that a decay would show; the running statistics as the batches
    say (momentum 0.9, biased variance)."""
    x, y = data[0], data[1]
    run_spec = spec(kind, settings, net=NORMED, batch_size=50, epochs=1, lr=0.1)
    shared = SharedStart.of(run_spec)
    order = shared.permutation(len(x))
    lr, decay = run_spec.learning_rate, run_spec.l2 + run_spec.weight_decay
    expected = {k: v.astype(np.float64) for k, v in shared.params.items()}
    shown = set()
    for rows in (order[:50], order[50:]):
        now = {k: v.astype(np.float32) for k, v in expected.items()}
        _, grads = tensorflow_mlp.gradients(NORMED, now, x[rows], y[rows])
        z = x[rows] @ expected["W1"] + expected["b1"]
        for k in NORMED.param_names:
            kernel = k in NORMED.kernel_names
            shown |= {k} if np.abs(lr * decay * expected[k]).max() > 1e-4 else set()
            expected[k] = expected[k] - lr * (grads[k] + (decay * expected[k] if kernel else 0))
        for k, batch in (("mean1", z.mean(0)), ("var1", z.var(0))):
            expected[k] = 0.9 * expected[k] + 0.1 * batch
    assert shown == {"W1", "W2", "gamma1", "beta1", "b2"}  # b1: before a batch norm, ~0
    after = tensorflow_mlp.train(run_spec, *data).params
    assert set(after) == set(NORMED.weight_names)
    for k in NORMED.weight_names:
        np.testing.assert_allclose(after[k], expected[k], rtol=1e-5, atol=2e-6, err_msg=k)


def test_l2_train_loss_is_the_data_loss_in_chunks_too(tensorflow_mlp, data, monkeypatch):
    """test_on_batch's loss holds the penalty; the history's train_loss is the data loss
    (the protocol's evaluate at the final weights), the objective adds spec.penalty, and
    evaluation in chunks of 41 rows gives one call's numbers."""
    l2 = spec("l2", {"lambda": 0.2}, epochs=1)
    whole = tensorflow_mlp.train(l2, *data)
    monkeypatch.setattr(base, "CHUNK_BYTES", 41 * 74 * 4)  # the MLP's 74 numbers a row
    assert base.eval_rows(l2.net, (784,), 4) == 41
    chunked = tensorflow_mlp.train(l2, *data)
    row, other = whole.history[0], chunked.history[0]
    loss, accuracy = tensorflow_mlp.evaluate(l2.net, whole.params, data[0], data[1])
    assert row["train_loss"] == pytest.approx(loss, rel=1e-6)
    assert row["train_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    penalty = l2.penalty(whole.params)
    assert penalty > 0.1 * loss
    assert row["train_objective"] == pytest.approx(loss + penalty, rel=1e-6)
    for column in ("train_loss", "train_objective", "train_accuracy", "test_accuracy"):
        assert other[column] == pytest.approx(row[column], rel=1e-6), column


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_batch_norm_keeps_float32_statistics(tensorflow_mlp, data, precision):
    """Keras' batch norm upcasts its bfloat16 (float16) input: the running statistics are
    float32 numbers that the compute dtype could not hold (a batch norm computing in it
    would leave only numbers it can), within that dtype's rounding of the float32 run."""
    compute = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16}[precision]
    settings = {"momentum": 0.9}
    runs = {p: tensorflow_mlp.train(spec("batchnorm", settings, precision=p), *data)
            for p in ("float32", precision)}  # fmt: skip
    for name in ("mean1", "var1"):
        stats = runs[precision].params[name]
        assert stats.dtype == np.float32
        assert np.any(stats != stats.astype(compute).astype(np.float32)), name
        reference = runs["float32"].params[name]
        np.testing.assert_allclose(stats, reference, rtol=0.05, atol=0.05 * np.abs(reference).max())
