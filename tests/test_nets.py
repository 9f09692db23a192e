"""The network catalog (``mlpstudy.nets``): shapes, parameter counts, FLOPs, the checks of
a definition against a dataset's images, the config form and its schema, the shared draw
(``mlp``'s is the study's, number for number) and the layout conversion's bookkeeping.

The numbers the layers compute (and PyTorch's agreement with the converted layout) are
test_numpy_layers.py's.
"""

from __future__ import annotations

import jsonschema
import numpy as np
import pytest
import yaml

from mlpstudy import nets
from mlpstudy.backends.base import MLP, SharedStart
from mlpstudy.nets import CATALOG, Conv2D, Dense, Flatten, MaxPool2D, Net

MNIST = (28, 28, 1)


def test_catalog_shapes_and_parameter_counts():
    assert list(CATALOG) == ["mlp", "mlp-wide", "mlp-deep", "cnn", "cnn-dropout", "cnn-small"]
    cnn = CATALOG["cnn"]
    assert cnn.shapes(MNIST) == [
        (28, 28, 1),
        (26, 26, 32),
        (13, 13, 32),
        (11, 11, 64),
        (5, 5, 64),
        (1600,),
        (10,),
    ]
    assert cnn.param_shapes(MNIST) == {
        "W1": (3, 3, 1, 32),
        "b1": (32,),
        "W2": (3, 3, 32, 64),
        "b2": (64,),
        "W3": (1600, 10),
        "b3": (10,),
    }
    assert cnn.n_params(MNIST) == 34_826  # Keras' mnist_convnet without dropout
    assert CATALOG["cnn-dropout"].n_params(MNIST) == 34_826  # and with it
    mlp = CATALOG["mlp"]
    assert mlp.param_names == MLP.param_names == ("W1", "b1", "W2", "b2")
    assert mlp.param_shapes(MNIST) == {"W1": (784, 64), "b1": (64,), "W2": (64, 10), "b2": (10,)}
    assert mlp.n_params(MNIST) == 50_890
    assert CATALOG["mlp-wide"].n_params(MNIST) == 784 * 1024 + 1024 + 1024 * 10 + 10
    assert CATALOG["mlp-deep"].n_params(MNIST) == 784 * 256 + 2 * 256 * 256 + 256 * 10 + 10 + 768
    assert CATALOG["cnn-small"].n_params(MNIST) == (9 * 8 + 8) + (72 * 16 + 16) + (400 * 10 + 10)
    assert CATALOG["cnn-small"].shapes(MNIST)[-3:] == [(5, 5, 16), (400,), (10,)]
    for net in CATALOG.values():
        assert net.problems(MNIST, 10) == [] and net.n_classes == 10


def test_flops_are_the_hand_count():
    """2 FLOPs per multiply-add of the products; backward: every kernel's gradient plus
    every input gradient but the first parameterised layer's."""
    mlp = 784 * 64, 64 * 10
    assert CATALOG["mlp"].flops(MNIST) == (2 * sum(mlp), 2 * sum(mlp) + 2 * mlp[1])
    assert CATALOG["mlp"].flops(MNIST) == (101_632, 102_912)
    cnn = 26 * 26 * 32 * 9, 11 * 11 * 64 * 9 * 32, 1600 * 10
    assert CATALOG["cnn"].flops(MNIST) == (2 * sum(cnn), 2 * sum(cnn) + 2 * (cnn[1] + cnn[2]))
    # 'same' padding counts every output position, the padded ones included
    same = Net("s", (Conv2D(4, 3, stride=2, padding="same"), Flatten(), Dense(10, "softmax")))
    assert same.flops((5, 5, 2)).forward == 2 * (3 * 3 * 4 * 9 * 2 + 36 * 10)


@pytest.mark.parametrize(
    ("layers", "shape", "classes", "expected"),
    [
        (
            [Conv2D(8, 3), MaxPool2D(2), Conv2D(8, 15), Flatten(), Dense(10, "softmax")],
            MNIST,
            10,
            ["layer 2 (conv2d 8 filters 15x15", "kernel 15x15 larger than its input 13x13x8 map"],
        ),
        (
            [Dense(64), Dense(10, "softmax")],
            MNIST,
            10,
            ["layer 0 (dense 64, relu)", "dense layer on an unflattened 28x28x1 map"],
        ),
        (
            [Flatten(), Conv2D(8, 3), Flatten(), Dense(10, "softmax")],
            MNIST,
            10,
            ["layer 1 (conv2d", "conv2d on a vector of 784"],
        ),
        (
            [Conv2D(4, 3, stride=2), MaxPool2D(14), Flatten(), Dense(10, "softmax")],
            MNIST,
            10,
            [
                "layer 1 (maxpool2d 14x14, stride 14x14)",
                "pool 14x14 larger than its input 13x13x4 map",
            ],
        ),
        (
            [Flatten(), MaxPool2D(2), Dense(10, "softmax")],
            MNIST,
            10,
            ["layer 1 (maxpool2d", "maxpool2d on a vector of 784"],
        ),
        (
            [Flatten(), Dense(12, "softmax")],
            MNIST,
            10,
            ["layer 1 (dense 12, softmax)", "12 outputs for 10 classes", "28x28x1 map"],
        ),
        (
            [Flatten(), Dense(10, "linear")],
            MNIST,
            10,
            ["layer 1 (dense 10, linear)", "output layer must be dense with softmax"],
        ),
        (
            [Conv2D(10, 28), Flatten()],
            MNIST,
            10,
            ["layer 1 (flatten)", "output layer must be dense with softmax"],
        ),
        (
            [Flatten(), Dense(32, "softmax"), Dense(10, "softmax")],
            MNIST,
            10,
            ["layer 1 (dense 32, softmax)", "softmax is only for the output layer"],
        ),
        (
            [Conv2D(8, 3), Flatten(), Dense(10, "softmax")],
            (2, 2, 1),
            10,
            ["layer 0 (conv2d", "kernel 3x3 larger than its input 2x2x1 map"],
        ),
    ],
)
def test_a_network_that_does_not_fit_is_rejected_naming_layer_and_shapes(
    layers, shape, classes, expected
):
    net = Net("bad", tuple(layers))
    problems = net.problems(shape, classes)
    assert len(problems) == 1
    assert problems[0].startswith("network 'bad', layer ")
    for text in expected:
        assert text in problems[0]
    with pytest.raises(ValueError) as error:
        net.check(shape, classes)
    assert str(error.value) == problems[0]


def test_every_problem_is_reported_at_once():
    net = Net("bad", (Flatten(), Dense(8, "softmax"), Conv2D(4, 3), Dense(7, "softmax")))
    problems = net.problems(MNIST, 10)
    assert len(problems) == 3
    assert "layer 2 (conv2d" in problems[0] and "vector of 8" in problems[0]
    assert "layer 1 (dense 8, softmax): softmax is only for the output layer" in problems[1]
    assert "layer 3 (dense 7, softmax): 7 outputs for 10 classes" in problems[2]
    assert Net("n", (Flatten(), Dense(10, "softmax"))).problems((28, 28), 10) == [
        "network 'n': input shape (28, 28) is not (H, W, C) or (n,)"
    ]
    with pytest.raises(ValueError, match=r"network 'bad', layer 2 \(conv2d.*vector of 8"):
        net.shapes(MNIST)


CONFIG = """
net_definitions:
  lenet-ish:
    - {type: conv2d, filters: 6, kernel: 5, padding: same}
    - {type: maxpool2d, pool: 2}
    - {type: conv2d, filters: 16, kernel: [5, 3], stride: [1, 2], activation: linear}
    - {type: maxpool2d, pool: 3, stride: 2}
    - {type: flatten}
    - {type: dense, units: 120}
    - {type: dense, units: 10, activation: softmax}
"""


def test_config_form_round_trip_and_schema():
    definitions = yaml.safe_load(CONFIG)["net_definitions"]
    net = Net.from_config("lenet-ish", definitions["lenet-ish"])
    assert net == Net(
        "lenet-ish",
        (
            Conv2D(6, (5, 5), stride=(1, 1), padding="same", activation="relu"),
            MaxPool2D((2, 2), stride=(2, 2)),
            Conv2D(16, (5, 3), stride=(1, 2), padding="valid", activation="linear"),
            MaxPool2D(3, stride=2),
            Flatten(),
            Dense(120, "relu"),
            Dense(10, "softmax"),
        ),
    )
    assert net.shapes(MNIST)[1:5] == [(28, 28, 6), (14, 14, 6), (10, 6, 16), (4, 2, 16)]
    schema = nets.definitions_schema()
    jsonschema.validate(definitions, schema)
    for each in [net, *CATALOG.values()]:
        form = each.to_config()
        assert Net.from_config(each.name, yaml.safe_load(yaml.safe_dump(form))) == each
        jsonschema.validate({each.name: form}, schema)
    assert nets.networks(definitions)["lenet-ish"] == net
    assert nets.get("cnn") is CATALOG["cnn"]


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"type": "conv"}, "layer 1: unknown type 'conv'; known: dense, conv2d, maxpool2d"),
        ({"units": 3}, "layer 1: must be a mapping with a 'type'"),
        ({"type": "dense", "unit": 3}, "layer 1: dense: unknown key(s) 'unit'; known: units"),
        ({"type": "conv2d", "filters": 3}, "layer 1: conv2d: missing 'kernel'"),
        ({"type": "conv2d", "filters": 3, "kernel": 0}, "conv2d field 'kernel': must be a"),
        ({"type": "conv2d", "filters": 3, "kernel": [3, 3, 3]}, "field 'kernel'"),
        ({"type": "conv2d", "filters": 2, "kernel": 3, "padding": "full"}, "one of valid, same"),
        ({"type": "conv2d", "filters": 2, "kernel": 3, "activation": "softmax"}, "relu, linear"),
        ({"type": "dense", "units": True}, "dense field 'units': must be a positive integer"),
        ({"type": "maxpool2d", "pool": 2, "stride": 0}, "maxpool2d field 'stride'"),
    ],
)
def test_a_bad_layer_definition_names_network_index_and_field(layer, message):
    definition = [{"type": "flatten"}, layer, {"type": "dense", "units": 10}]
    with pytest.raises(ValueError) as error:
        Net.from_config("mine", definition)
    assert str(error.value).startswith("network 'mine', layer 1: ")
    assert message in str(error.value)
    # the schema the config validator uses rejects it too
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"mine": definition}, nets.definitions_schema())


def test_every_bad_layer_and_name_is_reported_at_once():
    with pytest.raises(ValueError) as error:
        nets.networks(
            {
                "cnn": [{"type": "flatten"}],
                "mine": [{"type": "dense"}, {"type": "pool"}],
                "empty": [],
            }
        )
    lines = str(error.value).splitlines()
    assert lines[0].startswith("network 'cnn': already in the catalog")
    assert lines[1] == "network 'mine', layer 0: dense: missing 'units'"
    assert lines[2].startswith("network 'mine', layer 1: unknown type 'pool'")
    assert lines[3] == "network 'empty': must be a non-empty list of layers"
    with pytest.raises(KeyError, match="unknown network 'nope'; known: mlp, mlp-wide"):
        nets.get("nope")


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pads", "out"),
    [
        (28, 3, 1, (1, 1), 28),
        (28, 2, 1, (0, 1), 28),  # the odd pixel at the bottom/right
        (5, 3, 2, (1, 1), 3),
        (6, 3, 2, (0, 1), 3),
        (7, 4, 3, (1, 2), 3),
        (4, 1, 2, (0, 0), 2),  # never negative
    ],
)
def test_same_padding_is_tensorflows(size, kernel, stride, pads, out):
    assert nets.same_padding(size, kernel, stride) == pads
    assert nets.output_size(size, kernel, stride, "same") == out
    assert (size + sum(pads) - kernel) // stride + 1 == out


@pytest.mark.parametrize(("seed", "trial"), [(0, 0), (1, 3), (2026, 7)])
def test_mlp_initial_weights_are_the_studys_shared_start(seed, trial):
    """The same generator calls as ``base.SharedStart``, so bit-identical weights."""
    from mlpstudy.backends.base import generator

    expected = SharedStart(seed, trial).params
    params = nets.init(CATALOG["mlp"], MNIST, generator(seed, trial))
    assert list(params) == list(expected)
    for name in expected:
        assert params[name].dtype == np.float32
        np.testing.assert_array_equal(params[name], expected[name])
    float64 = SharedStart(seed, trial, dtype=np.float64).params["W2"]
    np.testing.assert_array_equal(
        nets.init(CATALOG["mlp"], MNIST, generator(seed, trial), np.float64)["W2"], float64
    )


def test_conv_kernels_draw_he_uniform_with_kerass_fan_in():
    params = nets.init(CATALOG["cnn"], MNIST, np.random.default_rng(0))
    for name, fan_in in (("W1", 9), ("W2", 9 * 32), ("W3", 1600)):
        limit = np.sqrt(6 / fan_in)
        w = params[name]
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
        assert abs(w.std() - limit / np.sqrt(3)) < 0.05 * limit
    assert not any(params[b].any() for b in ("b1", "b2", "b3"))


def test_torch_layout_permutes_only_the_dense_layer_after_a_flatten():
    net = Net(
        "t",
        (Conv2D(3, 2), Flatten(), Dense(5), Dense(4, "softmax")),
    )
    shape = (3, 4, 2)  # conv -> 2x3x3, flattened to 18
    assert net.flattened_maps(shape) == {2: (2, 3, 3)}
    rng = np.random.default_rng(0)
    params = {k: rng.random(s) for k, s in net.param_shapes(shape).items()}
    torch_params = nets.to_torch(net, shape, params)
    assert torch_params["W1"].shape == (3, 2, 2, 2)  # OIHW
    np.testing.assert_array_equal(torch_params["W1"][2, 1, 0, 1], params["W1"][0, 1, 1, 2])
    assert torch_params["W2"].shape == (5, 18)
    # feature (h, w, c) = (1, 2, 0): NHWC row 1*9 + 2*3 + 0, NCHW column 0*6 + 1*3 + 2
    np.testing.assert_array_equal(torch_params["W2"][:, 5], params["W2"][15])
    np.testing.assert_array_equal(torch_params["W3"], params["W3"].T)
    back = nets.from_torch(net, shape, torch_params)
    assert all(np.array_equal(back[k], params[k]) for k in params)
    assert CATALOG["mlp"].flattened_maps(MNIST) == {1: MNIST}  # one channel: no change
    mlp_params = nets.init(CATALOG["mlp"], MNIST, np.random.default_rng(1))
    np.testing.assert_array_equal(
        nets.to_torch(CATALOG["mlp"], MNIST, mlp_params)["W1"], mlp_params["W1"].T
    )


@pytest.mark.parametrize("name", sorted(nets.CATALOG))
def test_nothing_but_the_catalog_names_a_network(name):
    """A network is one catalog entry: no other code or rule names one (the default's
    name lives in ``nets.DEFAULT``), so adding a network needs no edit elsewhere."""
    import re
    from pathlib import Path

    from test_backends import _string_constants

    repo = Path(__file__).resolve().parents[1]
    code = sorted((repo / "src").rglob("*.py")) + sorted((repo / "workflow").rglob("*.py"))
    offenders = [
        str(path.relative_to(repo))
        for path in code
        if path.name != "nets.py" and name in _string_constants(path)
    ]
    rules = [repo / "Snakefile", *sorted((repo / "workflow/rules").glob("*.smk"))]
    word = re.compile(rf"^[^#]*[\"']{re.escape(name)}[\"']", re.MULTILINE)
    offenders += [str(p.relative_to(repo)) for p in rules if word.search(p.read_text())]
    assert offenders == []


def test_the_memory_a_run_holds_is_its_largest_step_or_evaluation_chunk():
    """The scheduler's request grows by what a net holds at once (base.work_mb): every net
    evaluates in chunks of up to CHUNK_BYTES of outputs (twice), the MLP's of 28339
    images (74 outputs per image) or its whole set if smaller, and a large enough batch's
    step wins."""
    from mlpstudy.backends import base

    mlp, cnn = CATALOG["mlp"], CATALOG["cnn"]
    assert base.work_mb(mlp, (28, 28, 1), 32, 60000) == pytest.approx(2 * 28339 * 74 * 4 / 2**20)
    assert base.work_mb(mlp, (28, 28, 1), 32, 1000) == pytest.approx(2 * 1000 * 74 * 4 / 2**20)
    chunk = base.work_mb(cnn, (28, 28, 1), 1, 60000) * 2**20 / 2
    assert base.CHUNK_BYTES - 4 * 40_000 < chunk <= base.CHUNK_BYTES  # within one image
    step = 4096 * cnn.activations((28, 28, 1)) * 4 * 4 / 2**20
    assert base.work_mb(cnn, (28, 28, 1), 4096, 60000) == pytest.approx(step)
