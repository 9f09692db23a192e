"""The run identity (mlpstudy.runs): every axis round-trips between path, key and spec."""

import re

import numpy as np
import pytest

from mlpstudy import runs
from mlpstudy.backends.base import TrainSpec

CONFIG = {
    "datasets": ["mnist", "fashion-mnist"],
    "nets": ["mlp", "cnn-small"],
    "precision": ["float32", "bfloat16"],
    "regularization": ["none", "l2"],
    "optimizers": ["sgd", "adam"],
    "starts": ["shared", "independent"],
    "threads": [1, 2],
    "backends": ["numpy", "tensorflow"],
    "learning_rates": [0.001, 0.1],
    "batch_sizes": [32, 512],
    "trials": 3,
    "epochs": 2,
    "seed": 7,
    "optimizer_settings": {"adam": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}},
    "regularization_settings": {"l2": {"lambda": 0.001}, "dropout": {"rate": 0.25}},
    "tensorflow": {"deterministic": True},
}


def test_paths_name_every_axis_in_order():
    assert runs.RUN_DIR == (
        "results/runs/dataset={dataset}/net={net}/precision={precision}/"
        "regularization={regularization}/optimizer={optimizer}/start={start}/"
        "threads={threads}/backend={backend}/lr={lr}/batch={batch}/trial={trial}"
    )
    assert runs.STUDY_DIR == (
        "results/studies/dataset={dataset}/net={net}/precision={precision}/"
        "regularization={regularization}/optimizer={optimizer}/start={start}/"
        "threads={threads}"
    )
    assert runs.KEY_COLUMNS == [
        "dataset",
        "net",
        "precision",
        "regularization",
        "optimizer",
        "start",
        "threads",
        "backend",
        "learning_rate",
        "batch_size",
        "trial",
    ]


def test_grid_is_the_full_product_in_a_stable_order():
    grid = runs.grid(CONFIG)
    assert len(grid) == 2 * 2 * 2 * 2 * 2 * 2 * 2 * 2 * 2 * 2 * 3
    assert grid[0] == {
        "dataset": "mnist",
        "net": "mlp",
        "precision": "float32",
        "regularization": "none",
        "optimizer": "sgd",
        "start": "shared",
        "threads": "1",
        "backend": "numpy",
        "lr": "0.001",
        "batch": "32",
        "trial": "0",
    }
    assert len({tuple(r.values()) for r in grid}) == len(grid)
    assert grid == runs.grid(dict(CONFIG))


def test_grid_narrows_by_fixed_axes():
    one = runs.grid(
        CONFIG,
        dataset="mnist",
        net="cnn-small",
        optimizer="adam",
        start="shared",
        threads=2,
        backend="tensorflow",
    )
    assert len(one) == 2 * 2 * 2 * 2 * 3
    assert {(r["optimizer"], r["threads"], r["backend"]) for r in one} == {
        ("adam", "2", "tensorflow")
    }


def test_studies_are_the_product_of_the_study_axes():
    studies = runs.studies(CONFIG)
    assert len(studies) == 128
    assert studies[0] == {
        "dataset": "mnist",
        "net": "mlp",
        "precision": "float32",
        "regularization": "none",
        "optimizer": "sgd",
        "start": "shared",
        "threads": "1",
    }
    assert runs.study_dir(studies[-1]) == (
        "results/studies/dataset=fashion-mnist/net=cnn-small/precision=bfloat16/"
        "regularization=l2/optimizer=adam/start=independent/threads=2"
    )
    assert (
        runs.study_label(studies[-1])
        == "fashion-mnist · cnn-small · bfloat16 · l2 penalty · adam · independent start · "
        "2 threads"
    )
    assert (
        runs.study_label(studies[0])
        == "mnist · mlp · float32 · no regularization · sgd · shared start · 1 thread"
    )


@pytest.mark.parametrize("index", [0, 1, 77, 383, 767])
def test_path_key_and_spec_round_trip_for_every_axis(index):
    wildcards = runs.grid(CONFIG)[index]
    path = runs.run_dir(wildcards) + "/metrics.json"
    key = runs.parse(path)
    assert key == runs.key(wildcards)
    assert runs.run_dir({a.name: key[a.column] for a in runs.AXES}) == runs.run_dir(wildcards)
    spec = TrainSpec(**runs.train_spec_kwargs(wildcards, CONFIG))
    assert (
        spec.learning_rate,
        spec.batch_size,
        spec.trial,
        spec.start,
        spec.optimizer,
        spec.threads,
        spec.precision,
        spec.regularization,
    ) == (
        key["learning_rate"],
        key["batch_size"],
        key["trial"],
        key["start"],
        key["optimizer"],
        key["threads"],
        key["precision"],
        key["regularization"],
    )
    assert (spec.epochs, spec.seed) == (2, 7)
    assert spec.options == CONFIG.get(key["backend"], {})


def test_spec_carries_the_settings_of_its_own_optimizer_only():
    adam = next(r for r in runs.grid(CONFIG) if r["optimizer"] == "adam")
    sgd = next(r for r in runs.grid(CONFIG) if r["optimizer"] == "sgd")
    # as every backend computes with them: the nearest float32 numbers (optimizers.resolve)
    assert runs.train_spec_kwargs(adam, CONFIG)["optimizer_settings"] == {
        "beta_1": float(np.float32(0.9)),
        "beta_2": float(np.float32(0.999)),
        "epsilon": float(np.float32(1e-7)),
    }
    assert runs.train_spec_kwargs(sgd, CONFIG)["optimizer_settings"] == {}


def test_spec_carries_the_settings_of_its_own_regularization_resolved_keys_appended():
    """The config's ``regularization_settings[<kind>]`` over the kind's defaults, as the
    float32 numbers every backend computes with; the two keys come last in the params
    (Snakemake compares them as text: the keys of before keep their places)."""
    grid = runs.grid(CONFIG, optimizer="sgd")
    l2 = next(r for r in grid if r["regularization"] == "l2")
    none = next(r for r in grid if r["regularization"] == "none")
    kwargs = runs.train_spec_kwargs(l2, CONFIG)
    assert kwargs["regularization"] == "l2"
    assert kwargs["regularization_settings"] == {"lambda": float(np.float32(0.001))}
    assert list(kwargs)[-3:] == ["precision", "regularization", "regularization_settings"]
    spec = TrainSpec(**kwargs)
    assert spec.l2 == kwargs["regularization_settings"]["lambda"] and spec.weight_decay == 0
    assert runs.train_spec_kwargs(none, CONFIG)["regularization_settings"] == {}
    # no settings in the config: the defaults (mlpstudy.regularization.SETTINGS)
    bare = {k: v for k, v in CONFIG.items() if k != "regularization_settings"}
    assert runs.train_spec_kwargs(l2, bare)["regularization_settings"] == {
        "lambda": float(np.float32(5e-4))
    }
    given = runs.settings(CONFIG, "sgd", "numpy", "l2")
    assert given["regularization_settings"] == kwargs["regularization_settings"]


def test_a_path_missing_an_axis_is_named():
    missing = "missing dataset, net, precision, regularization, optimizer, start, threads"
    with pytest.raises(ValueError, match=missing):
        runs.parse("results/runs/backend=numpy/lr=0.1/batch=32/trial=0")


def test_wildcard_constraints_accept_the_grid_and_nothing_else():
    constraints = runs.wildcard_constraints(CONFIG)
    for wildcards in runs.grid(CONFIG)[:50]:
        for name, value in wildcards.items():
            assert re.fullmatch(constraints[name], value), (name, value)
    assert not re.fullmatch(constraints["backend"], "jax")
    assert not re.fullmatch(constraints["dataset"], "kmnist")
    assert not re.fullmatch(constraints["lr"], "1e-03")
    assert not re.fullmatch(constraints["threads"], "0")


@pytest.mark.parametrize(
    "value, text",
    [(0.001, "0.001"), (0.003, "0.003"), (1e-5, "0.00001"), (0.1, "0.1"), (1.0, "1"), (512, "512")],
)
def test_wildcard_strings_round_trip_exactly(value, text):
    assert runs.fmt(value) == text
    assert type(value)(text) == value if isinstance(value, int) else float(text) == value
