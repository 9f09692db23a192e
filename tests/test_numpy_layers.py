"""NumPy's hand-written layers (``backends/numpy_layers.py``): each layer's backward pass
entry by entry against central finite differences (float64, tiny odd shapes, stride 1
and 2, valid and same), whole networks' gradients on random coordinates, the study's MLP
against ``numpy_mlp`` (the same numbers), and forward outputs and gradients against
PyTorch with the weights moved by ``nets.to_torch`` (flatten order, TensorFlow's 'same'
padding as explicit padding, max-pool's tie routing).
"""

from __future__ import annotations

import numpy as np
import pytest

from mlpstudy import nets
from mlpstudy.backends import base, numpy_layers
from mlpstudy.nets import CATALOG, Conv2D, Dense, Flatten, MaxPool2D, Net

MNIST = (28, 28, 1)
EPS = 1e-6

#: Every layer kind and padding in one network on an odd-sized 3-channel image: 'same'
#: with stride 2 and with an even kernel (the odd pixel padded at the bottom/right), an
#: overlapping pool, a flatten of a many-channel map, hidden dense layers.
ODD = Net(
    "odd",
    (
        Conv2D(4, 3, stride=2, padding="same"),  # 9x11x3 -> 5x6x4
        Conv2D(5, (2, 3), padding="same", activation="linear"),  # -> 5x6x5
        MaxPool2D(3, stride=2),  # -> 2x2x5
        Conv2D(6, 1),  # -> 2x2x6
        Flatten(),
        Dense(7),
        Dense(4, "softmax"),
    ),
)
ODD_SHAPE = (9, 11, 3)


def _params(net, shape, seed=0, dtype=np.float64):
    """The shared draw with nonzero biases, so their gradients are tested too."""
    rng = np.random.default_rng(seed)
    params = nets.init(net, shape, rng, dtype)
    for name in params:
        if name[0] == "b":
            params[name] += rng.normal(0, 0.1, params[name].shape).astype(dtype)
    return params


def _numeric(f, array, picks):
    """Central differences of the scalar ``f()`` in the entries ``picks`` of ``array``."""
    flat, out = array.reshape(-1), []
    for i in picks:
        saved = flat[i]
        flat[i] = saved + EPS
        up = f()
        flat[i] = saved - EPS
        down = f()
        flat[i] = saved
        out.append((up - down) / (2 * EPS))
    return np.array(out)


def _layer_check(layer, in_shape, rows=2, seed=0):
    """One layer's dx, dW, db against finite differences of L = sum(y * r), every entry."""
    out_shape = layer.out_shape(in_shape)
    rng = np.random.default_rng(seed)
    names = ("W", "b") if layer.has_params else ()
    params = dict(zip(names, (rng.normal(0, 1, s) for s in layer.param_shapes(in_shape))))
    op = numpy_layers.OPS[type(layer)](layer, names, in_shape, out_shape, rows, np.float64, True)
    x = rng.normal(0, 1, (rows, *in_shape))
    r = rng.normal(0, 1, (rows, *out_shape))

    def loss():
        return float(np.sum(op.forward(x, params) * r))

    loss()
    grads = {name: np.zeros_like(p) for name, p in params.items()}
    dx = op.backward(r.copy(), params, grads)
    assert dx.shape == x.shape
    for array, grad in [(x, dx), *((params[k], grads[k]) for k in names)]:
        numeric = _numeric(loss, array, range(array.size))
        np.testing.assert_allclose(grad.reshape(-1), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    ("layer", "in_shape"),
    [
        (Conv2D(3, 3), (5, 6, 2)),
        (Conv2D(3, 3, stride=2), (7, 6, 2)),  # the last column in no window
        (Conv2D(2, (2, 3), padding="same"), (5, 4, 3)),  # even kernel: pad 0 top, 1 bottom
        (Conv2D(3, 3, stride=2, padding="same", activation="linear"), (6, 5, 2)),
        (Conv2D(2, 1, stride=(2, 1)), (5, 3, 2)),
    ],
)
def test_conv2d_backward_matches_finite_differences(layer, in_shape):
    _layer_check(layer, in_shape)


@pytest.mark.parametrize(
    ("layer", "in_shape"),
    [
        (MaxPool2D(2), (4, 6, 2)),  # windows tile the input
        (MaxPool2D(2), (5, 7, 3)),  # a last row and column in no window
        (MaxPool2D(3, stride=2), (7, 5, 2)),  # overlapping windows
        (MaxPool2D((2, 1), stride=(1, 2)), (3, 4, 1)),
    ],
)
def test_maxpool_backward_matches_finite_differences(layer, in_shape):
    _layer_check(layer, in_shape)


@pytest.mark.parametrize("layer", [Dense(5), Dense(4, "linear")])
def test_dense_backward_matches_finite_differences(layer):
    _layer_check(layer, (6,), rows=3)


def test_flatten_is_nhwc_order():
    op = numpy_layers.FlattenOp(Flatten(), (), (2, 3, 4), (24,), 2, np.float64, True)
    x = np.arange(48.0).reshape(2, 2, 3, 4)
    np.testing.assert_array_equal(op.forward(x, {}), x.reshape(2, 24))
    assert op.backward(op.forward(x, {}), {}, {}).shape == x.shape


def test_maxpool_routes_a_tie_to_the_first_maximum():
    """Row-major order within the window, as TensorFlow's and PyTorch's CPU kernels."""
    layer = MaxPool2D(2)
    op = numpy_layers.MaxPool2DOp(layer, (), (2, 4, 1), (1, 2, 1), 1, np.float64, True)
    x = np.array([[1.0, 3.0, 2.0, 2.0], [3.0, 0.0, 2.0, 2.0]]).reshape(1, 2, 4, 1)
    np.testing.assert_array_equal(op.forward(x, {}).ravel(), [3.0, 2.0])
    dx = op.backward(np.array([10.0, 20.0]).reshape(1, 1, 2, 1), {}, {})
    np.testing.assert_array_equal(dx.reshape(2, 4), [[0, 10, 20, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize(
    ("net", "shape", "rows"),
    [(CATALOG["cnn-small"], MNIST, 3), (CATALOG["mlp-deep"], MNIST, 3), (ODD, ODD_SHAPE, 4)],
    ids=["cnn-small", "mlp-deep", "odd"],
)
def test_network_gradients_match_finite_differences(net, shape, rows):
    params = _params(net, shape)
    rng = np.random.default_rng(1)
    x = rng.random((rows, *shape))
    y = rng.integers(0, net.n_classes, rows)
    loss, grads = numpy_layers.gradients(net, params, x, y)
    model = numpy_layers.Model(net, shape, rows, np.float64)
    assert loss == pytest.approx(model.evaluate(params, x, y)[0], rel=1e-12)
    for name in net.param_names:
        grad = grads[name].reshape(-1)
        # 6 entries per array, half of them among the largest gradients
        picks = np.unique(
            np.r_[
                rng.choice(grad.size, min(3, grad.size), replace=False), np.argsort(-abs(grad))[:3]
            ]
        )
        numeric = _numeric(lambda: model.evaluate(params, x, y)[0], params[name], picks)
        np.testing.assert_allclose(grad[picks], numeric, rtol=1e-5, atol=1e-9, err_msg=name)


def test_mlp_computes_the_studys_equations():
    """The catalog's ``mlp`` through the layers is the study's MLP (equations (1)-(12),
    written out here once more in float64): loss, gradients and evaluation."""
    from mlpstudy.backends.base import SharedStart

    params = SharedStart(3, 1).params
    params["b1"] += np.float32(0.05)
    rng = np.random.default_rng(0)
    x = rng.random((32, 784), dtype=np.float32)
    y = rng.integers(0, 10, 32)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    z1 = x @ p64["W1"] + p64["b1"]
    a1 = np.maximum(z1, 0)
    z2 = a1 @ p64["W2"] + p64["b2"]
    z2 -= z2.max(axis=1, keepdims=True)
    probs = np.exp(z2) / np.exp(z2).sum(axis=1, keepdims=True)
    expected_loss = float(np.mean(-np.log(probs[np.arange(32), y])))
    d2 = (probs - np.eye(10)[y]) / 32
    d1 = (d2 @ p64["W2"].T) * (z1 > 0)
    expected = {"W1": x.T @ d1, "b1": d1.sum(0), "W2": a1.T @ d2, "b2": d2.sum(0)}
    loss, grads = numpy_layers.gradients(CATALOG["mlp"], params, x.reshape(32, *MNIST), y)
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    for name in expected:
        assert grads[name].dtype == np.float32
        scale = np.abs(expected[name]).max()
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-4, atol=1e-6 * scale)
    accuracy = float(np.mean(probs.argmax(axis=1) == y))
    assert numpy_layers.evaluate(CATALOG["mlp"], params, x, y) == pytest.approx(
        (expected_loss, accuracy), rel=1e-6
    )


def test_buffers_serve_a_short_batch_and_repeated_steps():
    """A short last batch uses the first rows of the buffers; a second step sees none of
    the first one's numbers (zero borders, pooled gradients, col2im sums)."""
    params = _params(ODD, ODD_SHAPE)
    rng = np.random.default_rng(2)
    x = rng.random((7, *ODD_SHAPE))
    y = rng.integers(0, 4, 7)
    onehot = numpy_layers.one_hot(y, 4, np.float64)
    model = numpy_layers.Model(ODD, ODD_SHAPE, 7, np.float64)
    model.backward(params, x, onehot, 1 / 7)
    full = {k: g.copy() for k, g in model.grads.items()}
    model.backward(params, x[:3], onehot[:3], 1 / 3)
    short = numpy_layers.gradients(ODD, params, x[:3], y[:3])[1]
    model.backward(params, x, onehot, 1 / 7)
    for name in full:
        np.testing.assert_array_equal(model.grads[name], full[name])
    model.backward(params, x[:3], onehot[:3], 1 / 3)
    for name in short:
        np.testing.assert_allclose(model.grads[name], short[name], rtol=1e-12, atol=1e-15)
    # the gradients are views of one flat vector, in param_names order
    assert model.grad.size == ODD.n_params(ODD_SHAPE)
    assert np.shares_memory(model.grads["W1"], model.grad)
    # evaluation in chunks gives one chunk's numbers
    chunked = numpy_layers.Model(ODD, ODD_SHAPE, 2, np.float64).evaluate(params, x, y)
    assert chunked == pytest.approx(numpy_layers.evaluate(ODD, params, x, y), rel=1e-12)


# --- PyTorch, with the weights moved by nets.to_torch ----------------------------------


def _torch_model(net, shape, params):
    """The network as nn.Sequential in float64 (logits out), 'same' as explicit F.pad."""
    torch = pytest.importorskip("torch")
    from torch import nn

    shapes = net.shapes(shape)
    modules, weighted = [], []
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Conv2D):
            (top, bottom), (left, right) = layer.pads(shapes[i])
            modules.append(nn.ZeroPad2d((left, right, top, bottom)))  # F.pad's order
            modules.append(nn.Conv2d(shapes[i][2], layer.filters, layer.kernel, layer.stride))
        elif isinstance(layer, MaxPool2D):
            modules.append(nn.MaxPool2d(layer.pool, layer.stride))
        elif isinstance(layer, Flatten):
            modules.append(nn.Flatten())
        else:
            modules.append(nn.Linear(shapes[i][0], layer.units))
        if layer.has_params:
            weighted.append(modules[-1])
        if getattr(layer, "activation", None) == "relu":
            modules.append(nn.ReLU())
    model = nn.Sequential(*modules).double()
    moved = nets.to_torch(net, shape, params)
    with torch.no_grad():
        for k, module in enumerate(weighted, 1):
            module.weight.copy_(torch.from_numpy(moved[f"W{k}"]))
            module.bias.copy_(torch.from_numpy(moved[f"b{k}"]))
    return model, weighted


@pytest.mark.parametrize(
    ("net", "shape"),
    [(CATALOG["cnn"], MNIST), (CATALOG["mlp-deep"], MNIST), (ODD, ODD_SHAPE)],
    ids=["cnn", "mlp-deep", "odd"],
)
def test_forward_and_gradients_match_pytorch_in_the_converted_layout(net, shape):
    torch = pytest.importorskip("torch")
    params = _params(net, shape, seed=4)
    model, weighted = _torch_model(net, shape, params)
    rng = np.random.default_rng(5)
    x = rng.random((5, *shape))  # NHWC
    y = rng.integers(0, net.n_classes, 5)
    logits = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))  # NCHW
    np.testing.assert_allclose(
        numpy_layers.forward(net, params, x), logits.detach().numpy(), rtol=1e-10, atol=1e-12
    )
    torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)).backward()
    torch_grads = {}
    for k, module in enumerate(weighted, 1):
        torch_grads[f"W{k}"] = module.weight.grad.numpy()
        torch_grads[f"b{k}"] = module.bias.grad.numpy()
    expected = nets.from_torch(net, shape, torch_grads)
    loss, grads = numpy_layers.gradients(net, params, x, y)
    for name in net.param_names:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("pool", "stride"), [(2, 2), (3, 2), (2, 1)])
def test_maxpool_ties_route_as_pytorch(pool, stride):
    """Many ties (values in {0, 1, 2}): the gradient lands where PyTorch's does."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(pool + stride)
    x = rng.integers(0, 3, (2, 7, 6, 3)).astype(np.float64)
    layer = MaxPool2D(pool, stride=stride)
    out_shape = layer.out_shape(x.shape[1:])
    op = numpy_layers.MaxPool2DOp(layer, (), x.shape[1:], out_shape, 2, np.float64, True)
    dy = rng.normal(0, 1, (2, *out_shape))
    y = op.forward(x, {})
    dx = op.backward(dy.copy(), {}, {})  # backward may overwrite its dy
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
    yt = torch.nn.functional.max_pool2d(xt, pool, stride)
    yt.backward(torch.from_numpy(dy.transpose(0, 3, 1, 2).copy()))
    np.testing.assert_array_equal(y, yt.detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-15)


def test_buffer_bytes_are_the_hand_count():
    """mlp in float32, per image: hidden z/a1 and its ReLU mask, logits, the output layer's
    input gradient, row max, row sum, exp (no input gradient for the first layer); fixed:
    the ReLU's row of 64 zeros, and the 50,890 gradients twice (a batch's and a chunk's).
    Evaluation: no mask, no input gradient, no gradients."""
    model = numpy_layers.Model(CATALOG["mlp"], MNIST, 32, np.float32)
    assert model.row_bytes == 4 * (64 + 10 + 64 + 1 + 1 + 10) + 64
    assert model.nbytes == 32 * model.row_bytes + 4 * 64 + 2 * 4 * 50_890
    evaluation = numpy_layers.Model(CATALOG["mlp"], MNIST, 32, np.float32, backward=False)
    assert evaluation.row_bytes == 4 * (64 + 10 + 1 + 1 + 10)
    assert evaluation.nbytes == 32 * evaluation.row_bytes + 4 * 64


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_both_im2col_layouts_give_the_same_windows(channels, monkeypatch):
    """X_col as rows (every window at once) or transposed with the bias's row of ones
    (per kernel offset, few channels): the same X_col, the same outputs, gradients and
    input gradients (to float64 rounding: the bias is added inside the product), 'same'
    padding and stride 2 included, on a short batch (2 images in buffers for 3)."""
    layer = Conv2D(3, (3, 2), stride=2, padding="same")
    in_shape = (7, 6, channels)
    rng = np.random.default_rng(channels)
    params = dict(zip(("W", "b"), (rng.normal(0, 1, s) for s in layer.param_shapes(in_shape))))
    x = rng.normal(0, 1, (2, *in_shape))
    dy = rng.normal(0, 1, (2, *layer.out_shape(in_shape)))
    seen = []
    for threshold in (0, 100):  # never transposed, always transposed
        monkeypatch.setattr(numpy_layers, "PER_OFFSET_CHANNELS", threshold)
        op = numpy_layers.Conv2DOp(
            layer, ("W", "b"), in_shape, layer.out_shape(in_shape), 3, np.float64, True
        )
        assert op.transposed == (channels < threshold)
        y = op.forward(x, params).copy()
        cols = op.x_col(2).copy()
        grads = {k: np.zeros_like(p) for k, p in params.items()}
        seen.append((y, cols, op.backward(dy.copy(), params, grads).copy(), grads))
    (y0, c0, dx0, g0), (y1, c1, dx1, g1) = seen
    np.testing.assert_array_equal(c0, c1)
    np.testing.assert_allclose(y1, y0, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dx1, dx0, rtol=1e-13, atol=1e-13)
    for name in g0:
        np.testing.assert_allclose(g1[name], g0[name], rtol=1e-13, atol=1e-13)


def test_relu_mask_applied_by_the_pool_is_the_convs_own():
    """The pool after a ReLU conv applies 1(y > 0) at its maxima and the conv skips it:
    the gradients equal those with the conv masking its own output, also with most
    outputs negative (all-zero windows, ties at 0) and exact ties among positives."""
    net = Net("c", (Conv2D(3, 3), MaxPool2D(2), Flatten(), Dense(4, "softmax")))
    shape = (8, 8, 2)
    params = _params(net, shape)
    params["b1"][:] = -0.8  # most conv outputs negative: many all-zero windows
    rng = np.random.default_rng(3)
    x = np.round(rng.random((5, *shape)), 1)  # coarse values: exact ties after the conv
    y = rng.integers(0, 4, 5)
    onehot = numpy_layers.one_hot(y, 4, np.float64)
    fused = numpy_layers.Model(net, shape, 5, np.float64)
    assert fused.ops[0].masked_downstream and fused.ops[1].relu_input
    plain = numpy_layers.Model(net, shape, 5, np.float64)
    plain.ops[0].masked_downstream = plain.ops[1].relu_input = False
    for model in (fused, plain):
        model.backward(params, x, onehot, 1 / 5)
    assert (fused.ops[0].y <= 0).mean() > 0.3
    np.testing.assert_array_equal(fused.grad, plain.grad)


@pytest.mark.parametrize("layout", ["transposed", "rows"])
@pytest.mark.parametrize(
    "shape", [(17, 17, 1), (16, 16, 2)], ids=["pools-cover", "last-row-and-column-in-no-window"]
)
def test_a_conv_emits_window_major_pixels_for_its_tiling_pool(shape, layout, monkeypatch):
    """A conv before a tiling max-pool emits only the pixels the pool's windows cover,
    window-major, and the pool reads its offsets as blocks: the loss and every gradient
    are those of every pixel in NHWC order, with exact ties among positives and all-zero
    windows, on a short batch (4 images in buffers for 5); for the first conv (no input
    gradient) and for one inside the net (its input gradient through col2im), in X_col's
    transposed layout and as rows."""
    if layout == "rows":
        monkeypatch.setattr(numpy_layers, "PER_OFFSET_CHANNELS", 0)
    net = Net(
        "c",
        (Conv2D(3, 2), MaxPool2D(2), Conv2D(3, 2), Conv2D(4, 2), MaxPool2D(2), Flatten(),
         Dense(4, "softmax")),
    )  # fmt: skip
    params = _params(net, shape)
    params["b1"][:] = params["b3"][:] = -0.5  # many conv outputs negative: ties at 0
    rng = np.random.default_rng(4)
    x = np.round(rng.random((4, *shape)), 1)  # coarse values: exact ties after the conv
    y = rng.integers(0, 4, 4)
    onehot = numpy_layers.one_hot(y, 4, np.float64)
    major = numpy_layers.Model(net, shape, 5, np.float64)
    shapes = net.shapes(shape)
    covers = [shapes[i][0] == 2 * shapes[i + 1][0] for i in (1, 4)]  # each pool's input
    assert covers == [shape[0] % 2 == 1] * 2  # both pools, or neither, leave a border
    for conv, pool, i in ((major.ops[0], major.ops[1], 2), (major.ops[3], major.ops[4], 5)):
        assert conv.grid == (2, 2, *shapes[i][:2]) and pool.window_major
        assert conv.transposed == (layout == "transposed")
    assert major.ops[3].need_dx
    monkeypatch.setattr(numpy_layers, "WINDOW_MAJOR", False)
    plain = numpy_layers.Model(net, shape, 5, np.float64)
    assert all(op.grid is None for op in plain.ops if isinstance(op, numpy_layers.Conv2DOp))
    for model in (major, plain):
        model.backward(params, x, onehot, 1 / 4)
    assert (major.ops[0].y <= 0).mean() > 0.3 and (major.ops[3].y <= 0).mean() > 0.3
    np.testing.assert_allclose(major.grad, plain.grad, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        major.evaluate(params, x, y), plain.evaluate(params, x, y), rtol=1e-13
    )


@pytest.mark.parametrize("in_shape", [(6, 8, 3), (7, 9, 2)], ids=["covers", "leaves-a-border"])
def test_a_window_major_pool_routes_ties_as_the_nhwc_pool(in_shape):
    """Many ties (values in {0, 1, 2}): the pool taking window-major input gives the
    maxima and, at the covered pixels, the input gradient of the NHWC pool (itself
    checked against PyTorch's above); the first maximum in row-major order wins."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, (2, *in_shape)).astype(np.float64)
    layer = MaxPool2D(2)
    out_shape = layer.out_shape(in_shape)
    (hp, wp, c), n = out_shape, len(x)
    dy = rng.normal(0, 1, (n, *out_shape))

    def major(a):  # (N, H, W, C) -> the covered pixels as (N, 2, 2, Hp, Wp, C)
        return a[:, : 2 * hp, : 2 * wp].reshape(n, hp, 2, wp, 2, c).transpose(0, 2, 4, 1, 3, 5)

    plain = numpy_layers.MaxPool2DOp(layer, (), in_shape, out_shape, 2, np.float64, True)
    blocks = numpy_layers.MaxPool2DOp(layer, (), in_shape, out_shape, 2, np.float64, True)
    blocks.take_window_major(2)
    y = plain.forward(x, {}).copy()
    np.testing.assert_array_equal(blocks.forward(np.ascontiguousarray(major(x)), {}), y)
    dx = plain.backward(dy.copy(), {}, {})
    np.testing.assert_array_equal(blocks.backward(dy.copy(), {}, {}), major(dx))


# --- chunked passes (numpy_layers.pass_rows) -------------------------------------------

DROPPED = Net(
    "dropped",
    (
        Conv2D(3, 3, padding="same"),
        MaxPool2D(2),
        Flatten(),
        Dense(6),
        nets.Dropout(0.5),
        Dense(4, "softmax"),
    ),
)


@pytest.mark.parametrize(
    ("net", "shape"),
    [(ODD, ODD_SHAPE), (DROPPED, ODD_SHAPE), (CATALOG["cnn-small"], MNIST)],
    ids=["odd", "dropout", "cnn-small"],
)
def test_a_batch_in_chunks_gives_the_whole_batch_gradients(net, shape):
    """7 images in passes of 3 (3, 3, 1): the summed gradients of the whole batch, its
    keep-masks sliced with it; a second batch sees nothing of the first's chunks."""
    params = _params(net, shape)
    rng = np.random.default_rng(3)
    x = rng.random((7, *shape))
    onehot = numpy_layers.one_hot(rng.integers(0, net.n_classes, 7), net.n_classes, np.float64)
    whole = numpy_layers.Model(net, shape, 7, np.float64)
    keep = [rng.random((7, *op.y.shape[1:])) > 0.5 for op in whole.dropouts] or None
    whole.backward(params, x, onehot, 1 / 7, keep)
    chunked = numpy_layers.Model(net, shape, 3, np.float64)
    for _ in range(2):
        chunked.backward(params, x, onehot, 1 / 7, keep)
        for name, grad in whole.grads.items():
            np.testing.assert_allclose(chunked.grads[name], grad, rtol=1e-12, atol=1e-15)


def test_batch_norm_and_mixed_precision_take_their_batch_whole():
    """Their statistics and rounding are the whole batch's: no chunks, and a batch larger
    than the passes is refused rather than taken in chunks."""
    normed = Net("normed", (Flatten(), Dense(5, "linear"), nets.BatchNorm(), Dense(3, "softmax")))
    assert numpy_layers.pass_rows(normed, (4, 4, 1), 10**6, np.float32) == 10**6
    mlp = CATALOG["mlp"]
    assert numpy_layers.pass_rows(mlp, MNIST, 10**6, np.float32, "bfloat16") == 10**6
    model = numpy_layers.Model(normed, (4, 4, 1), 3, np.float64)
    x = np.random.default_rng(0).random((5, 4, 4, 1))
    with pytest.raises(ValueError, match="batch norm or under mixed precision"):
        model.backward(_params(normed, (4, 4, 1)), x, np.eye(3)[[0, 1, 2, 0, 1]], 0.2)


def test_pass_rows_keeps_a_pass_within_chunk_bytes(monkeypatch):
    """The fewest passes whose input rows and buffers fit in base.CHUNK_BYTES, all of one size
    but the last; the study's MLP at batch 512 in one pass; at least one image a pass."""
    for net in CATALOG.values():
        for backward in (True, False):
            one = numpy_layers.Model(net, MNIST, 1, np.float32, backward=backward)
            per_row = one.row_bytes + 4 * 784
            for batch in (32, 128, 512, 60_000):
                rows = numpy_layers.pass_rows(net, MNIST, batch, np.float32, backward=backward)
                passes = -(-batch // rows)
                assert rows * per_row <= base.CHUNK_BYTES or rows == 1
                # one pass fewer would not fit: its passes would hold more images
                if passes > 1:
                    fewer = -(-batch // (passes - 1))
                    assert fewer * per_row > base.CHUNK_BYTES, (net.name, batch, backward)
                # equal passes: the last is short by less than one image per pass
                assert batch - (passes - 1) * rows > rows - passes, (net.name, batch)
    assert numpy_layers.pass_rows(CATALOG["mlp"], MNIST, 512, np.float32) == 512
    assert numpy_layers.pass_rows(CATALOG["cnn"], MNIST, 128, np.float32) < 128
    monkeypatch.setattr(base, "CHUNK_BYTES", 1)
    assert numpy_layers.pass_rows(CATALOG["cnn"], MNIST, 128, np.float32) == 1


def test_an_evaluation_model_has_no_backward_pass():
    """backward=False: the training model's loss and accuracy, no backward buffers."""
    params = _params(ODD, ODD_SHAPE)
    rng = np.random.default_rng(4)
    x, y = rng.random((9, *ODD_SHAPE)), rng.integers(0, 4, 9)
    evaluation = numpy_layers.Model(ODD, ODD_SHAPE, 4, np.float64, backward=False)
    trained = numpy_layers.Model(ODD, ODD_SHAPE, 4, np.float64)
    assert evaluation.evaluate(params, x, y) == pytest.approx(
        trained.evaluate(params, x, y), rel=1e-12
    )
    assert evaluation.row_bytes < trained.row_bytes
    with pytest.raises(ValueError, match="built for evaluation"):
        evaluation.backward(params, x, numpy_layers.one_hot(y, 4, np.float64), 1 / 9)


@pytest.mark.parametrize("k", [1, 2, 10, 33])
def test_row_max_is_numpys_max(k):
    """Column by column up to FEW_COLUMNS, NumPy's reduction beyond: the same numbers."""
    z = np.random.default_rng(k).standard_normal((37, k)).astype(np.float32)
    out = np.empty((37, 1), np.float32)
    assert numpy_layers.row_max(z, out) is out
    np.testing.assert_array_equal(out[:, 0], z.max(axis=1))
