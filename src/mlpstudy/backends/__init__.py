"""The training backends: one registry entry each, every fact about a backend in it.

A backend is one module implementing the ``base.Backend`` protocol (``set_threads``,
``start``, ``gradients``, ``evaluate``, ``train``, with the same signatures everywhere)
plus one ``BackendInfo`` in ``REGISTRY`` below. Everything else derives from the entry:

- the config schema's ``backends`` enum and each backend's option block
  (``options_schema()``; checked against the schema by a test),
- the framework modules whose import a job times (``framework_modules``),
- the library versions every run records (``recorded_distributions``, read by
  ``mlpstudy.machine``),
- each backend's label, colour, line style and marker in the figures (``BackendInfo``),
- the resources a training job asks the scheduler for (``BackendInfo.measured``).

A NumPy job never imports TensorFlow (or any other framework): nothing here imports a
backend module until ``get_backend`` is called.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Backend


@dataclass(frozen=True)
class Measured:
    """What one training job needs, measured on the full default grid on the real MNIST
    (2026-11-25, AMD EPYC, one thread per job; ``benchmarks/bench_workflow.py report``
    prints these from any run's table): peak RSS of the whole job in MB (Snakemake's
    benchmark file), the slowest seconds per epoch (batch 32), and job start-up +
    teardown in seconds (interpreter, framework import, data loading)."""

    peak_mb: int
    epoch_s: float
    startup_s: float


@dataclass(frozen=True)
class BackendInfo:
    """Everything the workflow knows about one backend."""

    #: The registry key: config ``backends`` value, ``{backend}`` wildcard, table ``backend``.
    name: str
    #: The module implementing ``base.Backend``.
    module: str
    #: The framework's modules, in import order: what ``import_time_s`` times.
    framework_modules: tuple[str, ...]
    #: Versions every run records: metrics key -> distributions, the first installed wins.
    distributions: dict[str, tuple[str, ...]]
    #: Figures: display name, colour (Okabe-Ito), line style, marker.
    label: str
    color: str
    linestyle: str
    marker: str
    #: Resources of one job (``Measured``), for the scheduler.
    measured: Measured
    #: The backend's options: name -> JSON-schema fragment, each with its ``default``.
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The values of the ``precision`` axis it runs (``base.PRECISIONS``), with why not
    #: for the others: precision -> reason (the config check's message).
    cannot_run: dict[str, str] = field(default_factory=dict)

    def default_options(self) -> dict[str, Any]:
        return {key: schema["default"] for key, schema in self.options.items()}

    def resolve_options(self, given: dict[str, Any]) -> dict[str, Any]:
        """``given`` over the defaults; keys this backend does not know are ignored."""
        return {**self.default_options(), **{k: v for k, v in given.items() if k in self.options}}

    def options_schema(self) -> dict[str, Any]:
        """The JSON-schema block of this backend's options in the config."""
        return {
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {key: dict(schema) for key, schema in self.options.items()},
        }


_OKABE_ITO = {
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "orange": "#E69F00",
    "bluish_green": "#009E73",
    "reddish_purple": "#CC79A7",
    "sky_blue": "#56B4E9",
    "black": "#000000",
}

#: Why NumPy runs no bfloat16 (docs/backends.md, "Precision").
_ENTRIES = (
    BackendInfo(
        name="numpy",
        module="mlpstudy.backends.numpy_mlp",
        framework_modules=("numpy",),
        distributions={"numpy": ("numpy",)},
        label="NumPy",
        color=_OKABE_ITO["blue"],
        linestyle="-",
        marker="o",
        measured=Measured(peak_mb=404, epoch_s=0.72, startup_s=2.4),
    ),
    BackendInfo(
        name="tensorflow",
        module="mlpstudy.backends.tensorflow_mlp",
        framework_modules=("tensorflow", "keras"),
        distributions={"tensorflow": ("tensorflow-cpu", "tensorflow"), "keras": ("keras",)},
        label="TensorFlow/Keras",
        color=_OKABE_ITO["vermillion"],
        linestyle="--",
        marker="s",
        measured=Measured(peak_mb=1533, epoch_s=4.76, startup_s=10.0),
        options={
            "jit_compile": {
                "description": "Keras Model.compile(jit_compile=...); Keras' default is auto.",
                "enum": [True, False, "auto"],
                "default": "auto",
            },
            "steps_per_execution": {
                "description": "Keras Model.compile(steps_per_execution=...); Keras' default is 1.",
                "type": "integer",
                "minimum": 1,
                "default": 1,
            },
            "deterministic": {
                "description": (
                    "tf.config.experimental.enable_op_determinism(): identical histories for "
                    "the same seed. Keras then turns XLA off, so jit_compile=true needs false "
                    "here."
                ),
                "type": "boolean",
                "default": True,
            },
        },
    ),
    # jax and torch: ``measured`` from single jobs (2 epochs, batch 32, lr 0.1, real MNIST,
    # one thread, 2026-11-25), not the full grid: the last one each, at load ~2 on the
    # 2-core machine (loop wall = its CPU time); peak RSS (/usr/bin/time) the largest of
    # four; startup = job wall - training time; epoch = the second epoch (jax: plain loop).
    BackendInfo(
        name="jax",
        module="mlpstudy.backends.jax_mlp",
        framework_modules=("jax", "optax"),
        distributions={"jax": ("jax",), "jaxlib": ("jaxlib",), "optax": ("optax",)},
        label="JAX",
        color=_OKABE_ITO["bluish_green"],
        linestyle="-.",
        marker="^",
        measured=Measured(peak_mb=737, epoch_s=0.61, startup_s=2.1),
        options={
            "scan_epoch": {
                "description": (
                    "One jax.jit-compiled epoch over jax.lax.scan (one Python dispatch per "
                    "epoch) instead of one compiled step per mini-batch."
                ),
                "type": "boolean",
                "default": False,
            },
        },
    ),
    BackendInfo(
        name="torch",
        module="mlpstudy.backends.torch_mlp",
        # torch.optim's first optimizer imports torch._dynamo (~2 s here): part of the
        # framework's import for a training job, so timed with it.
        framework_modules=("torch", "torch._dynamo"),
        distributions={"torch": ("torch",)},
        label="PyTorch",
        color=_OKABE_ITO["orange"],
        linestyle=":",
        marker="D",
        measured=Measured(peak_mb=544, epoch_s=0.84, startup_s=3.3),
        options={
            "compile": {
                "description": (
                    "torch.compile of the batch loss (model + criterion; Inductor, needs a C++ "
                    "compiler); the first epoch carries the compilation."
                ),
                "type": "boolean",
                "default": False,
            },
        },
    ),
)

#: name -> entry, in the order of the config's default ``backends``.
REGISTRY: dict[str, BackendInfo] = {entry.name: entry for entry in _ENTRIES}
#: The backend names, as in the config schema's ``backends`` enum.
BACKENDS: tuple[str, ...] = tuple(REGISTRY)


def info(name: str) -> BackendInfo:
    """The registry entry of backend ``name``; a ValueError lists the known ones."""
    if name not in REGISTRY:
        raise ValueError(f"unknown backend {name!r}; known backends: {', '.join(BACKENDS)}")
    return REGISTRY[name]


def framework_modules(name: str) -> tuple[str, ...]:
    """The modules of the framework behind backend ``name`` (what its import costs)."""
    return info(name).framework_modules


def get_backend(name: str) -> Backend:
    """The backend module called ``name``, imported now if it was not yet."""
    return importlib.import_module(info(name).module)


def options_schema() -> dict[str, dict[str, Any]]:
    """backend -> the JSON-schema block of its options (defaults included), for every
    backend that has options: the config's per-backend blocks."""
    return {name: entry.options_schema() for name, entry in REGISTRY.items() if entry.options}


def measured() -> dict[str, dict[str, float]]:
    """backend -> {peak_mb, epoch_s, startup_s} of one training job."""
    return {name: vars(entry.measured).copy() for name, entry in REGISTRY.items()}


def recorded_distributions() -> dict[str, tuple[str, ...]]:
    """metrics key -> distributions (first installed wins): the versions every run
    records, whichever backend it runs."""
    out: dict[str, tuple[str, ...]] = {}
    for entry in REGISTRY.values():
        out.update(entry.distributions)
    return out
