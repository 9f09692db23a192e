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
    assert config["backends"] == ["numpy", "tensorflow"]
    assert config["datasets"] == ["mnist"] and config["data_mirrors"] == {}
    assert config["optimizers"] == ["sgd"] and config["starts"] == ["shared"]
    assert config["threads"] == [1] and config["timing"] == "strict"
    assert config["optimizer_settings"] == {
        "momentum": {"momentum": 0.9, "nesterov": False},
        "adam": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    }
    assert config["regularization"] == ["none"]
    assert config["regularization_settings"] == {
        "l2": {"lambda": 5e-4},
        "decoupled": {"weight_decay": 5e-4},
        "dropout": {"rate": 0.5},
        "batchnorm": {"epsilon": 1e-3, "momentum": 0.99},
    }


@pytest.mark.parametrize(
    "key, value, field, fragment",
    [
        ("backends", ["numpy", "caffe"], "backends[1]", "'caffe' is not one of"),
        ("datasets", ["mnist", "cifar10"], "datasets[1]", "'cifar10' is not one of"),
        ("optimizers", ["rmsprop"], "optimizers[0]", "'rmsprop' is not one of"),
        ("starts", ["random"], "starts[0]", "'random' is not one of"),
        ("threads", [0], "threads[0]", "less than the minimum of 1"),
        ("timing", "fast", "timing", "'fast' is not one of"),
        ("data_mirrors", {"cifar10": ["x"]}, "data_mirrors", "'cifar10' is not one of"),
        ("data_mirrors", {"mnist": "../x"}, "data_mirrors.mnist", "not of type 'array'"),
        (
            "optimizer_settings",
            {"adam": {"beta_1": "high"}},
            "optimizer_settings.adam.beta_1",
            "not of type 'number'",
        ),
        (
            "optimizer_settings",
            {"momentum": {"nesterov": 3}},
            "optimizer_settings.momentum.nesterov",
            "not of type 'boolean'",
        ),
        (
            "optimizer_settings",
            {"momentum": {"momentum": 1.0}},
            "optimizer_settings.momentum.momentum",
            "greater than or equal to the maximum",
        ),
        ("optimizer_settings", {"sgd": {"lr": 1}}, "optimizer_settings", "unknown key(s) 'sgd'"),
        ("learning_rates", [float("inf")], "learning_rates[0]", "not a finite number"),
        ("learning_rates", [float("nan")], "learning_rates[0]", "not a finite number"),
        ("learning_rates", ["1e400"], "learning_rates[0]", "not a finite number"),
        ("learning_rates", ["inf"], "learning_rates[0]", "not a finite number"),
        ("learning_rates", [0.1, 0], "learning_rates[1]", "less than or equal to the minimum"),
        ("learning_rates", [-0.1], "learning_rates[0]", "less than or equal to the minimum"),
        ("batch_sizes", [0], "batch_sizes[0]", "less than the minimum of 1"),
        ("trials", 0, "trials", "less than the minimum of 1"),
        ("epochs", 0, "epochs", "less than the minimum of 1"),
        ("learning_rates", [], "learning_rates", "must not be empty"),
        ("batch_sizes", [], "batch_sizes", "must not be empty"),
        ("backends", [], "backends", "must not be empty"),
        ("datasets", [], "datasets", "must not be empty"),
        ("batch_sizes", [32, 32], "batch_sizes", "duplicate"),
        ("learning_rates", [0.1, 0.1], "learning_rates", "duplicate"),
        ("backends", ["numpy", "numpy"], "backends", "duplicate"),
        ("batch_sizes", [32.5], "batch_sizes[0]", "not of type 'integer'"),
        (
            "tensorflow",
            {"steps_per_execution": 0},
            "tensorflow.steps_per_execution",
            "less than the minimum of 1",
        ),
    ],
)
def test_invalid_values_name_the_field_and_value(key, value, field, fragment):
    config = default_config()
    config[key] = value
    with pytest.raises(cfg.ConfigError) as err:
        cfg.validate(config, SCHEMA)
    line = next(ln for ln in str(err.value).splitlines() if f"'{field}'" in ln)
    assert fragment in line


@pytest.mark.parametrize(
    "key, value, replacement",
    [
        ("mnist_mirrors", ["../shared/data/mnist"], "data_mirrors"),
        ("mnist_md5", {}, "dataset catalog"),
        ("shared_start", False, "starts"),
    ],
)
def test_replaced_keys_say_what_replaces_them(key, value, replacement):
    config = default_config()
    config[key] = value
    with pytest.raises(cfg.ConfigError) as err:
        cfg.validate(config, SCHEMA)
    line = next(ln for ln in str(err.value).splitlines() if f"'{key}'" in ln)
    assert "no longer exists" in line and replacement in line
    assert "unknown key" not in str(err.value)


def test_the_schema_derives_its_names_from_the_code():
    from mlpstudy import datasets, regularization
    from mlpstudy.backends import REGISTRY
    from mlpstudy.backends.optimizers import SETTINGS

    props = SCHEMA["properties"]
    assert props["datasets"]["items"]["enum"] == list(datasets.CATALOG)
    assert props["optimizers"]["items"]["enum"] == list(SETTINGS)
    assert props["backends"]["items"]["enum"] == list(REGISTRY)
    assert props["regularization"]["items"]["enum"] == list(regularization.REGULARIZATIONS)
    blocks = props["regularization_settings"]["properties"]
    assert list(blocks) == [k for k in regularization.REGULARIZATIONS if k != "none"]
    for kind, block in blocks.items():
        assert block["properties"] == regularization.SETTINGS[kind]["properties"]
    for name, info in REGISTRY.items():
        assert props[name] == info.options_schema()


def test_extra_datasets_join_the_catalog_for_this_config():
    config = default_config()
    md5 = {
        name: "0" * 32
        for name in (
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        )
    }
    config.update(datasets=["mnist", "mine"], extra_datasets={"mine": {"md5": md5}})
    schema = cfg.load_schema(REPO / "workflow/schemas/config.schema.yaml", config)
    cfg.validate(config, schema)
    with pytest.raises(cfg.ConfigError, match="'datasets\\[1\\]': 'mine' is not one of"):
        cfg.validate({**default_config(), "datasets": ["mnist", "mine"]}, SCHEMA)


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
        threads="[1,2]",
        data_mirrors="{mnist: [../shared/data/mnist], "
        "fashion-mnist: [../shared/data/fashion-mnist]}",
        starts="[shared, independent]",
        tensorflow={"jit_compile": "false", "steps_per_execution": "4"},
    )
    config = cfg.validate(config, SCHEMA)
    assert config["learning_rates"] == [0.1, 0.01]
    assert config["batch_sizes"] == [32, 128] and config["trials"] == 2
    assert config["threads"] == [1, 2]
    assert config["starts"] == ["shared", "independent"]
    assert config["data_mirrors"] == {
        "mnist": ["../shared/data/mnist"],
        "fashion-mnist": ["../shared/data/fashion-mnist"],
    }
    assert config["tensorflow"] == {
        "jit_compile": False,
        "steps_per_execution": 4,
        "deterministic": True,
    }


def test_cli_strings_that_are_still_invalid_are_rejected():
    config = default_config()
    config["learning_rates"] = ["0.1", "fast"]
    with pytest.raises(cfg.ConfigError, match=r"'learning_rates\[1\]': 'fast'"):
        cfg.validate(config, SCHEMA)


def test_defaults_are_filled():
    given = {
        k: v
        for k, v in default_config().items()
        if k not in ("tensorflow", "optimizer_settings", "threads", "timing")
    }
    config = cfg.validate(given, SCHEMA)
    assert config["tensorflow"] == {
        "jit_compile": "auto",
        "steps_per_execution": 1,
        "deterministic": True,
    }
    assert config["optimizer_settings"]["adam"] == {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
    assert config["threads"] == [1] and config["timing"] == "strict"


def _checked(config: dict) -> dict:
    """``validate`` then the checks the workflow runs after it (nets against datasets)."""
    config = cfg.validate(
        config, cfg.load_schema(REPO / "workflow/schemas/config.schema.yaml", config)
    )
    cfg.register_extra_datasets(config)
    cfg.check_nets(config)
    cfg.check_precisions(config)
    return config


def test_precision_is_an_axis_of_float32_by_default_and_takes_every_precision():
    assert _checked(default_config())["precision"] == ["float32"]
    config = {**default_config(), "backends": ["numpy", "tensorflow", "jax", "torch"]}
    config["precision"] = "[float32, float64, bfloat16, float16]"  # as from the command line
    assert _checked(config)["precision"] == ["float32", "float64", "bfloat16", "float16"]


@pytest.mark.parametrize(
    "precision, backends, fragments",
    [
        (["float8"], ["numpy"], ["config field 'precision[0]'", "'float8' is not one of"]),
        ([], ["numpy"], ["config field 'precision'", "must not be empty"]),
        (["float32", "float32"], ["numpy"], ["config field 'precision'", "duplicate"]),
        (["float32", "bfloat16"], ["numpy", "torch"],
         ["config field 'precision[1]'", "backend 'numpy' cannot run 'bfloat16'",
          "its reason"]),
    ],
)  # fmt: skip
def test_a_precision_that_is_unknown_or_a_backend_cannot_run_is_rejected_naming_the_field(
    precision, backends, fragments, monkeypatch
):
    """Every backend runs every precision today; one that could not (its registry entry's
    ``cannot_run``, here given to numpy) is rejected before any job, with its reason."""
    import dataclasses

    from mlpstudy.backends import REGISTRY

    entry = dataclasses.replace(REGISTRY["numpy"], cannot_run={"bfloat16": "its reason"})
    monkeypatch.setitem(REGISTRY, "numpy", entry)
    with pytest.raises(cfg.ConfigError) as error:
        _checked({**default_config(), "precision": precision, "backends": backends})
    for fragment in fragments:
        assert fragment in str(error.value)
    assert "torch" not in str(error.value)


@pytest.mark.parametrize("backend", ["numpy", "tensorflow", "jax", "torch"])
def test_the_retired_dtype_option_says_precision_replaces_it(backend):
    config = {**default_config(), backend: {"dtype": "float64"}}
    with pytest.raises(cfg.ConfigError) as err:
        cfg.validate(config, SCHEMA)
    line = next(ln for ln in str(err.value).splitlines() if f"'{backend}.dtype'" in ln)
    assert "no longer exists" in line and "precision" in line
    assert "unknown key" not in str(err.value)


def test_regularization_is_an_axis_of_none_by_default_with_every_settings_default():
    from mlpstudy import regularization

    given = {k: v for k, v in default_config().items() if not k.startswith("regularization")}
    config = _checked(given)
    assert config["regularization"] == ["none"]
    assert config["regularization_settings"] == {
        kind: defaults for kind, defaults in regularization.DEFAULTS.items() if defaults
    }
    config = {**default_config(), "regularization": "[none, l2, decoupled, dropout, batchnorm]"}
    config["regularization_settings"] = "{l2: {lambda: 0.01}, dropout: {rate: 0}}"  # CLI text
    config = _checked(config)
    assert config["regularization"] == list(regularization.REGULARIZATIONS)
    assert config["regularization_settings"]["l2"] == {"lambda": 0.01}
    assert config["regularization_settings"]["dropout"] == {"rate": 0}
    assert config["regularization_settings"]["batchnorm"] == {"epsilon": 1e-3, "momentum": 0.99}


@pytest.mark.parametrize(
    "key, value, field, fragment",
    [
        ("regularization", ["elastic"], "regularization[0]", "'elastic' is not one of"),
        ("regularization", [], "regularization", "must not be empty"),
        ("regularization", ["l2", "l2"], "regularization", "duplicate"),
        ("regularization_settings", {"l2": {"lambda": -1e-4}},
         "regularization_settings.l2.lambda", "less than the minimum of 0"),
        ("regularization_settings", {"l2": {"lambda": "strong"}},
         "regularization_settings.l2.lambda", "not of type 'number'"),
        ("regularization_settings", {"decoupled": {"weight_decay": -1}},
         "regularization_settings.decoupled.weight_decay", "less than the minimum of 0"),
        ("regularization_settings", {"dropout": {"rate": 1.0}},
         "regularization_settings.dropout.rate", "greater than or equal to the maximum of 1"),
        ("regularization_settings", {"dropout": {"rate": -0.1}},
         "regularization_settings.dropout.rate", "less than the minimum of 0"),
        ("regularization_settings", {"batchnorm": {"epsilon": 0}},
         "regularization_settings.batchnorm.epsilon", "less than or equal to the minimum of 0"),
        ("regularization_settings", {"batchnorm": {"momentum": 1}},
         "regularization_settings.batchnorm.momentum", "greater than or equal to the maximum"),
        ("regularization_settings", {"l2": {"alpha": 0.1}},
         "regularization_settings.l2", "unknown key(s) 'alpha'"),
        ("regularization_settings", {"elastic": {"l1": 0.1}},
         "regularization_settings", "unknown key(s) 'elastic'"),
        ("regularization_settings", {"none": {}},
         "regularization_settings", "unknown key(s) 'none'"),
        ("regularization_settings", {"l2": {"lambda": float("inf")}},
         "regularization_settings.l2.lambda", "not a finite number"),
    ],
)  # fmt: skip
def test_a_bad_regularization_or_setting_is_rejected_naming_the_field(key, value, field, fragment):
    config = {**default_config(), key: value}
    with pytest.raises(cfg.ConfigError) as err:
        _checked(config)
    line = next(ln for ln in str(err.value).splitlines() if f"config field '{field}'" in ln)
    assert fragment in line


def test_nets_default_to_the_studys_mlp_and_take_the_catalog_and_definitions():
    assert _checked(default_config())["nets"] == ["mlp"]
    mine = [
        {"type": "conv2d", "filters": 4, "kernel": 5, "stride": 2, "padding": "same"},
        {"type": "flatten"},
        {"type": "dense", "units": 10, "activation": "softmax"},
    ]
    config = _checked(
        {**default_config(), "nets": ["mlp", "cnn", "mine"], "net_definitions": {"mine": mine}}
    )
    assert config["nets"] == ["mlp", "cnn", "mine"]


@pytest.mark.parametrize(
    "nets, definitions, fragments",
    [
        (["resnet"], {}, ["config field 'nets[0]'", "'resnet' is not one of"]),
        (
            ["wide-kernel"],
            {"wide-kernel": [{"type": "conv2d", "filters": 4, "kernel": 30}, {"type": "flatten"},
                             {"type": "dense", "units": 10, "activation": "softmax"}]},
            ["config field 'net_definitions.wide-kernel' (dataset 'mnist')", "layer 0",
             "kernel 30x30 larger than its input 28x28x1"],
        ),
        (
            ["unflattened"],
            {"unflattened": [{"type": "conv2d", "filters": 4, "kernel": 3},
                             {"type": "dense", "units": 10, "activation": "softmax"}]},
            ["config field 'net_definitions.unflattened'", "layer 1", "26x26x4"],
        ),
        (
            ["seven"],
            {"seven": [{"type": "flatten"},
                       {"type": "dense", "units": 7, "activation": "softmax"}]},
            ["config field 'net_definitions.seven'", "layer 1", "7 outputs for 10 classes"],
        ),
        (
            ["typo"],
            {"typo": [{"type": "dense", "unit": 10}]},
            ["config field 'net_definitions.typo[0]'"],
        ),
        (
            ["mlp"],
            {"mlp": [{"type": "flatten"}, {"type": "dense", "units": 10, "activation": "softmax"}]},
            ["config field 'net_definitions'", "network 'mlp': already in the catalog"],
        ),
    ],
)  # fmt: skip
def test_a_network_that_does_not_fit_is_rejected_naming_it_and_its_layer(
    nets, definitions, fragments
):
    with pytest.raises(cfg.ConfigError) as error:
        _checked({**default_config(), "nets": nets, "net_definitions": definitions})
    for fragment in fragments:
        assert fragment in str(error.value)
