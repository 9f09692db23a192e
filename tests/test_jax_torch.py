"""What is specific to the JAX and PyTorch backends.

Agreement with the other backends (gradients, one step, two epochs, finite differences)
is ``test_agreement.py``'s, over every registered backend. Here: JAX's ``scan_epoch``
against its plain loop, PyTorch's ``compile`` option, each framework's own (independent)
start, Adam's epsilon in Keras' convention, thread settings, divergence. Each test skips,
saying which, if JAX/optax or PyTorch is not installed.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from mlpstudy.backends import get_backend
from mlpstudy.backends.base import HISTORY_COLUMNS, MLP, SharedStart, TrainSpec

BACKENDS = ("jax", "torch")
FRAMEWORKS = {"jax": ("jax", "optax"), "torch": ("torch",)}


@functools.cache
def _backend(name: str):
    """The backend module on one thread, as in a job (a framework's default pool of one
    thread per core spins against everything else on a busy machine), or a skip that
    names the missing framework."""
    for module in FRAMEWORKS[name]:
        pytest.importorskip(module)
    backend = get_backend(name)
    backend.set_threads(1)
    return backend


@pytest.fixture(scope="module")
def data():
    """100 training rows (batch 32 leaves a short last batch of 4), 40 test rows."""
    rng = np.random.default_rng(0)
    x = rng.random((140, 784), dtype=np.float32)
    y = rng.integers(0, 10, 140)
    return x[:100], y[:100], x[100:], y[100:]


def _losses(result):
    return [row["train_loss"] for row in result.history]


@pytest.mark.parametrize(
    ("optimizer", "batch"), [("sgd", 32), ("momentum", 32), ("adam", 32), ("sgd", 128)]
)
def test_scan_epoch_gives_the_plain_loops_result(optimizer, batch, data):
    """One compiled epoch over lax.scan (+ the short last batch, or only it when the batch
    is larger than the data) computes what one compiled step per batch computes."""
    jax_mlp = _backend("jax")
    lr = 0.001 if optimizer == "adam" else 0.05
    runs = {
        scan: jax_mlp.train(
            TrainSpec(
                lr, batch, 2, seed=3, trial=0, optimizer=optimizer, options={"scan_epoch": scan}
            ),
            *data,
        )
        for scan in (False, True)
    }
    assert runs[True].metrics["options"] == {"scan_epoch": True}
    assert runs[False].metrics["options"] == {"scan_epoch": False}
    np.testing.assert_allclose(_losses(runs[True]), _losses(runs[False]), rtol=1e-6)
    for name in MLP.param_names:
        np.testing.assert_allclose(
            runs[True].params[name], runs[False].params[name], rtol=1e-5, atol=1e-7, err_msg=name
        )
    for result in runs.values():
        assert result.metrics["compile_s"] > 0  # timed apart; the first epoch carries it
        assert result.metrics["first_epoch_s"] == result.history[0]["epoch_s"]


def test_compile_option_compiles_the_batch_loss_and_matches_eager(data, monkeypatch):
    """``compile: true`` goes through ``torch.compile`` (here with the ``aot_eager``
    backend: the same graph capture and compiled autograd, without Inductor's C++
    build, which takes 7-35 s here; the benchmark runs Inductor)."""
    torch_mlp = _backend("torch")
    torch = torch_mlp.torch
    real_compile, calls = torch.compile, []

    def compile_for_test(fn, **kwargs):
        calls.append(kwargs)
        return real_compile(fn, backend="aot_eager", **kwargs)

    runs = {}
    for compiled in (False, True):
        with monkeypatch.context() as patch:
            patch.setattr(torch, "compile", compile_for_test)
            spec = TrainSpec(
                0.05, 32, 2, seed=1, trial=0, optimizer="momentum", options={"compile": compiled}
            )
            runs[compiled] = torch_mlp.train(spec, *data)
    assert calls == [{"dynamic": False}]
    assert runs[True].metrics["options"] == {"compile": True}
    assert runs[True].metrics["compile_s"] > 0 == runs[False].metrics["compile_s"]
    np.testing.assert_allclose(_losses(runs[True]), _losses(runs[False]), rtol=1e-6)
    for name in MLP.param_names:
        np.testing.assert_allclose(
            runs[True].params[name], runs[False].params[name], rtol=1e-5, atol=1e-7, err_msg=name
        )


@pytest.mark.parametrize("name", BACKENDS)
def test_independent_start_is_reproducible_and_the_frameworks_own(name, data):
    backend = _backend(name)

    def run(trial):
        return backend.train(
            TrainSpec(0.05, 50, 2, seed=5, trial=trial, start="independent"), *data
        )

    a, b, other = run(0), run(0), run(1)
    assert backend.start(TrainSpec(0.05, 32, 2, seed=5, trial=0, start="independent")) is None
    assert _losses(a) == _losses(b)
    for key in MLP.param_names:
        np.testing.assert_array_equal(a.params[key], b.params[key])
    assert not np.allclose(a.params["W1"], other.params["W1"])
    assert a.metrics["start"] == "independent"
    # the reported loss is the loss of the returned parameters (layouts round-trip)
    loss, accuracy = backend.evaluate(MLP, a.params, data[0], data[1])
    assert loss == pytest.approx(a.history[-1]["train_loss"], rel=1e-5)
    assert accuracy == pytest.approx(a.history[-1]["train_accuracy"])


def test_own_initialisers_are_he_uniform_with_zero_biases():
    jax_mlp, torch_mlp = _backend("jax"), _backend("torch")
    spec = TrainSpec(0.05, 32, 1, seed=0, trial=0, start="independent")
    jax_params = {k: np.asarray(v) for k, v in jax_mlp.own_start(spec)[0].items()}
    model = torch_mlp.build_model(MLP, (784,), generator=torch_mlp.torch.Generator().manual_seed(0))
    torch_params = torch_mlp._params(MLP, (784,), model)
    for params in (jax_params, torch_params):
        for name, n_in in (("W1", 784), ("W2", 64)):
            w, limit = params[name], math.sqrt(6 / n_in)
            assert w.dtype == np.float32 and w.shape == SharedStart(0, 0).params[name].shape
            assert limit >= np.abs(w).max() > 0.95 * limit
            assert abs(w.std() - limit / math.sqrt(3)) < 0.05 * limit
        assert not params["b1"].any() and not params["b2"].any()


@pytest.mark.parametrize("name", BACKENDS)
def test_adam_epsilon_is_keras_epsilon(name, data):
    """One Adam step from the shared start moves each weight by
    lr * g / (|g| + epsilon / sqrt(1 - beta_2)) (Keras: epsilon added to sqrt(v) before
    the bias correction), not lr * g / (|g| + epsilon) (the frameworks' own form). A
    large epsilon makes the two far apart."""
    backend = _backend(name)
    x, y = data[0][:32], data[1][:32]
    settings = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-3}
    spec = TrainSpec(0.01, 32, 1, seed=2, trial=0, optimizer="adam", optimizer_settings=settings)
    start = SharedStart(2, 0)
    after = backend.train(spec, x, y, x, y).params
    _, grads = backend.gradients(MLP, start.params, x, y)
    for key in MLP.param_names:
        g, moved = grads[key], start.params[key] - after[key]
        keras = 0.01 * g / (np.abs(g) + 1e-3 / math.sqrt(1 - 0.999))
        plain = 0.01 * g / (np.abs(g) + 1e-3)
        np.testing.assert_allclose(moved, keras, rtol=1e-4, atol=1e-8, err_msg=key)
        if key == "W1":
            assert np.abs(moved - plain).max() > 1e-3


@pytest.mark.parametrize("name", BACKENDS)
def test_gradients_keep_float64(name, data):
    backend = _backend(name)
    params = {k: v.astype(np.float64) for k, v in SharedStart(0, 0).params.items()}
    x = data[0][:8].astype(np.float64)
    loss, grads = backend.gradients(MLP, params, x, data[1][:8])
    assert isinstance(loss, float)
    assert all(
        grads[k].dtype == np.float64 and grads[k].shape == params[k].shape for k in MLP.param_names
    )
    assert loss == pytest.approx(backend.evaluate(MLP, params, x, data[1][:8])[0], rel=1e-6)


@pytest.mark.parametrize("name", BACKENDS)
def test_divergence_stops_cleanly_and_is_recorded(name, data):
    backend = _backend(name)
    spec = TrainSpec(learning_rate=1e30, batch_size=100, epochs=5, seed=0, trial=0)
    seen = []
    result = backend.train(spec, *data, on_epoch=seen.append)
    m = result.metrics
    assert m["diverged"] is True and m["diverged_epoch"] == 1
    assert m["epochs_completed"] == 1 and len(result.history) == 1 == len(seen)
    assert not math.isfinite(result.history[-1]["train_loss"])
    assert seen[0]["epoch"] == 1 and set(seen[0]) == set(HISTORY_COLUMNS)


def test_thread_settings_are_recorded_in_a_fresh_job():
    """In a fresh interpreter, as a training job: one thread for each framework's pools,
    through its own API (PyTorch) or XLA's flags (JAX), recorded in the metrics."""
    for name in BACKENDS:
        _backend(name)
    code = (
        "import json, numpy as np\n"
        "from mlpstudy.training import run_training\n"
        "from mlpstudy.backends.base import TrainSpec\n"
        "x = np.random.default_rng(0).random((40, 784), dtype=np.float32)\n"
        "y = np.arange(40) % 10\n"
        "out = {}\n"
        "for name in ('jax', 'torch'):\n"
        "    m = run_training(name, TrainSpec(0.1, 16, 1, 0, 0), x, y, x, y).metrics\n"
        "    out[name] = [m['thread_settings'], m['import_time_method']]\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["jax"] == [{"xla_cpu_multi_thread_eigen": 0}, "in-process"]
    assert out["torch"] == [{"torch_intra_op": 1, "torch_inter_op": 1}, "in-process"]


def test_jax_set_threads_adds_xla_flags_only_for_one_thread(monkeypatch):
    jax_mlp = _backend("jax")
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    assert jax_mlp.set_threads(1) == {"xla_cpu_multi_thread_eigen": 0}
    flags = os.environ["XLA_FLAGS"]
    assert flags.startswith("--xla_dump_to=/tmp/x ") and flags.count("multi_thread") == 1
    assert jax_mlp.set_threads(1) == {"xla_cpu_multi_thread_eigen": 0}
    assert os.environ["XLA_FLAGS"] == flags  # not added twice
    monkeypatch.setenv("XLA_FLAGS", "")
    assert jax_mlp.set_threads(2) == {"xla_cpu_multi_thread_eigen": 1}
