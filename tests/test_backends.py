"""The backend registry and contract, the shared start, the spec and the thread environment."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlpstudy import backends, nets
from mlpstudy.backends import (
    BACKENDS,
    REGISTRY,
    base,
    framework_modules,
    get_backend,
    info,
    loop,
    options_schema,
)
from mlpstudy.backends.base import (
    HISTORY_COLUMNS,
    MLP,
    PRECISIONS,
    Backend,
    SharedStart,
    TrainSpec,
    is_diverged,
)
from mlpstudy.backends.optimizers import OPTIMIZERS
from mlpstudy.training import thread_env

PROTOCOL = [
    name for name, f in vars(Backend).items() if inspect.isfunction(f) and not name.startswith("_")
]


def _signature(function, namespace=None):
    """(parameters as (name, kind, default, annotation), return annotation), with the
    annotations evaluated, so ``Params`` and ``dict[str, np.ndarray]`` compare equal."""
    sig = inspect.signature(function, globals=namespace, eval_str=True)
    params = [
        (p.name, p.kind, p.default, p.annotation)
        for p in sig.parameters.values()
        if p.name != "self"
    ]
    return params, sig.return_annotation


def test_protocol_is_the_five_functions():
    assert PROTOCOL == ["set_threads", "start", "gradients", "evaluate", "train"]


@pytest.mark.parametrize("name", BACKENDS)
def test_each_backend_module_implements_the_protocol_exactly(name):
    """Same names, parameter kinds, defaults and types as ``base.Backend``: only the
    implementation differs between backends."""
    pytest.importorskip(info(name).framework_modules[0])
    module = get_backend(name)
    for function in PROTOCOL:
        assert callable(getattr(module, function, None)), (name, function)
        expected = _signature(getattr(Backend, function))
        assert _signature(getattr(module, function)) == expected, (name, function)


def imported_modules(module) -> set[str]:
    """Every module ``module``'s source imports, TYPE_CHECKING blocks and function bodies
    included, relative imports resolved (``from . import x`` names both ``pkg`` and
    ``pkg.x``)."""
    package = module.__name__.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base_name = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
            name = ".".join(filter(None, [base_name, node.module]))
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def test_the_contract_does_not_know_the_loop():
    """base defines what the loop and the backends use; it imports neither (the
    dependency goes one way: loop -> base), and the loop imports no backend."""
    assert "mlpstudy.backends.base" in imported_modules(loop)
    ours = {m for m in imported_modules(base) if m.startswith("mlpstudy.backends")}
    assert ours <= {"mlpstudy.backends.optimizers", "mlpstudy.backends.optimizers.resolve"}
    assert not {entry.module for entry in REGISTRY.values()} & imported_modules(loop)


def test_registry_entries_are_complete_and_distinct():
    assert BACKENDS[:2] == ("numpy", "tensorflow")
    for name, entry in REGISTRY.items():
        assert entry.name == name and entry.module.startswith("mlpstudy.backends.")
        assert entry.framework_modules and entry.distributions
        assert re.fullmatch(r"#[0-9A-F]{6}", entry.color), name
        assert entry.label and entry.marker and entry.linestyle
        assert entry.measured.peak_mb > 0 and entry.measured.epoch_s > 0
        with pytest.raises(dataclasses.FrozenInstanceError):
            entry.name = "other"
        for option, schema in entry.options.items():
            assert "default" in schema and "description" in schema, (name, option)
    for field in ("color", "label", "marker"):
        values = [getattr(e, field) for e in REGISTRY.values()]
        assert len(set(values)) == len(values), field


def test_figure_style_and_resources_of_the_study_backends():
    """The values that lived in figures/style.py and common.smk's MEASURED."""
    numpy, tensorflow = REGISTRY["numpy"], REGISTRY["tensorflow"]
    assert (numpy.label, numpy.color, numpy.linestyle, numpy.marker) == (
        "NumPy",
        "#0072B2",
        "-",
        "o",
    )
    assert (tensorflow.label, tensorflow.color, tensorflow.linestyle, tensorflow.marker) == (
        "TensorFlow/Keras",
        "#D55E00",
        "--",
        "s",
    )
    assert backends.measured()["numpy"] == {"peak_mb": 404, "epoch_s": 0.72, "startup_s": 2.4}
    assert backends.measured()["tensorflow"]["peak_mb"] == 1533
    versions = backends.recorded_distributions()
    assert versions["tensorflow"] == ("tensorflow-cpu", "tensorflow") and "keras" in versions


def test_options_schema_has_the_defaults_the_backends_use():
    schemas = options_schema()
    tf_block = schemas["tensorflow"]
    assert tf_block["additionalProperties"] is False and tf_block["default"] == {}
    assert {k: v["default"] for k, v in tf_block["properties"].items()} == {
        "jit_compile": "auto",
        "steps_per_execution": 1,
        "deterministic": True,
    }
    assert info("jax").resolve_options({"scan_epoch": True, "jit_compile": True}) == {
        "scan_epoch": True
    }  # unknown keys ignored
    for name, block in schemas.items():
        assert info(name).default_options() == {
            k: v["default"] for k, v in block["properties"].items()
        }


def test_unknown_backend_names_itself_and_the_known_ones():
    with pytest.raises(ValueError, match=r"'caffe'.*numpy, tensorflow"):
        get_backend("caffe")
    with pytest.raises(ValueError, match="'theano'"):
        framework_modules("theano")


def test_a_numpy_run_never_imports_tensorflow():
    code = (
        "import sys, numpy as np\n"
        "from mlpstudy.training import run_training\n"
        "from mlpstudy.backends.base import TrainSpec\n"
        "x = np.random.default_rng(0).random((50, 784), dtype=np.float32)\n"
        "y = np.arange(50) % 10\n"
        "r = run_training('numpy', TrainSpec(0.1, 16, 1, 0, 0, optimizer='adam'), x, y, x, y)\n"
        "assert r.metrics['epochs_completed'] == 1\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_shared_start_is_he_uniform_and_reproducible():
    a, b = SharedStart(3, 1), SharedStart(3, 1)
    assert list(a.params) == list(MLP.param_names)
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
    "field, value, message",
    [
        ("learning_rate", 0.0, "learning_rate"),
        ("learning_rate", float("nan"), "learning_rate"),
        ("learning_rate", float("inf"), "learning_rate"),
        ("learning_rate", True, "learning_rate"),
        ("batch_size", 0, "batch_size"),
        ("epochs", 1.5, "epochs"),
        ("threads", 0, "threads"),
        ("seed", -1, "seed"),
        ("trial", -2, "trial"),
        ("trial", False, "trial"),
        ("start", "own", "start must be one of shared, independent"),
        ("start", True, "start must be one of"),
        ("optimizer", "rmsprop", "optimizer must be one of sgd, momentum, adam"),
        ("precision", "float8", "precision must be one of float32, float64, bfloat16, float16"),
    ],
)
def test_spec_rejects_bad_values_by_name(field, value, message):
    fields = {"learning_rate": 0.1, "batch_size": 32, "epochs": 1, "seed": 0, "trial": 0}
    fields[field] = value
    with pytest.raises(ValueError, match=message):
        TrainSpec(**fields)


@pytest.mark.parametrize(
    "optimizer, settings, message",
    [
        ("sgd", {"momentum": 0.9}, r"unknown setting\(s\) momentum \(known: none\)"),
        ("momentum", {"beta_1": 0.9}, r"unknown setting\(s\) beta_1 \(known: momentum, nesterov\)"),
        ("momentum", {"momentum": 1.0}, r"optimizer_settings.momentum .* must be < 1, got 1.0"),
        ("momentum", {"momentum": -0.1}, "must be >= 0"),
        ("momentum", {"momentum": "0.9"}, "must be a finite number"),
        ("momentum", {"nesterov": "yes"}, "nesterov .* must be true or false"),
        ("adam", {"epsilon": 0.0}, "epsilon .* must be > 0"),
        ("adam", {"epsilon": float("nan")}, "epsilon .* must be a finite number"),
        ("adam", {"beta_2": True}, "beta_2 .* must be a finite number"),
    ],
)
def test_spec_rejects_bad_optimizer_settings_by_name(optimizer, settings, message):
    with pytest.raises(ValueError, match=message):
        TrainSpec(0.1, 32, 1, 0, 0, optimizer=optimizer, optimizer_settings=settings)


def test_spec_completes_the_optimizer_settings_with_the_defaults():
    assert OPTIMIZERS == {
        "sgd": {},
        "momentum": {"momentum": 0.9, "nesterov": False},
        "adam": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    }
    given = {"nesterov": True}
    spec = TrainSpec(0.1, 32, 1, 0, 0, optimizer="momentum", optimizer_settings=given)
    # every real number as the float32 number a framework computes with (optimizers.resolve)
    assert spec.optimizer_settings == {"momentum": float(np.float32(0.9)), "nesterov": True}
    assert given == {"nesterov": True}  # the caller's dict is not changed
    assert spec == TrainSpec(
        0.1,
        32,
        1,
        0,
        0,
        optimizer="momentum",
        optimizer_settings={"momentum": 0.9, "nesterov": True},
    )
    assert (spec.start, spec.shared, TrainSpec(0.1, 1, 1, 0, 0, start="independent").shared) == (
        "shared",
        True,
        False,
    )
    fields = base.spec_fields(spec)
    assert fields["optimizer"] == "momentum" and fields["start"] == "shared"
    assert fields["optimizer_settings"] == {"momentum": float(np.float32(0.9)), "nesterov": True}
    assert "options" not in fields and "shared_start" not in fields


def test_divergence_rule():
    assert is_diverged(float("nan")) and is_diverged(float("inf"))
    assert not is_diverged(1e30) and not is_diverged(0.0)


def test_history_columns():
    assert HISTORY_COLUMNS == (
        "epoch",
        "train_loss",
        "train_accuracy",
        "test_accuracy",
        "epoch_s",
        "train_objective",
    )


def test_thread_env_single_thread_also_tells_xla():
    env = thread_env(1, {"XLA_FLAGS": "--xla_dump_to=/tmp/x"})
    for var in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "TF_NUM_INTRAOP_THREADS",
        "TF_NUM_INTEROP_THREADS",
    ):
        assert env[var] == "1"
    assert env["XLA_FLAGS"].startswith("--xla_dump_to=/tmp/x ")
    assert "--xla_cpu_multi_thread_eigen=false" in env["XLA_FLAGS"]
    assert thread_env(1, env)["XLA_FLAGS"] == env["XLA_FLAGS"]  # not appended twice
    four = thread_env(4, {})
    assert four["TF_NUM_INTRAOP_THREADS"] == "4" and "XLA_FLAGS" not in four


def _string_constants(path):
    """Every string literal of a Python file that is not a docstring."""
    import ast

    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    }


@pytest.mark.parametrize("name", [n for n in REGISTRY if n not in ("numpy", "tensorflow")])
def test_nothing_but_its_module_and_entry_names_a_backend(name):
    """A backend beyond the study's two is one module plus one registry entry: no other
    code or rule dispatches on its name (so adding a fifth needs no edit elsewhere)."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    own = {Path(REGISTRY[name].module.replace(".", "/") + ".py").name, "__init__.py"}
    offenders = [
        str(path.relative_to(repo))
        for path in sorted((repo / "src").rglob("*.py")) + sorted((repo / "workflow").rglob("*.py"))
        if not (path.parent.name == "backends" and path.name in own)
        and name in _string_constants(path)
    ]
    rules = [repo / "Snakefile", *sorted((repo / "workflow/rules").glob("*.smk"))]
    word = re.compile(rf"^[^#]*\b{re.escape(name)}\b", re.MULTILINE)
    offenders += [str(p.relative_to(repo)) for p in rules if word.search(p.read_text())]
    assert offenders == []


@pytest.mark.parametrize(
    "flags, native",
    [("fpu avx512f avx512_bf16 sse", True), ("fpu amx_bf16 amx_tile", True),
     ("fpu avx512f avx2", False)],
)  # fmt: skip
def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    from mlpstudy import machine

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n")
    assert machine.native_bfloat16(str(cpuinfo)) is native
    assert machine.native_bfloat16(str(tmp_path / "absent")) is None
    assert "native_bfloat16" in machine.environment()


def test_each_precision_sets_the_parameters_dtype_and_every_backend_runs_each():
    dtypes = {p: TrainSpec(0.1, 32, 1, 0, 0, precision=p).param_dtype for p in PRECISIONS}
    assert dtypes == {
        "float32": np.float32,
        "float64": np.float64,
        "bfloat16": np.float32,
        "float16": np.float32,
    }
    computes = {p: TrainSpec(0.1, 32, 1, 0, 0, precision=p).compute for p in PRECISIONS}
    assert computes == {"float32": None, "float64": None, "bfloat16": "bfloat16",
                        "float16": "float16"}  # fmt: skip
    assert all(not info(name).cannot_run for name in BACKENDS)


def test_numpys_mixed_precision_rounds_products_operands_and_outputs_to_bfloat16():
    """NumPy's bfloat16 step: every number a layer writes is a bfloat16 number (its low 16
    bits zero), the weights stay float32 and move by float32 steps, and the logits are
    the float32 model's to bfloat16's precision (a few u = 2^-9 relative), not equal."""
    from mlpstudy.backends import numpy_layers

    rng = np.random.default_rng(0)
    net = nets.CATALOG["cnn-small"]
    params = SharedStart(0, 0, net=net).params
    x = rng.random((8, 28, 28, 1), dtype=np.float32)
    mixed = numpy_layers.Model(net, (28, 28, 1), 8, np.float32, "bfloat16")
    logits = mixed.forward(params, x, train=True).copy()
    for op in mixed.ops:
        y = getattr(op, "y", None)
        if y is not None:
            assert not np.any(y.view(np.uint32) & 0xFFFF), type(op).__name__
    plain = numpy_layers.Model(net, (28, 28, 1), 8).forward(params, x).copy()
    rel = np.abs(logits - plain).max() / np.abs(plain).max()
    assert 0 < rel < 12 * 2.0**-9
    mixed.backward(params, x, numpy_layers.one_hot(np.arange(8) % 10, 10, np.float32), 1 / 8)
    for name, grad in mixed.grads.items():
        assert not np.any(grad.view(np.uint32) & 0xFFFF), name  # bfloat16 gradients ...
        assert params[name].dtype == np.float32  # ... for float32 master weights
    assert np.any(params["W1"].view(np.uint32) & 0xFFFF)  # the weights are not rounded


def test_a_keras_bfloat16_run_restores_the_policy_and_floatx():
    """The mixed_bfloat16 policy and float64 floatx are the run's: Keras' global state is
    what it was after the run."""
    pytest.importorskip("tensorflow")
    import keras

    module = get_backend("tensorflow")
    x = np.random.default_rng(0).random((8, 784), dtype=np.float32)
    y = np.arange(8) % 10
    for precision in ("bfloat16", "float64"):
        spec = TrainSpec(0.1, 4, 1, 0, 0, precision=precision)
        result = module.train(spec, x, y, x, y)
        assert result.metrics["precision"] == precision
        assert keras.mixed_precision.global_policy().name == "float32"
        assert keras.config.floatx() == "float32"
