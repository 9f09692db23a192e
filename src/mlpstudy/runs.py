"""A run's identity, defined once: its axes, and everything derived from them.

A run is one point of the sweep: (dataset, net, precision, regularization, optimizer,
start, threads, backend, learning rate, batch size, trial). ``AXES`` lists them in path
order; from it derive

- the run directory (``RUN_DIR``, hive-style ``name=value`` parts) and the study
  directory (``STUDY_DIR``), with Snakemake wildcards named after the axes;
- the wildcard constraints (``wildcard_constraints``);
- the grid of runs a config asks for (``grid``) and its studies (``studies``);
- the table key columns (``KEY_COLUMNS``) and a run's key from its path (``parse``);
- the training spec's fields (``train_spec_kwargs``);
- a study's name for people (``study_label``, from each axis value's ``label``).

A *study* is one (dataset, net, precision, regularization, optimizer, start, threads):
inside it, runs
differ by backend, learning rate, batch size and trial only, which is the shape of the
original study, so its figures, statistics and claims apply per study unchanged.

Every wildcard value is a string formatted by ``fmt`` (shortest exact decimal, never
exponent form), so a path names a run in exactly one way.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpstudy import datasets, nets, regularization
from mlpstudy.backends.optimizers import resolve


def fmt(value: Any) -> str:
    """A grid value as its wildcard string: shortest exact round trip, never exponent form.

    ``fmt(0.001) == '0.001'``, ``fmt(1e-5) == '0.00001'``, ``fmt(128) == '128'``,
    ``fmt('adam') == 'adam'``.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return np.format_float_positional(float(value), unique=True, trim="-")


@dataclass(frozen=True)
class Axis:
    """One axis of a run's identity."""

    #: Wildcard name and path key (``lr`` in ``lr=0.01``).
    name: str
    #: Column in the tables (``learning_rate``).
    column: str
    #: The config key that lists its values (``learning_rates``; ``trials`` is a count).
    config_key: str
    #: Wildcard string -> value.
    parse: Callable[[str], Any]
    #: Regular expression of a valid wildcard value when the config does not list them.
    pattern: str
    #: Whether the study (every axis but backend, lr, batch and trial) includes it.
    study: bool

    def values(self, config: dict) -> list[Any]:
        """The axis' values the config asks for, in config order."""
        if self.config_key == "trials":
            return list(range(config["trials"]))
        return list(config[self.config_key])


_NUMBER = r"[0-9]+(\.[0-9]+)?"
_COUNT = r"[0-9]+"
_NAME = r"[a-z0-9][a-z0-9_-]*"

AXES: tuple[Axis, ...] = (
    Axis("dataset", "dataset", "datasets", str, _NAME, study=True),
    Axis("net", "net", "nets", str, _NAME, study=True),
    Axis("precision", "precision", "precision", str, _NAME, study=True),
    Axis("regularization", "regularization", "regularization", str, _NAME, study=True),
    Axis("optimizer", "optimizer", "optimizers", str, _NAME, study=True),
    Axis("start", "start", "starts", str, _NAME, study=True),
    Axis("threads", "threads", "threads", int, r"[1-9][0-9]*", study=True),
    Axis("backend", "backend", "backends", str, _NAME, study=False),
    Axis("lr", "learning_rate", "learning_rates", float, _NUMBER, study=False),
    Axis("batch", "batch_size", "batch_sizes", int, r"[1-9][0-9]*", study=False),
    Axis("trial", "trial", "trials", int, _COUNT, study=False),
)
BY_NAME: dict[str, Axis] = {axis.name: axis for axis in AXES}
STUDY_AXES: tuple[Axis, ...] = tuple(a for a in AXES if a.study)
#: Table columns that together name a run (study axes first, then the cell's).
KEY_COLUMNS: list[str] = [a.column for a in AXES]
#: Table columns that name a study.
STUDY_COLUMNS: list[str] = [a.column for a in STUDY_AXES]

RUN_DIR = "results/runs/" + "/".join(f"{a.name}={{{a.name}}}" for a in AXES)
STUDY_DIR = "results/studies/" + "/".join(f"{a.name}={{{a.name}}}" for a in STUDY_AXES)


def wildcard_constraints(config: dict) -> dict[str, str]:
    """One regex per axis: the configured values where they are names, else a pattern."""
    constraints = {}
    for axis in AXES:
        if axis.parse is str:
            constraints[axis.name] = "|".join(re.escape(fmt(v)) for v in axis.values(config))
        else:
            constraints[axis.name] = axis.pattern
    return constraints


def grid(config: dict, **fixed: Iterable[Any] | Any) -> list[dict[str, str]]:
    """The wildcards of every run the config asks for, in a stable order.

    ``fixed`` narrows an axis to given values (``backend="numpy"`` or a list), e.g. one
    study and one backend: ``grid(config, **study, backend="numpy")``.
    """
    levels = []
    for axis in AXES:
        values = [fmt(v) for v in axis.values(config)]
        if axis.name in fixed:
            want = fixed[axis.name]
            want = [want] if isinstance(want, (str, int, float)) else list(want)
            values = [v for v in values if v in {fmt(w) for w in want}]
        levels.append(values)
    return [dict(zip(BY_NAME, combo)) for combo in itertools.product(*levels)]


def studies(config: dict) -> list[dict[str, str]]:
    """The wildcards of every study the config asks for."""
    levels = [[fmt(v) for v in axis.values(config)] for axis in STUDY_AXES]
    return [dict(zip((a.name for a in STUDY_AXES), combo)) for combo in itertools.product(*levels)]


def study_of(wildcards: dict[str, Any]) -> dict[str, str]:
    """The study wildcards of a run's (or a study's) wildcards."""
    return {a.name: fmt(wildcards[a.name]) for a in STUDY_AXES}


def run_dir(wildcards: dict[str, Any]) -> str:
    return RUN_DIR.format(**{a.name: fmt(wildcards[a.name]) for a in AXES})


def study_dir(wildcards: dict[str, Any]) -> str:
    return STUDY_DIR.format(**study_of(wildcards))


def label(column: str, value: Any) -> str:
    """An axis value as a study's name says it: ``shared start``, ``2 threads``,
    ``no regularization``, ``decoupled weight decay`` (``regularization.TITLES``); any
    other value as it is."""
    value = fmt(value)
    if column == "start":
        return f"{value} start"
    if column == "threads":
        return f"{value} thread" + ("" if value == "1" else "s")
    if column == "regularization":
        return regularization.TITLES.get(value, value)
    return value


def study_label(wildcards: dict[str, Any]) -> str:
    """A study's name for people, every study axis' ``label`` in order, e.g.
    ``mnist · mlp · float32 · no regularization · sgd · shared start · 1 thread``."""
    s = study_of(wildcards)
    return " · ".join(label(a.column, s[a.name]) for a in STUDY_AXES)


def parse(path: str) -> dict[str, Any]:
    """A run's key (``{column: value}``) from its directory, or any path inside it.

    Raises ValueError naming the path when an axis is missing.
    """
    fields = dict(part.split("=", 1) for part in str(path).split("/") if "=" in part)
    missing = [a.name for a in AXES if a.name not in fields]
    if missing:
        raise ValueError(f"{path}: not a run directory (missing {', '.join(missing)})")
    return {a.column: a.parse(fields[a.name]) for a in AXES}


def key(wildcards: dict[str, Any]) -> dict[str, Any]:
    """A run's key (``{column: value}``) from its wildcards."""
    return {a.column: a.parse(fmt(wildcards[a.name])) for a in AXES}


def settings(
    config: dict, optimizer: str, backend: str, regularization_kind: str = regularization.DEFAULT
) -> dict[str, Any]:
    """What a run takes from the config beyond its identity: epochs, seed, its optimizer's
    settings (as every backend computes with them: defaults filled in, real numbers in
    float32, ``optimizers.resolve``), its backend's options (what aggregation checks
    every run against) and its regularisation's settings (the config's
    ``regularization_settings[<kind>]``, resolved the same way: ``regularization.resolve``).
    """
    given = config.get("optimizer_settings", {}).get(optimizer, {})
    kind_settings = config.get("regularization_settings", {}).get(regularization_kind, {})
    return {
        "epochs": config["epochs"],
        "seed": config["seed"],
        "optimizer_settings": resolve(optimizer, given),
        "options": dict(config.get(backend, {})),
        "regularization_settings": regularization.resolve(regularization_kind, kind_settings),
    }


def net_of(config: dict, name: str) -> nets.Net:
    """The network ``name``: the catalog's or the config's ``net_definitions``."""
    return nets.get(name, config.get("net_definitions"))


def train_spec_kwargs(wildcards: dict[str, Any], config: dict) -> dict[str, Any]:
    """Keyword arguments of ``TrainSpec`` for one run (the dataset is not the spec's, but
    its image shape is: ``input_shape``; the net goes in its config form, so a changed
    definition reruns its runs).

    They are the training rule's ``params``, which Snakemake compares as text: keep the
    key order, or every finished run counts as changed; a new key goes at the end (the
    runs of before it have moved to new paths, ``mlpstudy.migrate``, and have no
    Snakemake metadata to compare).
    """
    k = key(wildcards)
    given = settings(config, k["optimizer"], k["backend"], k["regularization"])
    return {
        "learning_rate": k["learning_rate"],
        "batch_size": k["batch_size"],
        "epochs": given["epochs"],
        "seed": given["seed"],
        "trial": k["trial"],
        "start": k["start"],
        "optimizer": k["optimizer"],
        "optimizer_settings": given["optimizer_settings"],
        "threads": k["threads"],
        "options": given["options"],
        "net": {"name": k["net"], "layers": net_of(config, k["net"]).to_config()},
        "input_shape": list(datasets.get(k["dataset"]).image_shape),
        "precision": k["precision"],
        "regularization": k["regularization"],
        "regularization_settings": given["regularization_settings"],
    }
