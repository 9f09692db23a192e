"""The MLP in plain NumPy: forward and backward passes written out, no autodiff.

The passes follow the study's equations (1)-(12) (section 4.1). Speed comes from
doing every step with a few in-place array operations on buffers allocated once per
run, so a step at batch size 32 costs little beyond its three matrix products:

- each mini-batch is gathered by the epoch's permutation into a preallocated
  buffer, where it is still in cache for the matrix products that read it;
- labels are one-hot encoded once, so delta2 = y_hat - y_onehot is one subtraction;
- the 1/b of the batch mean and the learning rate are folded into delta2 (one small
  multiplication), so each gradient product already is the SGD update lr * dL/dW;
- the four parameter arrays are views into one flat vector, and so are their gradients,
  so an optimizer updates all 50,890 numbers with a few in-place passes over one array
  (``SGD``, ``Momentum``, ``Adam`` below: equations in their docstrings).

Implements ``base.Backend``, like every other backend module.
"""

from __future__ import annotations

import math

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from . import info
from .base import LAYER_SIZES, PARAM_NAMES, Params, RunResult, SharedStart, TrainSpec
from .loop import EpochCallback, run_epochs

#: Rows per chunk when evaluating a whole data set (bounds the evaluation's memory).
EVAL_CHUNK = 4096


def set_threads(n: int) -> dict[str, int]:
    """Limit every BLAS/OpenMP pool NumPy has loaded to ``n`` threads; return them."""
    threadpool_limits(limits=n)
    return {
        f"{pool['internal_api']}": pool["num_threads"]
        for pool in threadpool_info()
        if pool["user_api"] in ("blas", "openmp")
    }


def start(spec: TrainSpec) -> SharedStart | None:
    """The run's initial parameters and epoch permutations.

    With ``start="shared"`` these are the shared ones; with "independent", NumPy draws
    its own from an independent stream of the same ``(seed, trial)``. The weights are the
    float32 draw in every ``dtype`` (``train`` casts them), as every backend takes the
    shared start: a float64 run starts from the same numbers as a float32 one.
    """
    stream = None if spec.shared else "numpy"
    return SharedStart(spec.seed, spec.trial, stream=stream)


def _flat(arrays: Params, dtype) -> tuple[np.ndarray, Params]:
    """One flat vector holding ``arrays`` (copied in), and views of it by name."""
    flat = np.empty(sum(arrays[name].size for name in PARAM_NAMES), dtype)
    views, offset = {}, 0
    for name in PARAM_NAMES:
        view = flat[offset : offset + arrays[name].size].reshape(arrays[name].shape)
        view[...] = arrays[name]
        views[name] = view
        offset += view.size
    return flat, views


class _Buffers:
    """Every array one training step writes, allocated once for the largest batch.

    ``grads`` are views into the flat vector ``grad``, laid out like ``_flat``'s params.
    """

    def __init__(self, params: Params, rows: int):
        n_in, n_hidden, n_out = LAYER_SIZES
        dtype = params["W1"].dtype
        self.x = np.empty((rows, n_in), dtype)  # the gathered mini-batch
        self.onehot = np.empty((rows, n_out), dtype)
        self.z1 = np.empty((rows, n_hidden), dtype)  # pre-activation, then a1 in place
        self.z2 = np.empty((rows, n_out), dtype)  # logits, then y_hat, then delta2
        self.d1 = np.empty((rows, n_hidden), dtype)  # delta1
        self.mask = np.empty((rows, n_hidden), bool)  # 1(z1 > 0)
        self.row_max = np.empty((rows, 1), dtype)
        self.row_sum = np.empty((rows, 1), dtype)
        self.grad, self.grads = _flat(params, dtype)

    def view(self, rows: int):
        """The buffers for a batch of ``rows`` (a short last batch uses their first rows)."""
        return self.z1[:rows], self.z2[:rows], self.d1[:rows], self.mask[:rows]


def _forward(params, x, z1, z2, row_max):
    """Equations (1)-(3), in place: z1 becomes a1 = ReLU(x W1 + b1), z2 the logits
    a1 W2 + b2 shifted by their row max (softmax and log-softmax are unchanged by
    the shift, and exp of a number <= 0 never overflows)."""
    np.matmul(x, params["W1"], out=z1)
    z1 += params["b1"]
    np.maximum(z1, 0, out=z1)
    np.matmul(z1, params["W2"], out=z2)
    z2 += params["b2"]
    np.max(z2, axis=1, keepdims=True, out=row_max)
    z2 -= row_max


def _backward(params, x, onehot, scale, buf: _Buffers):
    """Equations (4) and (7)-(10) on the batch ``x``: ``buf.grads`` gets ``scale`` times
    the summed per-sample gradients (``scale = 1/b`` gives dL/dW of the mean loss)."""
    rows = len(x)
    z1, z2, d1, mask = buf.view(rows)
    row_max, row_sum = buf.row_max[:rows], buf.row_sum[:rows]
    g = buf.grads
    _forward(params, x, z1, z2, row_max)
    a1 = z1
    np.exp(z2, out=z2)  # (4) softmax of the shifted logits
    np.sum(z2, axis=1, keepdims=True, out=row_sum)
    z2 /= row_sum
    z2 -= onehot  # (7) delta2 = y_hat - y_onehot
    z2 *= scale
    d2 = z2
    np.matmul(a1.T, d2, out=g["W2"])  # (8)
    np.sum(d2, axis=0, out=g["b2"])
    np.matmul(d2, params["W2"].T, out=d1)  # (9)
    np.greater(a1, 0, out=mask)
    d1 *= mask
    np.matmul(x.T, d1, out=g["W1"])  # (10)
    np.sum(d1, axis=0, out=g["b1"])


def gradients(params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, Params]:
    """Mean cross-entropy of the batch ``(x, y)`` and its gradients (dict like ``params``).

    Works in the dtype of ``params`` (float64 for finite-difference checks).
    """
    dtype = params["W1"].dtype
    x = np.ascontiguousarray(x, dtype=dtype)
    loss, _ = evaluate(params, x, y)
    buf = _Buffers(params, len(x))
    _backward(params, x, _one_hot(y, dtype), 1.0 / len(x), buf)
    return loss, {name: buf.grads[name].copy() for name in PARAM_NAMES}


def evaluate(params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy (6) and accuracy of ``params`` on ``(x, y)``, in chunks of
    ``EVAL_CHUNK`` rows.

    The loss uses log-softmax, logsumexp(z2) - z2[y] on the shifted logits: no log(0).
    """
    x = np.asarray(x, dtype=params["W1"].dtype)
    y = np.asarray(y)
    rows = min(EVAL_CHUNK, len(x))
    buf = _Buffers(params, rows)
    exp = np.empty_like(buf.z2)
    loss_sum, correct = 0.0, 0
    for start_row in range(0, len(x), rows):
        xb, yb = x[start_row : start_row + rows], y[start_row : start_row + rows]
        z1, z2, _, _ = buf.view(len(xb))
        _forward(params, xb, z1, z2, buf.row_max[: len(xb)])
        log_norm = np.log(np.exp(z2, out=exp[: len(xb)]).sum(axis=1))
        picked = np.take_along_axis(z2, yb[:, None], axis=1)[:, 0]
        loss_sum += float(np.sum(log_norm - picked, dtype=np.float64))
        correct += int(np.count_nonzero(z2.argmax(axis=1) == yb))
    return loss_sum / len(x), correct / len(x)


class SGD:
    """Plain mini-batch SGD, the study's equation (12)::

        w <- w - lr g

    ``g`` arrives as lr * g (``grad_scale``: the learning rate is folded into delta2),
    so a step is one in-place pass over the flat parameter vector.
    """

    def __init__(self, w: np.ndarray, g: np.ndarray, lr: float, settings: dict):
        self.w, self.g = w, g
        self.grad_scale = lr

    def step(self) -> None:
        self.w -= self.g


class Momentum:
    """SGD with momentum, heavy ball or Nesterov, in Keras' convention (velocity ``v``
    starts at 0, ``m`` is the ``momentum`` setting)::

        v <- m v - lr g
        w <- w + v                  heavy ball
        w <- w + m v - lr g         Nesterov (with the new v)

    PyTorch and optax keep ``b = -v / lr`` instead (``b <- m b + g``, ``w <- w - lr b``;
    Nesterov ``w <- w - lr (g + m b)``): for a constant learning rate the two are the
    same sequence of weights (docs/backends.md). ``g`` arrives as lr * g, so heavy ball
    is three in-place passes, Nesterov five (one into a preallocated buffer).
    """

    def __init__(self, w: np.ndarray, g: np.ndarray, lr: float, settings: dict):
        self.w, self.g = w, g
        self.grad_scale = lr
        self.m = float(settings["momentum"])
        self.nesterov = bool(settings["nesterov"])
        self.v = np.zeros_like(w)
        self.tmp = np.empty_like(w) if self.nesterov else None

    def step(self) -> None:
        w, g, v = self.w, self.g, self.v
        v *= self.m
        v -= g
        if self.nesterov:
            np.multiply(v, self.m, out=self.tmp)
            w -= g
            w += self.tmp
        else:
            w += v


class Adam:
    """Adam (Kingma & Ba) in Keras' formulation, epsilon added to sqrt(v) before the
    bias correction (t counts steps from 1; m, v start at 0)::

        m <- b1 m + (1 - b1) g
        v <- b2 v + (1 - b2) g^2
        w <- w - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

    Computed with the moments kept as m' = m / (1 - b1) and v' = v / (1 - b2), so the
    constant factors leave the per-element passes and the bias corrections become one
    scalar per step::

        m' <- b1 m' + g
        v' <- b2 v' + g^2
        w  <- w - a_t m' / (sqrt(v') + eps'),   eps' = eps / sqrt(1 - b2),
              a_t = lr (1 - b1) sqrt(1 - b2^t) / ((1 - b1^t) sqrt(1 - b2))

    ``g`` arrives as the plain gradient (``grad_scale`` 1: Adam's step does not scale
    with g). Ten in-place passes over the flat vector, none allocating.
    """

    def __init__(self, w: np.ndarray, g: np.ndarray, lr: float, settings: dict):
        self.w, self.g = w, g
        self.grad_scale = 1.0
        self.lr = lr
        self.b1, self.b2 = float(settings["beta_1"]), float(settings["beta_2"])
        # Python floats, not NumPy scalars: a float64 NumPy scalar would make every
        # pass over a float32 vector compute in float64 through a cast buffer (NEP 50).
        self.eps = float(settings["epsilon"]) / math.sqrt(1.0 - self.b2)
        self.m, self.v, self.tmp = np.zeros_like(w), np.zeros_like(w), np.empty_like(w)
        self.t = 0

    def step(self) -> None:
        w, g, m, v, tmp = self.w, self.g, self.m, self.v, self.tmp
        self.t += 1
        b1, b2, t = self.b1, self.b2, self.t
        a = self.lr * (1 - b1) * math.sqrt(1 - b2**t) / ((1 - b1**t) * math.sqrt(1 - b2))
        m *= b1
        m += g
        v *= b2
        np.multiply(g, g, out=tmp)
        v += tmp
        np.sqrt(v, out=tmp)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= a
        w -= tmp


#: optimizer name (``optimizers.OPTIMIZERS``) -> its NumPy implementation.
OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


def train(
    spec: TrainSpec,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    on_epoch: EpochCallback | None = None,
) -> RunResult:
    """Train the network with mini-batch ``spec.optimizer`` as ``spec`` says."""
    options = info("numpy").resolve_options(spec.options)
    dtype = np.dtype(options["dtype"])
    run_start = start(spec)
    flat, params = _flat(run_start.params, dtype)
    x_train = np.ascontiguousarray(x_train, dtype=dtype)
    x_test = np.ascontiguousarray(x_test, dtype=dtype)
    onehot = _one_hot(y_train, dtype)
    n, batch = len(x_train), spec.batch_size
    buf = _Buffers(params, min(batch, n))
    optimizer = OPTIMIZERS[spec.optimizer](
        flat, buf.grad, spec.learning_rate, spec.optimizer_settings
    )
    bounds = [(s, min(s + batch, n)) for s in range(0, n, batch)]
    scales = {e - s: optimizer.grad_scale / (e - s) for s, e in bounds}  # (lr) / b
    step = optimizer.step

    def shuffle(epoch):
        return run_start.permutation(n)

    def train_epoch(order):
        for s, e in bounds:  # mode="clip" skips the bounds check that forces a copy
            xb = np.take(x_train, order[s:e], axis=0, out=buf.x[: e - s], mode="clip")
            yb = np.take(onehot, order[s:e], axis=0, out=buf.onehot[: e - s], mode="clip")
            _backward(params, xb, yb, scales[e - s], buf)
            step()

    def evaluate_epoch():
        loss, accuracy = evaluate(params, x_train, y_train)
        return loss, accuracy, evaluate(params, x_test, y_test)[1]

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        result = run_epochs(spec, shuffle, train_epoch, evaluate_epoch, on_epoch, options)
    result.params = {name: params[name].copy() for name in PARAM_NAMES}
    return result


def _one_hot(y, dtype) -> np.ndarray:
    out = np.zeros((len(y), LAYER_SIZES[-1]), dtype)
    out[np.arange(len(y)), y] = 1
    return out
