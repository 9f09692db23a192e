"""The workflow's configuration: coerce command-line strings, validate, derive the grid.

``snakemake --config 'learning_rates=[0.1,0.01]'`` hands list items over as strings, so
values are first converted according to the types the schema declares, then validated.
Every violation is reported at once, each naming the config field and the bad value.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import jsonschema
import numpy as np
import yaml


class ConfigError(ValueError):
    """Invalid configuration; the message names every bad field and value."""


def load_schema(path: str | Path) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _types(schema: dict) -> set[str]:
    if "type" in schema:
        t = schema["type"]
        return {t} if isinstance(t, str) else set(t)
    if any(isinstance(v, bool) for v in schema.get("enum", ())):
        return {"boolean", "string"}
    return set()


def _coerce_scalar(value, types: set[str]):
    if not isinstance(value, str):
        return value
    text = value.strip()
    lowered = text.lower()
    if "boolean" in types and lowered in ("true", "false"):
        return lowered == "true"
    if "integer" in types:
        try:
            return int(text)
        except ValueError:
            pass
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    return value


def coerce(value, schema: dict):
    """Convert strings in ``value`` to the types ``schema`` declares (recursively)."""
    types = _types(schema)
    if isinstance(value, str) and "array" in types and value.strip().startswith("["):
        value = yaml.safe_load(value)
    if isinstance(value, list) and "items" in schema:
        return [coerce(v, schema["items"]) for v in value]
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        return {k: coerce(v, props[k]) if k in props else v for k, v in value.items()}
    return _coerce_scalar(value, types)


def _field(error: jsonschema.ValidationError) -> str:
    name = ""
    for part in error.absolute_path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "<top level>"


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"unknown key(s) {', '.join(map(repr, unknown))}"
    if error.validator == "uniqueItems":
        return f"{error.instance!r} has duplicate values"
    if error.validator == "minItems" and not error.instance:
        return "must not be empty"
    return error.message


def validate(config: dict, schema: dict) -> dict:
    """Coerce and validate ``config`` in place, fill schema defaults; raise ConfigError."""
    config.update(coerce(dict(config), schema))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"  config field '{_field(e)}': {_message(e)}" for e in errors]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))
    _fill_defaults(config, schema)
    return config


def _fill_defaults(instance: dict, schema: dict) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = sub["default"]
        if isinstance(instance.get(key), dict) and "properties" in sub:
            _fill_defaults(instance[key], sub)


def fmt(value: float | int) -> str:
    """The wildcard string of a grid value: shortest exact round trip, never exponent form.

    ``fmt(0.001) == '0.001'``, ``fmt(1e-5) == '0.00001'``, ``fmt(128) == '128'``.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return np.format_float_positional(float(value), unique=True, trim="-")


def grid(config: dict, backends: list[str] | None = None) -> list[dict[str, str]]:
    """One dict of wildcard strings per training job, in a stable order."""
    return [
        {"backend": b, "lr": fmt(lr), "batch": fmt(bs), "trial": str(t)}
        for b, lr, bs, t in itertools.product(
            backends if backends is not None else config["backends"],
            config["learning_rates"],
            config["batch_sizes"],
            range(config["trials"]),
        )
    ]
