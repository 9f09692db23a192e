"""The training backends, by name, imported only when asked for.

Each backend is one module with the same functions in the same order
(``set_threads``, ``start``, ``gradients``, ``evaluate``, ``train``; see ``numpy_mlp``
and ``tensorflow_mlp``), built on the shared names in ``base`` and the timed loop in
``loop``. Adding a backend (JAX, PyTorch) is one new module plus one line below:
its name, its module, and the framework modules whose import ``run_training`` times.

A NumPy job never imports TensorFlow: nothing here imports a backend until
``get_backend`` is called.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: name -> (backend module, framework modules it imports, in import order)
_REGISTRY: dict[str, tuple[str, tuple[str, ...]]] = {
    "numpy": ("mlpstudy.backends.numpy_mlp", ("numpy",)),
    "tensorflow": ("mlpstudy.backends.tensorflow_mlp", ("tensorflow", "keras")),
}

#: The backend names, as in the config schema's ``backends`` enum.
BACKENDS: tuple[str, ...] = tuple(_REGISTRY)
#: name -> module path.
MODULES: dict[str, str] = {name: module for name, (module, _) in _REGISTRY.items()}


def _check(name: str) -> None:
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; known backends: {', '.join(BACKENDS)}")


def framework_modules(name: str) -> tuple[str, ...]:
    """The modules of the framework behind backend ``name`` (what its import costs)."""
    _check(name)
    return _REGISTRY[name][1]


def get_backend(name: str) -> ModuleType:
    """The backend module called ``name``, imported now if it was not yet."""
    _check(name)
    return importlib.import_module(_REGISTRY[name][0])
