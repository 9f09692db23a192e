"""The optimizers of the study's axes, their settings and defaults, defined once.

``SETTINGS`` is the JSON-schema fragment of each optimizer's settings, defaults included;
the config schema's ``optimizer_settings`` is checked against it, ``TrainSpec`` validates
with it (without importing a schema library: a NumPy job stays light) and every backend
reads the resolved numbers from ``TrainSpec.optimizer_settings``. ``OPTIMIZERS`` is the
same as plain defaults, ``{name: {setting: default}}``.

The numbers mean what Keras means by them (``keras.optimizers.SGD``/``Adam``); see
docs/backends.md for how each framework's formulas map onto them, in particular
where Adam's ``epsilon`` is added.

Every real-valued setting is used as the float32 number nearest to it (``resolve``), by
every backend. Keras computes with a float32 model's hyperparameters in float32, but not
all in the same way: its Adam raises ``float32(beta_2)`` to the power t for the bias
correction (0.999 is stored as 0.99900001287) while its second-moment update takes
``1 - beta_2`` in Python's float64, so with ``beta_2 = 0.999`` the two disagree by
1.3e-5 relative at t = 1 and Keras' step is ~6e-6 relatively shorter than the formula
for the first thousand steps. That alone put Keras' Adam trajectories on another path
than the other backends' on real MNIST (docs/backends.md, "Why TensorFlow's Adam left
the others"). With a float32-exact beta every rounding in every framework is the same
number, and the formula is the same one everywhere.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_UNIT = {"type": "number", "minimum": 0, "exclusiveMaximum": 1}

#: name -> JSON-schema fragment of its settings (an object), each setting with its default.
SETTINGS: dict[str, dict[str, Any]] = {
    "sgd": {"type": "object", "additionalProperties": False, "properties": {}},
    "momentum": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "momentum": {**_UNIT, "default": 0.9, "description": "decay of the velocity"},
            "nesterov": {"type": "boolean", "default": False},
        },
    },
    "adam": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "beta_1": {**_UNIT, "default": 0.9, "description": "decay of the first moment"},
            "beta_2": {**_UNIT, "default": 0.999, "description": "decay of the second moment"},
            "epsilon": {
                "type": "number",
                "exclusiveMinimum": 0,
                "default": 1e-7,
                "description": "added to sqrt(v) before bias correction (Keras' convention)",
            },
        },
    },
}

#: name -> {setting: default}: the optimizers of the axes and their default settings.
OPTIMIZERS: dict[str, dict[str, Any]] = {
    name: {key: prop["default"] for key, prop in schema["properties"].items()}
    for name, schema in SETTINGS.items()
}


def resolve(optimizer: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """``settings`` over the optimizer's defaults, checked (a ValueError names what is
    wrong), every real number as the float32 number nearest to it: the numbers every
    backend computes with (``as_float32``; idempotent)."""
    if optimizer not in SETTINGS:
        raise ValueError(f"optimizer must be one of {', '.join(SETTINGS)}, got {optimizer!r}")
    return resolve_settings(
        SETTINGS[optimizer]["properties"],
        settings,
        f"optimizer_settings for {optimizer!r}",
        lambda key: f"optimizer_settings.{key} for {optimizer!r}",
    )


def resolve_settings(properties: dict, settings, where: str, field) -> dict[str, Any]:
    """``settings`` over the defaults of ``properties`` (a settings schema's), checked
    (a ValueError names ``where`` for an unknown setting, ``field(key)`` for a bad value),
    every real number as the float32 number nearest to it. Shared by the optimizers' and
    the regularisations' settings."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(properties))
    if unknown:
        known = ", ".join(properties) or "none"
        raise ValueError(f"{where}: unknown setting(s) {', '.join(unknown)} (known: {known})")
    for key, value in settings.items():
        problem = check_setting(value, properties[key])
        if problem:
            raise ValueError(f"{field(key)} {problem}, got {value!r}")
    resolved = {**{k: p["default"] for k, p in properties.items()}, **settings}
    return {
        key: as_float32(value) if properties[key]["type"] == "number" else value
        for key, value in resolved.items()
    }


def as_float32(value: float) -> float:
    """The float32 number nearest to ``value``, as a Python float (``0.999`` ->
    ``0.9990000128746033``): what a framework's float32 arithmetic takes for ``value``."""
    return float(np.float32(value))


def check_setting(value: Any, schema: dict[str, Any]) -> str | None:
    """What is wrong with ``value`` under ``schema`` (the subset of JSON schema used above)."""
    if schema["type"] == "boolean":
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "must be a finite number"
    if "minimum" in schema and value < schema["minimum"]:
        return f"must be >= {schema['minimum']}"
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        return f"must be > {schema['exclusiveMinimum']}"
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        return f"must be < {schema['exclusiveMaximum']}"
    return None
