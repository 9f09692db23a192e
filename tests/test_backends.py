"""The backend registry, the shared start, the spec and the thread environment."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlpstudy.backends import BACKENDS, MODULES, framework_modules, get_backend
from mlpstudy.backends.base import (
    HISTORY_COLUMNS,
    PARAM_NAMES,
    SharedStart,
    TrainSpec,
    is_diverged,
)
from mlpstudy.training import thread_env

ROOT = Path(__file__).resolve().parents[1]


def test_schema_enum_is_the_registry():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    assert tuple(schema["properties"]["backends"]["items"]["enum"]) == BACKENDS


def test_unknown_backend_names_itself_and_the_known_ones():
    with pytest.raises(ValueError, match=r"'jax'.*numpy, tensorflow"):
        get_backend("jax")
    with pytest.raises(ValueError, match="'torch'"):
        framework_modules("torch")


def test_backend_modules_mirror_each_other():
    """Same public functions, same order: only the implementation differs."""

    def public_functions(module: str) -> list[str]:
        path = ROOT / "src" / (module.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text())
        return [n.name for n in tree.body if isinstance(n, ast.FunctionDef)
                and not n.name.startswith("_")]

    functions = {name: public_functions(module) for name, module in MODULES.items()}
    shared = ["set_threads", "start", "gradients", "evaluate", "train"]
    for name, names in functions.items():
        assert [f for f in names if f in shared] == shared, name


def test_a_numpy_run_never_imports_tensorflow():
    code = (
        "import sys, numpy as np\n"
        "from mlpstudy.training import run_training\n"
        "from mlpstudy.backends.base import TrainSpec\n"
        "x = np.random.default_rng(0).random((50, 784), dtype=np.float32)\n"
        "y = np.arange(50) % 10\n"
        "r = run_training('numpy', TrainSpec(0.1, 16, 1, 0, 0), x, y, x, y)\n"
        "assert r.metrics['epochs_completed'] == 1\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_shared_start_is_he_uniform_and_reproducible():
    a, b = SharedStart(3, 1), SharedStart(3, 1)
    assert list(a.params) == list(PARAM_NAMES)
    assert a.params["W1"].shape == (784, 64) and a.params["W2"].shape == (64, 10)
    for name, n_in in (("W1", 784), ("W2", 64)):
        w = a.params[name]
        assert w.dtype == np.float32
        limit = np.sqrt(6 / n_in)
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
        assert abs(w.std() - limit / np.sqrt(3)) < 0.05 * limit  # variance of U(-l, l)
        np.testing.assert_array_equal(w, b.params[name])
    assert not a.params["b1"].any() and not a.params["b2"].any()
    first, second = a.permutation(100), a.permutation(100)
    assert sorted(first) == list(range(100)) and not np.array_equal(first, second)
    np.testing.assert_array_equal(first, b.permutation(100))


def test_start_depends_on_seed_trial_and_stream():
    base = SharedStart(0, 0).params["W1"]
    for other in (SharedStart(0, 1), SharedStart(1, 0), SharedStart(0, 0, stream="numpy")):
        assert not np.array_equal(base, other.params["W1"])


@pytest.mark.parametrize(
    "field, value",
    [("learning_rate", 0.0), ("learning_rate", float("nan")), ("batch_size", 0),
     ("epochs", 1.5), ("threads", 0), ("seed", -1), ("trial", -2)],
)
def test_spec_rejects_bad_values_by_name(field, value):
    fields = dict(learning_rate=0.1, batch_size=32, epochs=1, seed=0, trial=0)
    fields[field] = value
    with pytest.raises(ValueError, match=field):
        TrainSpec(**fields)


def test_divergence_rule():
    assert is_diverged(float("nan")) and is_diverged(float("inf"))
    assert not is_diverged(1e30) and not is_diverged(0.0)


def test_history_columns():
    assert HISTORY_COLUMNS == ("epoch", "train_loss", "train_accuracy", "test_accuracy", "epoch_s")


def test_thread_env_single_thread_also_tells_xla():
    env = thread_env(1, {"XLA_FLAGS": "--xla_dump_to=/tmp/x"})
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        assert env[var] == "1"
    assert env["XLA_FLAGS"].startswith("--xla_dump_to=/tmp/x ")
    assert "--xla_cpu_multi_thread_eigen=false" in env["XLA_FLAGS"]
    assert thread_env(1, env)["XLA_FLAGS"] == env["XLA_FLAGS"]  # not appended twice
    four = thread_env(4, {})
    assert four["TF_NUM_INTRAOP_THREADS"] == "4" and "XLA_FLAGS" not in four
