"""What is specific to JAX's regularisation (``jax_mlp``'s module docstring).

Agreement with NumPy (gradients, the textbook step, two epochs) is
``test_agreement_regularization.py``'s. Here: the scanned epoch against the plain loop
with keep-masks (shared and JAX's own) and batch-norm statistics carried through the
scan; float64 runs against NumPy's float64 ones, tightly; bfloat16's batch norm in
float32; the decoupled decay outside the momentum trace and Adam's moments.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlpstudy import nets
from mlpstudy.backends import get_backend
from mlpstudy.backends.base import SharedStart, TrainSpec

pytest.importorskip("jax")
pytest.importorskip("optax")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

SETTINGS = {"dropout": {"rate": 0.3}, "batchnorm": {"momentum": 0.9}}


@pytest.fixture(scope="module")
def jax_mlp():
    module = get_backend("jax")
    module.set_threads(1)
    return module


@pytest.fixture(scope="module")
def data():
    """100 training rows (batch 32 leaves a short last batch of 4), 40 test rows."""
    rng = np.random.default_rng(0)
    x = rng.random((140, 784), dtype=np.float32)
    y = rng.integers(0, 10, 140)
    return x[:100], y[:100], x[100:], y[100:]


def spec(kind: str, epochs: int = 2, **kw) -> TrainSpec:
    return TrainSpec(0.05, 32, epochs, seed=3, trial=0, optimizer="momentum", regularization=kind,
                     regularization_settings=SETTINGS[kind], **kw)  # fmt: skip


@pytest.mark.parametrize(("kind", "start"), [("dropout", "shared"), ("dropout", "independent"),
                                             ("batchnorm", "shared")])  # fmt: skip
def test_scan_epoch_is_the_plain_loop_with_masks_and_statistics(jax_mlp, data, kind, start):
    """The scanned epoch takes each step's keep-masks (the shared ones' rows s..e, or its
    own drawn from the step's first row) and moves the running statistics as the plain
    loop does, the short last batch included."""
    runs = {
        scan: jax_mlp.train(spec(kind, start=start, options={"scan_epoch": scan}), *data)
        for scan in (False, True)
    }
    losses = {scan: [row["train_loss"] for row in r.history] for scan, r in runs.items()}
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-6)
    net = spec(kind).net
    assert set(runs[True].params) == set(net.weight_names)
    for name in net.weight_names:
        a, b = runs[True].params[name], runs[False].params[name]
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max(), err_msg=name)
    if kind == "batchnorm":  # the statistics moved from their start (0 and 1)
        assert np.abs(runs[True].params["mean1"]).min() > 1e-3
        assert np.abs(runs[True].params["var1"] - 1).min() > 1e-3


def test_bfloat16_batch_norm_computes_in_float32(jax_mlp):
    """Under bfloat16 the dense layer's output is bfloat16, and the batch norm takes its
    statistics in float32 (Keras'): an input of mean ~100 and spread ~0.5, where bfloat16
    numbers are 0.5 apart, has a batch variance that bfloat16 arithmetic would lose."""
    net = spec("batchnorm").net
    params = SharedStart(0, 0, net=net).params
    params["b1"] = np.full_like(params["b1"], 100.0)
    x = np.random.default_rng(1).random((64, 784), dtype=np.float32)
    _, stats = jax_mlp.forward(net, params, jnp.asarray(x), "bfloat16", True)
    z = (jnp.asarray(x, jnp.bfloat16) @ jnp.asarray(params["W1"], jnp.bfloat16)
         + jnp.asarray(params["b1"], jnp.bfloat16))  # fmt: skip
    z = np.asarray(z.astype(jnp.float32), np.float64)
    assert stats["mean1"].dtype == stats["var1"].dtype == jnp.float32
    np.testing.assert_allclose(stats["mean1"], z.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["var1"], z.var(0), rtol=1e-4)
    assert z.var(0).min() > 0.01  # the variance a bfloat16 mean of ~100 would round away


def test_bfloat16_run_keeps_float32_weights_and_statistics(jax_mlp, data):
    runs = {p: jax_mlp.train(spec("batchnorm", 1, precision=p), *data)
            for p in ("float32", "bfloat16")}  # fmt: skip
    assert all(v.dtype == np.float32 for v in runs["bfloat16"].params.values())
    for name in ("mean1", "var1"):
        np.testing.assert_allclose(runs["bfloat16"].params[name], runs["float32"].params[name],
                                   rtol=0.05, atol=0.05)  # fmt: skip
    assert runs["bfloat16"].history[-1]["train_loss"] == pytest.approx(
        runs["float32"].history[-1]["train_loss"], rel=0.02
    )


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_decoupled_decay_stays_out_of_the_optimizers_state(jax_mlp, optimizer):
    """With zero gradients the momentum trace and Adam's moments stay zero, so each step
    is exactly - lr wd W on the kernels and nothing on the biases; ``l2`` puts lambda W
    into the gradient, so its steps grow with the trace."""
    net = nets.CATALOG["mlp"]
    params = {k: jnp.asarray(v) for k, v in SharedStart(0, 0).params.items()}
    params["b1"] = params["b1"] + 1.0
    zeros = jax.tree.map(jnp.zeros_like, params)
    steps = {}
    for kind, settings in (("decoupled", {"weight_decay": 0.5}), ("l2", {"lambda": 0.5})):
        tx = jax_mlp.optimizer(
            TrainSpec(
                0.1,
                32,
                1,
                0,
                0,
                optimizer=optimizer,
                net=net,
                regularization=kind,
                regularization_settings=settings,
            )
        )
        state, moved = tx.init(params), params
        for _ in range(2):
            updates, state = tx.update(zeros, state, moved)
            moved = jax.tree.map(lambda p, u: p + u, moved, updates)
        steps[kind] = updates
        if kind == "decoupled":
            before = jax.tree.map(lambda p, u: p - u, moved, updates)
            np.testing.assert_allclose(updates["W1"], -0.1 * 0.5 * before["W1"], rtol=1e-6)
            assert not np.any(updates["b1"])
    assert np.abs(steps["l2"]["W1"]).max() > 1.5 * np.abs(steps["decoupled"]["W1"]).max()
    assert not np.any(steps["l2"]["b1"])
