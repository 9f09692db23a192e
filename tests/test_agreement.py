"""Every pair of registered backends agrees from the shared start, for every network and
optimizer.

Parametrized over ``mlpstudy.backends.BACKENDS``, so a newly registered backend is
compared with every other one without editing this file (a backend whose framework is
not installed is skipped), and over networks: the study's MLP, a deeper MLP, a small
CNN and a user-defined net (``same`` padding, stride 2, an odd 9x11x3 image), so the
layouts (NHWC/HWIO vs NCHW/OIHW, each framework's flatten order) and TensorFlow's
padding convention are checked in every framework. From the shared start:

- gradients of one batch agree (float32; and float64 to 1e-6 where the framework can
  compute in float64), and each backend's gradients match central finite differences
  of its own loss in float64;
- one optimizer step agrees to 1e-6 (absolute, on every parameter), and is Keras'
  formula applied to NumPy's float64 gradient;
- two epochs' training losses agree to 1e-4 relative, with equal accuracies;
- under ``precision="float64"`` one epoch's losses agree to 1e-10 relative (every
  optimizer on the MLP, and a CNN): the implementations compute the same function;
- under ``precision="bfloat16"`` (mixed precision, each framework's own) each framework
  stays within a derived tolerance of its float32 run, and is not that run.

And each framework's evaluation in chunks (a CNN's layer outputs bounded) gives the
numbers of one call on the whole set.

The data are small and synthetic: noisy copies of ten fixed prototypes, clipped to
[0, 1] like pixels, hard enough that two epochs end well below 100 % accuracy, so equal
accuracies mean equal predictions. Every optimizer runs on the MLP; the other nets run
SGD and Adam (the optimizers do not know the net).
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
from test_optimizers import keras_reference

from mlpstudy import nets
from mlpstudy.backends import BACKENDS, get_backend, info
from mlpstudy.backends.base import SharedStart, TrainSpec, model_input

#: (id, optimizer, settings, learning rate): every optimizer of the axes, Nesterov too.
OPTIMIZERS = [
    ("sgd", "sgd", {}, 0.05),
    ("momentum", "momentum", {"nesterov": False}, 0.01),
    ("nesterov", "momentum", {"nesterov": True}, 0.01),
    ("adam", "adam", {}, 0.001),
]
PAIRS = list(itertools.combinations(BACKENDS, 2))
#: A user's net: 'same' padding with an odd pixel to place, stride 2, on a 9x11x3 image.
ODD = nets.Net.from_config(
    "odd",
    [
        {"type": "conv2d", "filters": 4, "kernel": [3, 2], "stride": 2, "padding": "same"},
        {"type": "conv2d", "filters": 5, "kernel": 2},
        {"type": "maxpool2d", "pool": 2},
        {"type": "flatten"},
        {"type": "dense", "units": 12},
        {"type": "dense", "units": 10, "activation": "softmax"},
    ],
)
#: id -> (net, image shape, training rows, test rows)
NETS = {
    "mlp": (nets.CATALOG["mlp"], (28, 28, 1), 512, 128),
    "mlp-deep": (nets.CATALOG["mlp-deep"], (28, 28, 1), 256, 64),
    "cnn-small": (nets.CATALOG["cnn-small"], (28, 28, 1), 128, 64),
    "odd": (ODD, (9, 11, 3), 128, 64),
}
#: (net, optimizer case) pairs the training tests run.
CASES = [("mlp", c[0]) for c in OPTIMIZERS] + [
    (net, case) for net in NETS if net != "mlp" for case in ("sgd", "adam")
]


def learnable_data(n: int, seed: int, noise: float = 1.0, shape=(784,)):
    """``n`` rows in [0, 1] (flat, ``prod(shape)`` each): a noisy copy of one of 10 fixed
    prototypes per class."""
    size = math.prod(shape)
    prototypes = np.random.default_rng(99).random((10, size))
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 10).astype(np.int64)
    x = np.clip(prototypes[y] + rng.normal(0, noise, (n, size)), 0, 1).astype(np.float32)
    return x, y


@functools.cache
def data(net_id: str):
    _, shape, train_rows, test_rows = NETS[net_id]
    return (*learnable_data(train_rows, 1, shape=shape),
            *learnable_data(test_rows, 2, shape=shape))  # fmt: skip


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


def start(net_id: str, seed: int, trial: int) -> SharedStart:
    net, shape, _, _ = NETS[net_id]
    return SharedStart(seed, trial, net=net, input_shape=shape)


def batch(net_id: str, rows: int, dtype, seed: int = 0):
    """Shared-start parameters with nonzero biases (so their gradients are tested) and a
    batch of the synthetic data, shaped as the net's models take it."""
    net, shape, _, _ = NETS[net_id]
    rng = np.random.default_rng(seed)
    params = {k: v.astype(dtype) for k, v in start(net_id, seed, 0).params.items()}
    for name in net.param_names[1::2]:
        params[name] += rng.normal(0, 0.1, params[name].shape).astype(dtype)
    x, y = learnable_data(rows, seed + 10, shape=shape)
    return params, x.reshape(rows, *model_input(net, shape)).astype(dtype), y


@functools.cache
def trained(name: str, net_id: str, case: str, kind: str, precision: str = "float32"):
    """One training run of backend ``name`` (cached: every pair reuses it).

    kind "step": one step of the whole training set; "epochs": two epochs at batch 32;
    "epoch": the first of those.
    """
    net, shape, train_rows, _ = NETS[net_id]
    _, optimizer, settings, lr = next(c for c in OPTIMIZERS if c[0] == case)
    common = dict(optimizer=optimizer, optimizer_settings=settings, net=net, input_shape=shape,
                  precision=precision)  # fmt: skip
    if kind == "step":
        spec = TrainSpec(lr, train_rows, 1, seed=4, trial=2, **common)
    else:
        spec = TrainSpec(lr, 32, 1 if kind == "epoch" else 2, seed=0, trial=1, **common)
    return backend(name).train(spec, *data(net_id))


def gradients(name: str, net_id: str, dtype):
    params, x, y = batch(net_id, 64 if net_id == "mlp" else 16, dtype, seed=2)
    return backend(name).gradients(NETS[net_id][0], params, x, y)


@pytest.mark.parametrize("net_id", NETS)
@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_gradients_of_one_batch_agree_float32(a, b, net_id):
    (loss_a, grads_a) = gradients(a, net_id, np.float32)
    (loss_b, grads_b) = gradients(b, net_id, np.float32)
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    for name in NETS[net_id][0].param_names:
        assert grads_a[name].dtype == grads_b[name].dtype == np.float32, name
        assert grads_a[name].shape == grads_b[name].shape, name
        scale = np.abs(grads_a[name]).max()
        np.testing.assert_allclose(
            grads_a[name], grads_b[name], rtol=1e-5, atol=1e-6 * scale, err_msg=name
        )


@pytest.mark.parametrize("net_id", NETS)
@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_gradients_of_one_batch_agree_float64(a, b, net_id):
    (loss_a, grads_a) = gradients(a, net_id, np.float64)
    (loss_b, grads_b) = gradients(b, net_id, np.float64)
    for name, grads in ((a, grads_a), (b, grads_b)):
        if grads["W1"].dtype != np.float64:
            pytest.skip(f"{name} computes its gradients in {grads['W1'].dtype}")
    assert loss_a == pytest.approx(loss_b, rel=1e-12)
    for name in NETS[net_id][0].param_names:
        scale = np.abs(grads_a[name]).max()
        np.testing.assert_allclose(
            grads_a[name], grads_b[name], rtol=1e-6, atol=1e-9 * scale, err_msg=name
        )


@pytest.mark.parametrize("net_id", NETS)
@pytest.mark.parametrize("name", BACKENDS)
def test_gradients_match_central_finite_differences(name, net_id):
    """Directional derivatives of the backend's own float64 loss (its ``evaluate``) along
    random directions, one per parameter array and one along all of them."""
    module, net = backend(name), NETS[net_id][0]
    params, x, y = batch(net_id, 16, np.float64, seed=3)
    loss, grads = module.gradients(net, params, x, y)
    if grads["W1"].dtype != np.float64:
        pytest.skip(f"{name} computes its gradients in {grads['W1'].dtype}")
    assert loss == pytest.approx(module.evaluate(net, params, x, y)[0], rel=1e-12)
    rng, eps = np.random.default_rng(5), 1e-5
    for along in [*net.param_names, "all"]:
        names = net.param_names if along == "all" else (along,)
        direction = {k: rng.standard_normal(params[k].shape) for k in names}
        norm = math.sqrt(sum(float(np.sum(d**2)) for d in direction.values()))
        direction = {k: d / norm for k, d in direction.items()}  # a unit step: few ReLU kinks

        def loss_at(t, names=names, direction=direction):
            moved = {k: params[k] + t * direction[k] if k in names else params[k]
                     for k in net.param_names}  # fmt: skip
            return module.evaluate(net, moved, x, y)[0]

        numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
        analytic = sum(float(np.sum(grads[k] * direction[k])) for k in names)
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9), along


@pytest.mark.parametrize(("net_id", "case"), CASES)
@pytest.mark.parametrize("name", BACKENDS)
def test_one_step_is_the_textbook_update(name, net_id, case):
    """The anchor of the pairs below: one step of the whole (shuffled) training set is
    Keras' formula applied to NumPy's float64 gradient of it."""
    net, shape, train_rows, _ = NETS[net_id]
    shared = start(net_id, 4, 2)
    x, y = data(net_id)[0], data(net_id)[1]
    order = shared.permutation(train_rows)  # the same mean, summed in the epoch's order
    params64 = {k: v.astype(np.float64) for k, v in shared.params.items()}
    x = x[order].reshape(train_rows, *shape).astype(np.float64)
    _, grads = get_backend("numpy").gradients(net, params64, x, y[order])
    lr = next(c[3] for c in OPTIMIZERS if c[0] == case)
    after = trained(name, net_id, case, "step").params
    for k in net.param_names:
        expected = keras_reference(case, params64[k].ravel(), grads[k].ravel()[None], lr=lr)
        np.testing.assert_allclose(
            after[k].ravel(), expected, rtol=0, atol=1e-6, err_msg=f"{name} {k}"
        )


@pytest.mark.parametrize(("net_id", "case"), CASES)
@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_one_step_agrees(a, b, net_id, case):
    before = start(net_id, 4, 2).params
    after_a = trained(a, net_id, case, "step").params
    after_b = trained(b, net_id, case, "step").params
    for k in NETS[net_id][0].param_names:
        assert not np.allclose(after_a[k], before[k], atol=1e-5), k  # it moved
        np.testing.assert_allclose(after_a[k], after_b[k], rtol=0, atol=1e-6, err_msg=k)


@pytest.mark.parametrize(("net_id", "case"), CASES)
@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_two_epochs_agree(a, b, net_id, case):
    _, _, train_rows, test_rows = NETS[net_id]
    history_a = trained(a, net_id, case, "epochs").history
    history_b = trained(b, net_id, case, "epochs").history
    assert [row["epoch"] for row in history_a] == [row["epoch"] for row in history_b] == [1, 2]
    for row_a, row_b in zip(history_a, history_b, strict=True):
        assert row_a["train_loss"] == pytest.approx(row_b["train_loss"], rel=1e-4)
        # the same predictions (accuracies may be float32 means: compare counts)
        for column, rows in (("train_accuracy", train_rows), ("test_accuracy", test_rows)):
            assert round(row_a[column] * rows) == round(row_b[column] * rows), column
    first, last = history_a[0], history_a[-1]
    assert last["train_loss"] < first["train_loss"]  # it learns ...
    assert last["train_accuracy"] < 0.95  # ... but not everything: predictions can differ


#: The float64 cases: every optimizer on the MLP, and SGD and Adam on a CNN.
FLOAT64_CASES = [("mlp", c[0]) for c in OPTIMIZERS] + [("cnn-small", "sgd"), ("cnn-small", "adam")]


@pytest.mark.parametrize(("net_id", "case"), FLOAT64_CASES)
@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_one_float64_epoch_agrees_to_1e_10(a, b, net_id, case):
    """``precision="float64"`` end to end (Keras' floatx, ``jax.enable_x64``, float64
    tensors and arrays): one epoch of 16 steps from the shared start gives losses equal to
    1e-10 relative, 6 orders below float32's 1e-4, with equal predictions; and it is not
    the float32 run (which it would be if the precision did not reach the framework)."""
    _, _, train_rows, test_rows = NETS[net_id]
    row_a = trained(a, net_id, case, "epoch", "float64").history[0]
    row_b = trained(b, net_id, case, "epoch", "float64").history[0]
    assert row_a["train_loss"] == pytest.approx(row_b["train_loss"], rel=1e-10, abs=0)
    for column, rows in (("train_accuracy", train_rows), ("test_accuracy", test_rows)):
        assert round(row_a[column] * rows) == round(row_b[column] * rows), column
    for name in (a, b):
        assert trained(name, net_id, case, "epoch", "float64").params["W1"].dtype == np.float64
    float32 = trained(a, net_id, case, "epochs").history[0]["train_loss"]
    assert row_a["train_loss"] != float32


#: Unit roundoff of the mixed precisions' compute dtypes: bfloat16 has 8 significant bits,
#: float16 11, so round-to-nearest errs by <= 2^-9 and 2^-11.
UNIT_ROUNDOFF = {"bfloat16": 2.0**-9, "float16": 2.0**-11}


@pytest.mark.parametrize("precision", UNIT_ROUNDOFF)
@pytest.mark.parametrize("net_id", ["mlp", "cnn-small"])
@pytest.mark.parametrize("name", BACKENDS)
def test_mixed_precision_stays_near_float32_and_is_not_float32(name, net_id, precision):
    """Mixed precision (float32 weights and optimizer, bfloat16 or float16 compute;
    float16 with the framework's loss scaling) against the float32 run of the same shared
    start, two epochs of SGD at batch 32.

    The tolerance, derived: every product in a layer takes rounded operands (input and
    weight, relative error <= u each: u = 2^-9 for bfloat16, 2^-11 for float16) and its
    output is rounded again (u), so a weighted layer's pre-activation errs by <= 3u
    relative to its magnitude, and the logits of a net of k weighted layers by <= 3ku to
    first order (k = 2 for the MLP, 3 for cnn-small). The cross-entropy's derivative in
    the logits has L1 norm <= 2 and the logits here are O(1) like the loss, so at equal
    weights the mean loss differs by <= 6ku relative where every rounding errs the same
    way (12u for the MLP, 18u for the CNN). The weights then differ by the rounded
    gradients' steps, which at this learning rate on this data do not grow (the float32
    and float64 runs stay within 1e-7). The test takes the MLP's 12u for both nets
    (bfloat16 2.3e-2, float16 5.9e-3). Measured here for bfloat16 (2026-12-02, AMD EPYC
    with AVX512-BF16, this test's runs): 5e-4 to 3.3e-3 for the MLP, 9e-5 to 4.7e-4 for
    the CNN, so the bound holds with a margin of 7x for the MLP: 10x the measured error
    (a wrong cast somewhere) would fail it. Accuracies may differ by a few predictions: at
    most 5 % of the rows.

    And mixed precision is not float32: if the framework's mixed precision did nothing,
    the losses would be bit-identical (its float32 runs are deterministic), so the
    difference must exceed u/100 in every epoch, and the final weights stay float32
    (master weights)."""
    unit = UNIT_ROUNDOFF[precision]
    _, _, train_rows, test_rows = NETS[net_id]
    mixed = trained(name, net_id, "sgd", "epochs", precision)
    plain = trained(name, net_id, "sgd", "epochs")
    for row_m, row_p in zip(mixed.history, plain.history, strict=True):
        rel = abs(row_m["train_loss"] - row_p["train_loss"]) / row_p["train_loss"]
        assert unit / 100 < rel <= 12 * unit, (row_m["epoch"], rel)
        for column, rows in (("train_accuracy", train_rows), ("test_accuracy", test_rows)):
            assert abs(row_m[column] - row_p[column]) * rows <= 0.05 * rows + 1, column
    assert all(mixed.params[k].dtype == np.float32 for k in NETS[net_id][0].param_names)


@pytest.mark.parametrize("name", ["tensorflow", "jax", "torch"])
def test_evaluation_in_chunks_gives_the_whole_sets_numbers(name, monkeypatch):
    """Every data set is evaluated in chunks of ``eval_rows`` rows, whose layer outputs
    stay within ``base.CHUNK_BYTES``: with chunks of 41 rows (128 and 64 rows: short last
    chunks) the history is the one-call history's. The study's MLP evaluates MNIST's
    training set in 3 calls of float32 (5 of float64), cnn in calls of 57 images."""
    from mlpstudy.backends import base

    module = backend(name)
    assert base.eval_rows(nets.CATALOG["mlp"], (784,), 4) == 28339
    assert base.eval_rows(nets.CATALOG["mlp"], (784,), 8) == 14169
    assert base.eval_rows(nets.CATALOG["cnn"], (28, 28, 1), 4) == 57
    _, optimizer, settings, lr = OPTIMIZERS[0]
    spec = TrainSpec(lr, 32, 2, seed=0, trial=1, optimizer=optimizer,
                     optimizer_settings=settings, net=nets.CATALOG["cnn-small"])  # fmt: skip
    monkeypatch.setattr(base, "CHUNK_BYTES", 2**40)
    expected = module.train(spec, *data("cnn-small")).history
    monkeypatch.setattr(base, "CHUNK_BYTES", 1_500_000)
    assert base.eval_rows(nets.CATALOG["cnn-small"], (28, 28, 1), 4) == 41
    chunked = module.train(spec, *data("cnn-small")).history
    for row_a, row_b in zip(chunked, expected, strict=True):
        assert row_a["train_loss"] == pytest.approx(row_b["train_loss"], rel=1e-6)
        assert row_a["train_accuracy"] == pytest.approx(row_b["train_accuracy"], abs=1e-6)
        assert row_a["test_accuracy"] == pytest.approx(row_b["test_accuracy"], abs=1e-6)
