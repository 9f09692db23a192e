"""The config schema: each invalid value is rejected naming its field; CLI strings accepted."""

from pathlib import Path

import pytest
import yaml

from mlpstudy import config as cfg

REPO = Path(__file__).resolve().parents[1]
SCHEMA = cfg.load_schema(REPO / "workflow/schemas/config.schema.yaml")


def default_config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_default_config_is_valid_and_matches_the_contract():
    config = cfg.validate(default_config(), SCHEMA)
    assert config["learning_rates"] == [0.001, 0.003, 0.01, 0.03, 0.1]
    assert config["batch_sizes"] == [32, 64, 128, 256, 512]
    assert (config["trials"], config["epochs"], config["seed"]) == (3, 10, 0)
    assert config["backends"] == ["numpy", "tensorflow"] and config["shared_start"] is True
    assert len(config["mnist_mirrors"]) >= 2
    assert all(m.startswith("https://") for m in config["mnist_mirrors"])


@pytest.mark.parametrize(
    "key, value, field, fragment",
    [
        ("backends", ["numpy", "jax"], "backends[1]", "'jax' is not one of"),
        ("learning_rates", [0.1, 0], "learning_rates[1]", "less than or equal to the minimum"),
        ("learning_rates", [-0.1], "learning_rates[0]", "less than or equal to the minimum"),
        ("batch_sizes", [0], "batch_sizes[0]", "less than the minimum of 1"),
        ("trials", 0, "trials", "less than the minimum of 1"),
        ("epochs", 0, "epochs", "less than the minimum of 1"),
        ("learning_rates", [], "learning_rates", "must not be empty"),
        ("batch_sizes", [], "batch_sizes", "must not be empty"),
        ("backends", [], "backends", "must not be empty"),
        ("mnist_mirrors", [], "mnist_mirrors", "must not be empty"),
        ("batch_sizes", [32, 32], "batch_sizes", "duplicate"),
        ("learning_rates", [0.1, 0.1], "learning_rates", "duplicate"),
        ("backends", ["numpy", "numpy"], "backends", "duplicate"),
        ("batch_sizes", [32.5], "batch_sizes[0]", "not of type 'integer'"),
        ("shared_start", "maybe", "shared_start", "not of type 'boolean'"),
        ("mnist_md5", {"train-images-idx3-ubyte.gz": "xyz"}, "mnist_md5", "required"),
    ],
)
def test_invalid_values_name_the_field_and_value(key, value, field, fragment):
    config = default_config()
    config[key] = value
    with pytest.raises(cfg.ConfigError) as err:
        cfg.validate(config, SCHEMA)
    line = next(ln for ln in str(err.value).splitlines() if f"'{field}'" in ln)
    assert fragment in line


def test_unknown_keys_are_named():
    config = default_config()
    config["epoch"] = 3
    config["tensorflow"] = {"jit": True}
    with pytest.raises(cfg.ConfigError) as err:
        cfg.validate(config, SCHEMA)
    assert "unknown key(s) 'epoch'" in str(err.value)
    assert "'tensorflow': unknown key(s) 'jit'" in str(err.value)


def test_cli_style_strings_are_converted_then_validated():
    config = default_config()
    # what `snakemake --config 'learning_rates=[0.1,0.01]' ...` hands over
    config.update(
        learning_rates=["0.1", "0.01"],
        batch_sizes=["32", "128"],
        trials="2",
        mnist_mirrors=["../shared/data/mnist"],
        shared_start="false",
        tensorflow={"jit_compile": "false", "steps_per_execution": "4"},
    )
    config = cfg.validate(config, SCHEMA)
    assert config["learning_rates"] == [0.1, 0.01]
    assert config["batch_sizes"] == [32, 128] and config["trials"] == 2
    assert config["shared_start"] is False
    assert config["tensorflow"] == {
        "jit_compile": False, "steps_per_execution": 4, "deterministic": True}


def test_cli_strings_that_are_still_invalid_are_rejected():
    config = default_config()
    config["learning_rates"] = ["0.1", "fast"]
    with pytest.raises(cfg.ConfigError, match=r"'learning_rates\[1\]': 'fast'"):
        cfg.validate(config, SCHEMA)


def test_defaults_are_filled():
    config = cfg.validate({k: v for k, v in default_config().items() if k != "tensorflow"}, SCHEMA)
    assert config["tensorflow"] == {
        "jit_compile": "auto", "steps_per_execution": 1, "deterministic": True}
    assert config["mnist_md5"]["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"


@pytest.mark.parametrize(
    "value, text",
    [(0.001, "0.001"), (0.003, "0.003"), (1e-5, "0.00001"), (0.1, "0.1"), (1.0, "1"), (512, "512")],
)
def test_wildcard_strings_round_trip_exactly(value, text):
    assert cfg.fmt(value) == text
    assert type(value)(text) == value if isinstance(value, int) else float(text) == value


def test_grid_is_the_full_product():
    config = cfg.validate(default_config(), SCHEMA)
    runs = cfg.grid(config)
    assert len(runs) == 2 * 5 * 5 * 3
    assert runs[0] == {"backend": "numpy", "lr": "0.001", "batch": "32", "trial": "0"}
    assert len({tuple(r.values()) for r in runs}) == len(runs)
    assert {r["backend"] for r in cfg.grid(config, ["tensorflow"])} == {"tensorflow"}
