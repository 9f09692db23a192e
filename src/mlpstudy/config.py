"""The workflow's configuration: complete the schema, coerce command-line strings, validate.

``load_schema`` reads ``workflow/schemas/config.schema.yaml`` and fills in what the code
defines once: the dataset names (``mlpstudy.datasets.CATALOG``), the regularisations and
their settings (``mlpstudy.regularization.SETTINGS``), the optimizers and their settings
(``mlpstudy.backends.optimizers.SETTINGS``), the backends and each one's options block
(``mlpstudy.backends.REGISTRY``).

``snakemake --config 'learning_rates=[0.1,0.01]'`` hands list items over as strings, so
values are first converted according to the types the schema declares, then validated.
Every violation is reported at once, each naming the config field and the bad value;
non-finite numbers (``inf``, ``1e400``, ``nan``) and keys that were replaced by newer
ones (with what replaces them) included. The run grid itself is ``mlpstudy.runs``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import jsonschema
import yaml

#: Keys of earlier versions -> what replaces them.
REPLACED = {
    "mnist_mirrors": "data_mirrors (per dataset, "
    "e.g. data_mirrors={mnist: [../shared/data/mnist]})",
    "mnist_md5": "the dataset catalog (mlpstudy.datasets: every dataset's files and MD5s); "
    "choose datasets with datasets=[...]",
    "shared_start": "starts ([shared], [independent] or both)",
}
#: Backend options of earlier versions (under any backend's block) -> what replaces them.
REPLACED_OPTIONS = {
    "dtype": "precision (a study axis for every backend, e.g. precision=[float32, float64])",
}


class ConfigError(ValueError):
    """Invalid configuration; the message names every bad field and value."""


def load_schema(path: str | Path, config: dict | None = None) -> dict:
    """The config schema at ``path``, completed from the code's registries (and the
    names of ``config``'s ``extra_datasets``)."""
    with open(path) as fh:
        return complete_schema(yaml.safe_load(fh), config)


def complete_schema(schema: dict, config: dict | None = None) -> dict:
    """Fill in the names and blocks the code defines (datasets, nets, precisions,
    regularisations, optimizers, backends)."""
    from mlpstudy import nets, regularization
    from mlpstudy.backends import REGISTRY
    from mlpstudy.backends.base import PRECISIONS
    from mlpstudy.backends.optimizers import SETTINGS
    from mlpstudy.datasets import CATALOG

    extra = (config or {}).get("extra_datasets")
    dataset_names = list(CATALOG) + [
        n for n in (extra if isinstance(extra, dict) else {}) if n not in CATALOG
    ]
    props = schema["properties"]
    props["datasets"]["items"]["enum"] = dataset_names
    props["data_mirrors"]["propertyNames"] = {"enum": dataset_names}
    defined = (config or {}).get("net_definitions")
    props["nets"]["items"]["enum"] = list(nets.CATALOG) + [
        n for n in (defined if isinstance(defined, dict) else {}) if n not in nets.CATALOG
    ]
    props["net_definitions"].update(
        {k: v for k, v in nets.definitions_schema().items() if k != "default"}
    )
    props["precision"]["items"]["enum"] = list(PRECISIONS)
    props["regularization"]["items"]["enum"] = list(regularization.REGULARIZATIONS)
    props["regularization_settings"].update(_settings_blocks(regularization.SETTINGS))
    props["optimizers"]["items"]["enum"] = list(SETTINGS)
    props["optimizer_settings"].update(_settings_blocks(SETTINGS))
    props["backends"]["items"]["enum"] = list(REGISTRY)
    for name, info in REGISTRY.items():
        props[name] = info.options_schema()
    return schema


def _settings_blocks(settings: dict[str, dict]) -> dict:
    """The schema of a ``<kind>_settings`` object from a ``SETTINGS`` registry (name ->
    JSON-schema fragment of its settings): one block per name that has settings, each
    defaulting to ``{}``, no other key."""
    return {
        "additionalProperties": False,
        "properties": {
            name: {**fragment, "default": {}}
            for name, fragment in settings.items()
            if fragment.get("properties")
        },
    }


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
    if isinstance(value, str) and (
        ("array" in types and value.strip().startswith("["))
        or ("object" in types and value.strip().startswith("{"))
    ):
        value = yaml.safe_load(value)
    if isinstance(value, list) and "items" in schema:
        return [coerce(v, schema["items"]) for v in value]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {
            k: coerce(v, props[k])
            if k in props
            else coerce(v, extra)
            if isinstance(extra, dict)
            else v
            for k, v in value.items()
        }
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


def _non_finite(value, path: str = "") -> list[tuple[str, float]]:
    """Every non-finite number in ``value``, with its field name."""
    if isinstance(value, float) and not math.isfinite(value):
        return [(path or "<top level>", value)]
    if isinstance(value, dict):
        return [
            hit for k, v in value.items() for hit in _non_finite(v, f"{path}.{k}" if path else k)
        ]
    if isinstance(value, list):
        return [hit for i, v in enumerate(value) for hit in _non_finite(v, f"{path}[{i}]")]
    return []


def validate(config: dict, schema: dict) -> dict:
    """Coerce and validate ``config`` in place, fill schema defaults; raise ConfigError."""
    replaced = [k for k in REPLACED if k in config]
    for key in replaced:  # reported below; removed so they are not also "unknown"
        config.pop(key)
    replaced_options = _pop_replaced_options(config, schema)
    config.update(coerce(dict(config), schema))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    lines = [f"  config field '{k}': no longer exists; use {REPLACED[k]}" for k in replaced]
    lines += [
        f"  config field '{field}': no longer exists; use {REPLACED_OPTIONS[option]}"
        for field, option in replaced_options
    ]
    lines += [
        f"  config field '{name}': {value!r} is not a finite number"
        for name, value in _non_finite(config)
    ]
    lines += [f"  config field '{_field(e)}': {_message(e)}" for e in errors]
    if lines:
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))
    _fill_defaults(config, schema)
    return config


def _pop_replaced_options(config: dict, schema: dict) -> list[tuple[str, str]]:
    """Remove (and return, as ``(field, option)``) the retired options ``REPLACED_OPTIONS``
    from every backend block of ``config`` that has them (the schema's backend blocks)."""
    from mlpstudy.backends import REGISTRY

    found = []
    for backend in REGISTRY:
        block = config.get(backend)
        if not isinstance(block, dict) or backend not in schema.get("properties", {}):
            continue
        for option in REPLACED_OPTIONS:
            if option in block:
                config[backend] = block = {k: v for k, v in block.items() if k != option}
                found.append((f"{backend}.{option}", option))
    return found


def check_precisions(config: dict) -> None:
    """Every configured backend against every configured precision (after ``validate``):
    a ConfigError names the ``precision`` field, the backend and why it cannot run it
    (``BackendInfo.cannot_run``)."""
    from mlpstudy.backends import REGISTRY

    lines = [
        f"  config field 'precision[{i}]': backend '{backend}' cannot run {precision!r}: "
        f"{REGISTRY[backend].cannot_run[precision]}"
        for i, precision in enumerate(config["precision"])
        for backend in config["backends"]
        if precision in REGISTRY[backend].cannot_run
    ]
    if lines:
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))


def register_extra_datasets(config: dict) -> None:
    """Add the config's ``extra_datasets`` to the dataset catalog (after ``validate``)."""
    from mlpstudy import datasets

    for name, entry in config.get("extra_datasets", {}).items():
        if name in datasets.CATALOG:
            raise ConfigError(
                f"invalid configuration:\n  config field 'extra_datasets.{name}': "
                f"{name!r} is already in the catalog"
            )
        datasets.CATALOG[name] = datasets.Dataset(
            name=name,
            title=name,
            homepage="",
            md5=dict(entry["md5"]),
            mirrors=tuple(entry.get("mirrors", ())),
            classes=tuple(entry.get("classes", [str(i) for i in range(10)])),
        )


def check_nets(config: dict) -> None:
    """Every configured network against every configured dataset's images (after
    ``validate`` and ``register_extra_datasets``): a ConfigError names the network's
    config field, the dataset, the layer's index and the shapes, for every misfit."""
    from mlpstudy import datasets, nets

    definitions = config.get("net_definitions", {})
    try:
        known = nets.networks(definitions)
    except ValueError as error:
        lines = [f"  config field 'net_definitions': {line}" for line in str(error).splitlines()]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None
    lines = []
    for i, name in enumerate(config["nets"]):
        field = f"net_definitions.{name}" if name in definitions else f"nets[{i}]"
        for dataset in config["datasets"]:
            entry = datasets.get(dataset)
            for problem in known[name].problems(entry.image_shape, entry.n_classes):
                lines.append(f"  config field '{field}' (dataset '{dataset}'): {problem}")
    if lines:
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))


def _fill_defaults(instance: dict, schema: dict) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])  # never fill into the schema
        if isinstance(instance.get(key), dict) and "properties" in sub:
            _fill_defaults(instance[key], sub)
