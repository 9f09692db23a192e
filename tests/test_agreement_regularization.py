"""Every backend agrees with NumPy's written-out passes under every regularisation, from
the shared start (``mlpstudy.regularization``: the conventions).

NumPy is the reference because every one of its formulas is written out and checked
here against its definition: gradients against central finite differences (dropout
with fixed keep-masks, batch norm with the batch's statistics), one step against the
textbook update (``l2``: ``g + lambda W``; ``decoupled``: the optimizer's step beside
``- lr wd W``), running statistics against their definition (Keras' momentum, the
biased variance). Every other backend is then compared with it:

- gradients of one batch (float32; float64 to 1e-6 where the framework computes in it)
  with dropout under given keep-masks and with batch norm;
- evaluation with batch norms' running statistics;
- one step of the whole training set: the textbook update, running statistics included;
- two epochs at batch 32: training losses and objectives to 1e-4 relative, equal
  accuracies; the dropout runs apply the shared keep-masks, so they agree step for step;
- one float64 epoch: losses and objectives to 1e-10 relative, every weight to 1e-8;
- and the regularisation is not ignored: every regularised run leaves the plain run
  of the same start by far more than the agreement's tolerance.

Data, tolerances and helpers are test_agreement's.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from test_agreement import OPTIMIZERS, backend, learnable_data
from test_optimizers import keras_reference

from mlpstudy import nets
from mlpstudy.backends import BACKENDS, get_backend, numpy_layers
from mlpstudy.backends.base import SharedStart, TrainSpec, model_input

OTHERS = [name for name in BACKENDS if name != "numpy"]
#: id -> (net, image shape, training rows, test rows)
NETS = {
    "mlp": (nets.CATALOG["mlp"], (28, 28, 1), 256, 64),
    "cnn-small": (nets.CATALOG["cnn-small"], (28, 28, 1), 128, 64),
}
#: Settings strong enough to show within two epochs (momentum 0.9: running statistics
#: that move in a few steps).
SETTINGS = {
    "none": {},
    "l2": {"lambda": 0.1},
    "decoupled": {"weight_decay": 1.0},
    "dropout": {"rate": 0.3},
    "batchnorm": {"epsilon": 1e-3, "momentum": 0.9},
}
KINDS = [k for k in SETTINGS if k != "none"]
#: (net, regularisation, optimizer case) the training tests run.
CASES = [
    ("mlp", "l2", "sgd"),
    ("mlp", "l2", "adam"),
    ("mlp", "decoupled", "momentum"),
    ("mlp", "decoupled", "adam"),
    ("mlp", "dropout", "sgd"),
    ("mlp", "dropout", "adam"),
    ("mlp", "batchnorm", "sgd"),
    ("mlp", "batchnorm", "adam"),
    ("cnn-small", "dropout", "sgd"),
    ("cnn-small", "batchnorm", "sgd"),
]


def spec_of(net_id: str, kind: str, case: str, batch: int, epochs: int, **kw) -> TrainSpec:
    net, shape, _, _ = NETS[net_id]
    _, optimizer, settings, lr = next(c for c in OPTIMIZERS if c[0] == case)
    return TrainSpec(lr, batch, epochs, seed=kw.pop("seed", 0), trial=kw.pop("trial", 1),
                     optimizer=optimizer, optimizer_settings=settings, net=net,
                     input_shape=shape, regularization=kind,
                     regularization_settings=SETTINGS[kind], **kw)  # fmt: skip


@functools.cache
def data(net_id: str):
    _, shape, train_rows, test_rows = NETS[net_id]
    return (*learnable_data(train_rows, 1, shape=shape),
            *learnable_data(test_rows, 2, shape=shape))  # fmt: skip


@functools.cache
def trained(name: str, net_id: str, kind: str, case: str, what: str = "epochs"):
    """One run of backend ``name`` (cached). ``what`` "epochs": two epochs at batch 32;
    "step": one step of the whole training set; "float64": one float64 epoch at batch 32."""
    if what == "step":
        spec = spec_of(net_id, kind, case, NETS[net_id][2], 1, seed=4, trial=2)
    elif what == "float64":
        spec = spec_of(net_id, kind, case, 32, 1, precision="float64")
    else:
        spec = spec_of(net_id, kind, case, 32, 2)
    return backend(name).train(spec, *data(net_id))


def weights(net: nets.Net, shape, dtype, seed: int = 0):
    """Shared-start weights with every bias, gamma and beta moved off its start and
    running statistics that are not the start's (so each is tested)."""
    rng = np.random.default_rng(seed)
    start = SharedStart(seed, 0, net=net, input_shape=shape).params
    params = {k: v.astype(dtype) for k, v in start.items()}
    for name in params:
        if name[0] != "W":
            noise = rng.normal(0, 0.1, params[name].shape)
            params[name] = (np.abs(params[name] + noise) if name.startswith("var") else
                            params[name] + noise).astype(dtype)  # fmt: skip
    return params


def batch(net_id: str, kind: str, rows: int, dtype, seed: int = 0):
    """The regularised net, its weights, a batch shaped as models take it, keep-masks."""
    spec = spec_of(net_id, kind, "sgd", 32, 1)
    net, shape = spec.net, spec.input_shape
    x, y = learnable_data(rows, seed + 10, shape=shape)
    x = x.reshape(rows, *model_input(net, shape)).astype(dtype)
    rng = np.random.default_rng(seed + 20)
    shapes = net.shapes(shape)
    keep = [rng.random((rows, *shapes[i])) >= net.layers[i].rate for i in net.dropout_layers]
    return net, weights(net, shape, dtype, seed), x, y, keep


def assert_grads_close(a, b, names, rtol, atol):
    for name in names:
        assert a[name].shape == b[name].shape, name
        scale = np.abs(a[name]).max()
        np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol * scale, err_msg=name)


@pytest.mark.parametrize("kind", ["dropout", "batchnorm"])
@pytest.mark.parametrize("net_id", NETS)
@pytest.mark.parametrize("name", OTHERS)
def test_gradients_of_one_batch_agree_with_numpy(name, net_id, kind):
    """float32 within 1e-4 relative (1e-5 of the largest entry absolute); with batch norm
    1e-4 of the largest entry: a batch norm's per-channel sums run over M = N H W numbers
    (21632 for cnn-small's first map here), and PyTorch's CPU kernel accumulates them in
    float32: measured against the float64 gradient, PyTorch's float32 gradients err by up
    to 3.7e-5 of the largest entry, NumPy's and JAX's (float64 or pairwise sums) 1.5e-6.
    float64 within 1e-6."""
    module, reference = backend(name), get_backend("numpy")
    atol32 = 1e-4 if kind == "batchnorm" else 1e-5
    for dtype, rtol, atol in ((np.float32, 1e-4, atol32), (np.float64, 1e-6, 1e-9)):
        net, params, x, y, keep = batch(net_id, kind, 32, dtype, seed=2)
        loss, grads = module.gradients(net, params, x, y, keep)
        if grads["W1"].dtype != dtype:
            assert dtype == np.float64, f"{name}: float32 gradients in {grads['W1'].dtype}"
            continue
        expected_loss, expected = reference.gradients(net, params, x, y, keep)
        assert loss == pytest.approx(expected_loss, rel=10 * rtol)
        assert set(grads) == set(net.param_names)
        cancelled = cancelled_biases(net)
        assert_grads_close(grads, expected, set(net.param_names) - cancelled, rtol, atol)
        for k in cancelled:  # a true 0: rounding noise only, beside the kernel's gradient
            kernel = np.abs(expected["W" + k[1:]]).max()
            assert np.abs(grads[k]).max() <= atol * kernel >= np.abs(expected[k]).max(), k


@pytest.mark.parametrize("kind", ["dropout", "batchnorm"])
@pytest.mark.parametrize("net_id", NETS)
@pytest.mark.parametrize("name", BACKENDS)
def test_gradients_match_central_finite_differences(name, net_id, kind):
    """Directional derivatives of the backend's own float64 training loss (its
    ``gradients``' loss, with the same keep-masks and the batch's statistics)."""
    module = backend(name)
    net, params, x, y, keep = batch(net_id, kind, 16, np.float64, seed=3)
    loss, grads = module.gradients(net, params, x, y, keep)
    if grads["W1"].dtype != np.float64:
        pytest.skip(f"{name} computes its gradients in {grads['W1'].dtype}")
    rng, eps = np.random.default_rng(5), 1e-5
    for along in [*net.param_names, "all"]:
        names = net.param_names if along == "all" else (along,)
        direction = {k: rng.standard_normal(params[k].shape) for k in names}
        norm = math.sqrt(sum(float(np.sum(d**2)) for d in direction.values()))
        direction = {k: d / norm for k, d in direction.items()}

        def loss_at(t, names=names, direction=direction):
            moved = {k: params[k] + t * direction[k] if k in names else params[k]
                     for k in params}  # fmt: skip
            return module.gradients(net, moved, x, y, keep)[0]

        numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
        analytic = sum(float(np.sum(grads[k] * direction[k])) for k in names)
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9), along


def test_numpy_dropout_and_batchnorm_forward_are_their_definitions():
    """NumPy's training loss with all-keep masks and rate 0 is the plain net's; a dropped
    number is zero and a kept one scaled by 1 / (1 - rate) (seen through the first dense
    layer's gradient, x^T dz); evaluation ignores dropout."""
    numpy = get_backend("numpy")
    net, params, x, y, keep = batch("mlp", "dropout", 16, np.float64, seed=1)
    plain = nets.CATALOG["mlp"]
    all_keep = [np.ones_like(k) for k in keep]
    rate = net.layers[net.dropout_layers[0]].rate
    loss_keep, grads_keep = numpy.gradients(net, params, x, y, all_keep)
    # all kept: every hidden number scaled by 1/(1-rate), so not the plain loss ...
    assert loss_keep != pytest.approx(numpy.gradients(plain, params, x, y)[0], rel=1e-6)
    # ... but scaling W2 by (1 - rate) undoes it exactly
    undone = dict(params, W2=params["W2"] * (1 - rate))
    assert numpy.gradients(net, undone, x, y, all_keep)[0] == pytest.approx(
        numpy.gradients(plain, params, x, y)[0], rel=1e-12
    )
    assert numpy.evaluate(net, params, x, y) == pytest.approx(numpy.evaluate(plain, params, x, y))
    # a dropped hidden unit gets no gradient into W2's row for that image
    one_unit = [np.zeros_like(k) for k in keep]
    one_unit[0][:, 5] = True
    _, grads = numpy.gradients(net, params, x, y, one_unit)
    assert np.all(grads["W2"][np.arange(64) != 5] == 0) and np.any(grads["W2"][5] != 0)
    # batch norm in evaluation: (x - mean) / sqrt(var + eps) * gamma + beta, then ReLU
    bn, params, x, y, _ = batch("mlp", "batchnorm", 16, np.float64, seed=1)
    eps = bn.layers[2].epsilon
    z = x @ params["W1"] + params["b1"]
    h = np.maximum((z - params["mean1"]) / np.sqrt(params["var1"] + eps) * params["gamma1"]
                   + params["beta1"], 0)  # fmt: skip
    logits = h @ params["W2"] + params["b2"]
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    assert numpy.evaluate(bn, params, x, y)[0] == pytest.approx(
        -logp[np.arange(16), y].mean(), rel=1e-12
    )


@pytest.mark.parametrize("net_id", NETS)
@pytest.mark.parametrize("name", OTHERS)
def test_evaluation_with_running_statistics_agrees_with_numpy(name, net_id):
    net, params, x, y, _ = batch(net_id, "batchnorm", 64, np.float32, seed=4)
    loss, accuracy = backend(name).evaluate(net, params, x, y)
    expected = get_backend("numpy").evaluate(net, params, x, y)
    assert loss == pytest.approx(expected[0], rel=1e-5)
    assert round(accuracy * 64) == round(expected[1] * 64)


def textbook_step(net_id: str, kind: str, case: str):
    """One step of the whole shuffled training set from the shared start, by formula, on
    NumPy's float64 gradient (the anchor): Keras' optimizer formula on ``g + lambda W``
    (l2) or beside ``- lr wd W`` (decoupled); batch norms' running statistics
    ``m running + (1 - m) batch`` with the batch's biased variance."""
    spec = spec_of(net_id, kind, case, NETS[net_id][2], 1, seed=4, trial=2)
    net, shape, rows = spec.net, spec.input_shape, NETS[net_id][2]
    shared = SharedStart.of(spec)
    order = shared.permutation(rows)
    keep = shared.keep_masks(rows)
    params = {k: v.astype(np.float64) for k, v in shared.params.items()}
    x, y = data(net_id)[0][order], data(net_id)[1][order]
    x = x.reshape(rows, *model_input(net, shape)).astype(np.float64)
    _, grads = get_backend("numpy").gradients(net, params, x, y, keep)
    expected = {}
    for k in net.param_names:
        g = grads[k] + (spec.l2 * params[k] if k in net.kernel_names else 0)
        step = keras_reference(case, params[k].ravel(), g.ravel()[None], lr=spec.learning_rate)
        if k in net.kernel_names:
            step = step - spec.learning_rate * spec.weight_decay * params[k].ravel()
        expected[k] = step.reshape(params[k].shape)
    if net.norm_layers:
        inputs = numpy_layers.norm_inputs(net, params, x, keep)
        for i, z in zip(net.norm_layers, inputs, strict=True):
            mean_name, var_name = net.layer_weights()[i][2:]
            m = net.layers[i].momentum
            axes = tuple(range(z.ndim - 1))
            expected[mean_name] = m * params[mean_name] + (1 - m) * z.mean(axes)
            expected[var_name] = m * params[var_name] + (1 - m) * z.var(axes)
    return expected


STEP_CASES = [c for c in CASES if c[0] == "mlp"] + [("cnn-small", "batchnorm", "sgd")]


@pytest.mark.parametrize(("net_id", "kind", "case"), STEP_CASES)
@pytest.mark.parametrize("name", BACKENDS)
def test_one_step_is_the_textbook_update(name, net_id, kind, case):
    """Within 2e-6 of the formula on float64 gradients; with batch norm under Adam 1e-5
    (1 % of the step): Adam's first step lr g / (|g| + eps) moves by lr / eps = 1e4 per
    unit of g near g = 0, and a batch norm's input gradient, a difference of nearly equal
    terms, carries float32 errors of ~1e-10 there (measured: 3 of 50176 entries of W1
    off by up to 3.2e-6, NumPy's own float32 pass)."""
    expected = textbook_step(net_id, kind, case)
    after = trained(name, net_id, kind, case, "step").params
    net = spec_of(net_id, kind, case, 32, 1).net
    assert set(after) == set(net.weight_names)
    for k, value in expected.items():
        atol = 1e-5 if (kind, case) == ("batchnorm", "adam") else 2e-6
        if case == "adam" and k in cancelled_biases(net):
            atol = OPTIMIZERS[-1][3]  # Adam's step on float32 noise: at most lr
        np.testing.assert_allclose(after[k], value, rtol=0, atol=atol, err_msg=f"{name} {k}")


def cancelled_biases(net: nets.Net) -> set[str]:
    """The biases of the layers feeding a batch norm: it subtracts their mean, so their
    gradient is 0 and only float32 rounding (~1e-10) is left of it, which Adam, dividing
    by its own magnitude, turns into steps of up to lr in any direction. They do not
    change what the net computes, so their gradients are checked to be ~0 beside their
    kernel's, their one Adam step only within lr, and their values after two epochs not
    at all (noise summed over the steps)."""
    names = net.layer_weights()
    return {names[i][1] for i in net.param_layers if i + 1 in net.norm_layers}


def test_decoupled_decay_is_l2_for_plain_sgd_and_not_for_momentum():
    """With plain SGD, W - lr (g + lambda W) = W - lr wd W - lr g: the same run for
    lambda = wd; with momentum the decay does not enter the velocity, so they differ."""
    common = dict(net=nets.CATALOG["mlp"], input_shape=(28, 28, 1))
    runs = {}
    for kind, settings in (("l2", {"lambda": 0.05}), ("decoupled", {"weight_decay": 0.05})):
        for optimizer, lr in (("sgd", 0.05), ("momentum", 0.01)):
            spec = TrainSpec(lr, 32, 1, 0, 1, optimizer=optimizer, regularization=kind,
                             regularization_settings=settings, **common)  # fmt: skip
            runs[kind, optimizer] = get_backend("numpy").train(spec, *data("mlp")).params
    for k in ("W1", "b1", "W2", "b2"):
        np.testing.assert_allclose(runs["l2", "sgd"][k], runs["decoupled", "sgd"][k], atol=1e-6)
    assert not np.allclose(runs["l2", "momentum"]["W1"], runs["decoupled", "momentum"]["W1"],
                           atol=1e-5)  # fmt: skip


@pytest.mark.parametrize(("net_id", "kind", "case"), CASES)
@pytest.mark.parametrize("name", OTHERS)
def test_two_epochs_agree_with_numpy(name, net_id, kind, case):
    _, _, train_rows, test_rows = NETS[net_id]
    history = trained(name, net_id, kind, case).history
    expected = trained("numpy", net_id, kind, case).history
    assert [row["epoch"] for row in history] == [1, 2]
    for row, ref in zip(history, expected, strict=True):
        assert row["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-4)
        assert row["train_objective"] == pytest.approx(ref["train_objective"], rel=1e-4)
        for column, rows in (("train_accuracy", train_rows), ("test_accuracy", test_rows)):
            assert round(row[column] * rows) == round(ref[column] * rows), column
    final, reference = trained(name, net_id, kind, case).params, trained("numpy", net_id, kind,
                                                                          case).params  # fmt: skip
    for k in reference:
        if k in cancelled_biases(spec_of(net_id, kind, case, 32, 1).net):
            continue  # float32 noise (amplified by Adam): cancelled_biases
        scale = np.abs(reference[k]).max()
        np.testing.assert_allclose(final[k], reference[k], rtol=1e-3, atol=1e-3 * scale,
                                   err_msg=k)  # fmt: skip


#: One float64 epoch per regularisation (and a CNN's dropout and batch norm).
FLOAT64_CASES = [
    ("mlp", "l2", "adam"),
    ("mlp", "decoupled", "momentum"),
    ("mlp", "dropout", "sgd"),
    ("mlp", "batchnorm", "adam"),
    ("cnn-small", "dropout", "sgd"),
    ("cnn-small", "batchnorm", "sgd"),
]


@pytest.mark.parametrize(("net_id", "kind", "case"), FLOAT64_CASES)
@pytest.mark.parametrize("name", OTHERS)
def test_one_float64_epoch_agrees_with_numpy_to_1e_10(name, net_id, kind, case):
    """In float64 every backend's run is NumPy's to rounding, step for step: the same
    keep-masks, batch statistics, running statistics, penalty and decay; 6 orders below
    float32's tolerance, so the implementations compute the same function."""
    run, reference = (
        trained(name, net_id, kind, case, "float64"),
        trained("numpy", net_id, kind, case, "float64"),
    )
    (row,), (ref,) = run.history, reference.history
    assert row["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-10, abs=0)
    assert row["train_objective"] == pytest.approx(ref["train_objective"], rel=1e-10, abs=0)
    cancelled = cancelled_biases(spec_of(net_id, kind, case, 32, 1).net)
    for k, value in reference.params.items():
        assert run.params[k].dtype == np.float64, k
        if k not in cancelled:
            scale = np.abs(value).max()
            np.testing.assert_allclose(run.params[k], value, rtol=1e-8, atol=1e-10 * scale,
                                       err_msg=k)  # fmt: skip


@pytest.mark.parametrize(("net_id", "kind", "case"), CASES)
@pytest.mark.parametrize("name", BACKENDS)
def test_the_regularisation_changes_the_run(name, net_id, kind, case):
    """10x beyond the agreement's 1e-4: a backend that ignored the setting would fail."""
    regularised = trained(name, net_id, kind, case).history[-1]
    plain = trained(name, net_id, "none", case).history[-1]
    assert abs(regularised["train_loss"] - plain["train_loss"]) > 1e-3 * plain["train_loss"]
    if kind == "l2":
        penalty = regularised["train_objective"] - regularised["train_loss"]
        spec = spec_of(net_id, kind, case, 32, 2)
        final = trained(name, net_id, kind, case).params
        assert penalty == pytest.approx(spec.penalty(final), rel=1e-4) and penalty > 0
    else:
        assert regularised["train_objective"] == regularised["train_loss"]


@pytest.mark.parametrize("name", BACKENDS)
def test_dropout_with_independent_starts_is_each_frameworks_own(name):
    """With independent starts each framework drops with its own generator: the run is
    reproducible, learns, and is not the shared-start run."""
    spec = spec_of("mlp", "dropout", "sgd", 32, 2, start="independent")
    first = backend(name).train(spec, *data("mlp")).history
    again = backend(name).train(spec, *data("mlp")).history
    assert [r["train_loss"] for r in first] == [r["train_loss"] for r in again]
    assert first[-1]["train_loss"] < first[0]["train_loss"] < math.log(10)
    shared = trained(name, "mlp", "dropout", "sgd").history
    assert first[-1]["train_loss"] != shared[-1]["train_loss"]
