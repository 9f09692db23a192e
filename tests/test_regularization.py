"""The regularisation axis' conventions (mlpstudy.regularization), and what the network,
the spec and the shared start derive from them: where dropout and batch norm go, the
weights' names, the shared keep-masks, the penalty."""

from __future__ import annotations

import numpy as np
import pytest

from mlpstudy import nets, regularization
from mlpstudy.backends.base import SharedStart, TrainSpec
from mlpstudy.nets import CATALOG, BatchNorm, Dense, Dropout, Flatten

MNIST = (28, 28, 1)


def kinds(net):
    return [layer.kind for layer in net.layers]


def test_dropout_goes_after_every_hidden_dense_layer_or_before_a_cnns_output():
    mlp = regularization.apply(CATALOG["mlp"], "dropout")
    assert kinds(mlp) == ["flatten", "dense", "dropout", "dense"]
    deep = regularization.apply(CATALOG["mlp-deep"], "dropout", {"rate": 0.25})
    assert kinds(deep) == ["flatten"] + ["dense", "dropout"] * 3 + ["dense"]
    assert {deep.layers[i].rate for i in deep.dropout_layers} == {0.25}
    cnn = regularization.apply(CATALOG["cnn"], "dropout")
    assert cnn.layers == CATALOG["cnn-dropout"].layers  # Keras' mnist_convnet placement
    # a definition's own dropouts are kept as they are, at their own rate
    assert (
        regularization.apply(CATALOG["cnn-dropout"], "dropout", {"rate": 0.1})
        is CATALOG["cnn-dropout"]
    )


def test_batchnorm_goes_between_each_hidden_layer_and_its_activation():
    net = regularization.apply(CATALOG["cnn-small"], "batchnorm", {"epsilon": 1e-5})
    assert kinds(net) == [
        "conv2d", "batchnorm", "maxpool2d", "conv2d", "batchnorm", "maxpool2d", "flatten",
        "dense",
    ]  # fmt: skip
    assert [net.layers[i].activation for i in (0, 1, 3, 4)] == ["linear", "relu"] * 2
    assert net.layers[1].epsilon == pytest.approx(1e-5) and net.layers[1].momentum == pytest.approx(
        0.99
    )
    assert net.layers[-1] == CATALOG["cnn-small"].layers[-1]  # the output layer: none
    assert regularization.apply(net, "batchnorm", {"epsilon": 1e-5}) == net  # idempotent
    for kind in ("none", "l2", "decoupled"):
        assert regularization.apply(CATALOG["mlp"], kind) is CATALOG["mlp"]


def test_weights_are_named_in_layer_order_with_running_statistics_apart():
    net = regularization.apply(CATALOG["mlp"], "batchnorm")
    assert net.weight_names == ("W1", "b1", "gamma1", "beta1", "mean1", "var1", "W2", "b2")
    assert net.param_names == ("W1", "b1", "gamma1", "beta1", "W2", "b2")
    assert net.state_names == ("mean1", "var1")
    assert net.kernel_names == ("W1", "W2")
    assert net.n_params(MNIST) == 50_890 + 2 * 64  # running statistics are not trained
    start = SharedStart(0, 0, net=net).params
    assert list(start) == list(net.weight_names)
    for name, fill in (("gamma1", 1), ("beta1", 0), ("mean1", 0), ("var1", 1), ("b1", 0)):
        assert start[name].shape == (64,) and np.all(start[name] == fill)
    # the kernels are the same draw as without batch norm (the same generator calls)
    assert np.array_equal(start["W1"], SharedStart(0, 0).params["W1"])
    # layouts: batch norms' weights pass through PyTorch's unchanged
    torch_layout = nets.to_torch(net, MNIST, start)
    assert list(torch_layout) == list(net.weight_names)
    back = nets.from_torch(net, MNIST, torch_layout)
    assert all(np.array_equal(back[k], start[k]) for k in start)


def test_a_flatten_before_a_dropout_still_orders_the_next_dense_layers_rows():
    assert CATALOG["cnn-dropout"].flattened_maps(MNIST) == {3: (5, 5, 64)}
    net = nets.Net("x", (Flatten(), Dropout(0.2), BatchNorm(), Dense(10, "softmax")))
    assert net.flattened_maps((4, 4, 2)) == {1: (4, 4, 2)}


def test_layer_fields_are_checked_and_round_trip_through_the_config():
    net = nets.Net.from_config(
        "mine",
        [
            {"type": "flatten"},
            {"type": "dense", "units": 32, "activation": "linear"},
            {"type": "batchnorm", "epsilon": 1e-5, "momentum": 0.9, "activation": "relu"},
            {"type": "dropout", "rate": 0.3},
            {"type": "dense", "units": 10, "activation": "softmax"},
        ],
    )
    assert nets.Net.from_config("mine", net.to_config()) == net
    assert net.problems(MNIST, 10) == []
    for bad, field in (
        ({"type": "dropout", "rate": 1.0}, "rate"),
        ({"type": "dropout", "rate": -0.1}, "rate"),
        ({"type": "batchnorm", "epsilon": 0}, "epsilon"),
        ({"type": "batchnorm", "momentum": 1}, "momentum"),
        ({"type": "batchnorm", "activation": "softmax"}, "activation"),
    ):
        with pytest.raises(ValueError, match=f"network 'bad', layer 0: .*{field}"):
            nets.Net.from_config("bad", [bad, {"type": "dense", "units": 10}])


@pytest.mark.parametrize(
    ("kind", "settings", "field"),
    [
        ("l2", {"lambda": -1e-4}, "regularization_settings.l2.lambda must be >= 0"),
        ("decoupled", {"weight_decay": -1}, "decoupled.weight_decay must be >= 0"),
        ("dropout", {"rate": 1.0}, "dropout.rate must be < 1"),
        ("dropout", {"rate": -0.5}, "dropout.rate must be >= 0"),
        ("batchnorm", {"epsilon": 0.0}, "batchnorm.epsilon must be > 0"),
        ("batchnorm", {"momentum": float("nan")}, "batchnorm.momentum must be a finite number"),
        ("l2", {"lambd": 1e-4}, "regularization_settings.l2: unknown setting"),
        ("weight-decay", {}, "regularization must be one of none, l2, decoupled"),
    ],
)
def test_bad_settings_name_the_field(kind, settings, field):
    with pytest.raises(ValueError, match=field):
        regularization.resolve(kind, settings)
    with pytest.raises(ValueError, match=field):
        TrainSpec(0.1, 32, 1, 0, 0, regularization=kind, regularization_settings=settings)


def test_the_spec_trains_the_regularised_net_and_records_every_number():
    spec = TrainSpec(0.1, 32, 1, 0, 0, regularization="batchnorm")
    assert spec.net.norm_layers == (2,) and spec.net.name == "mlp"
    assert spec.regularization_settings == {
        "epsilon": float(np.float32(1e-3)),
        "momentum": float(np.float32(0.99)),
    }
    assert TrainSpec(**{**vars(spec)}).net == spec.net  # rebuilding does not insert twice
    l2 = TrainSpec(0.1, 32, 1, 0, 0, regularization="l2", regularization_settings={"lambda": 0.01})
    assert l2.l2 == pytest.approx(0.01) and l2.weight_decay == 0
    decoupled = TrainSpec(0.1, 32, 1, 0, 0, regularization="decoupled")
    assert decoupled.weight_decay == pytest.approx(5e-4) and decoupled.l2 == 0


def test_the_penalty_is_half_lambda_times_the_kernels_squared_norm():
    spec = TrainSpec(0.1, 32, 1, 0, 0, regularization="l2", regularization_settings={"lambda": 0.5})
    params = {"W1": np.full((784, 64), 0.5), "b1": np.full(64, 9.0), "W2": np.ones((64, 10))}
    params["b2"] = np.full(10, 9.0)
    lam = float(np.float32(0.5))
    assert spec.penalty(params) == pytest.approx(lam / 2 * (784 * 64 * 0.25 + 640))  # no biases
    assert TrainSpec(0.1, 32, 1, 0, 0).penalty(params) == 0.0


def test_keep_masks_are_shared_drawn_per_epoch_and_leave_the_start_alone():
    spec = TrainSpec(
        0.1, 32, 1, 3, 1, regularization="dropout", regularization_settings={"rate": 0.3}
    )
    plain = TrainSpec(0.1, 32, 1, 3, 1)
    a, b, c = SharedStart.of(spec), SharedStart.of(spec), SharedStart.of(plain)
    assert all(np.array_equal(a.params[k], c.params[k]) for k in c.params)
    first = [a.permutation(1000), a.keep_masks(1000)]
    assert np.array_equal(first[0], c.permutation(1000))  # the same batch order
    second = a.keep_masks(1000)
    (mask,) = first[1]
    assert mask.shape == (1000, 64) and mask.dtype == bool
    assert abs(mask.mean() - 0.7) < 0.01  # keep probability 1 - rate: 64000 draws, 5 SD
    assert not np.array_equal(mask, second[0])  # each epoch its own
    assert np.array_equal(b.keep_masks(1000)[0], mask)  # every backend the same masks
    assert SharedStart.of(plain).keep_masks(5) == []
    own = SharedStart.of(spec, stream="numpy").keep_masks(1000)[0]
    assert not np.array_equal(own, mask)  # an independent start's masks are its own
