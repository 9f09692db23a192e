"""The MLP in plain NumPy: forward and backward passes written out, no autodiff.

The passes follow the study's equations (1)-(12) (section 4.1). Speed comes from
doing every step with a few in-place array operations on buffers allocated once per
run, so a step at batch size 32 costs little beyond its three matrix products:

- each mini-batch is gathered by the epoch's permutation into a preallocated
  buffer, where it is still in cache for the matrix products that read it;
- labels are one-hot encoded once, so delta2 = y_hat - y_onehot is one subtraction;
- the 1/b of the batch mean and the learning rate are folded into delta2 (one small
  multiplication), so each gradient product already is the SGD update lr * dL/dW.

Same functions, same order, as ``tensorflow_mlp.py``.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from .base import LAYER_SIZES, PARAM_NAMES, RunResult, SharedStart, TrainSpec
from .loop import EpochCallback, run_epochs

#: Rows per chunk when evaluating a whole data set (bounds the evaluation's memory).
EVAL_CHUNK = 4096
DEFAULT_OPTIONS = {"dtype": "float32"}


def set_threads(n: int) -> dict[str, int]:
    """Limit every BLAS/OpenMP pool NumPy has loaded to ``n`` threads; return them."""
    threadpool_limits(limits=n)
    return {
        f"{pool['internal_api']}": pool["num_threads"]
        for pool in threadpool_info()
        if pool["user_api"] in ("blas", "openmp")
    }


def start(spec: TrainSpec, dtype=np.float32) -> SharedStart:
    """The run's initial parameters and epoch permutations.

    With ``shared_start`` these are the shared ones. Without, NumPy draws its own
    from an independent stream of the same ``(seed, trial)``.
    """
    stream = None if spec.shared_start else "numpy"
    return SharedStart(spec.seed, spec.trial, stream=stream, dtype=dtype)


class _Buffers:
    """Every array one training step writes, allocated once for the largest batch."""

    def __init__(self, params: dict[str, np.ndarray], rows: int):
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
        self.grads = {name: np.empty_like(params[name]) for name in PARAM_NAMES}

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


def gradients(params, x, y):
    """Mean cross-entropy of the batch ``(x, y)`` and its gradients (dict like ``params``).

    Works in the dtype of ``params`` (float64 for finite-difference checks).
    """
    dtype = params["W1"].dtype
    x = np.ascontiguousarray(x, dtype=dtype)
    loss, _ = evaluate(params, x, y)
    buf = _Buffers(params, len(x))
    _backward(params, x, _one_hot(y, dtype), 1.0 / len(x), buf)
    return loss, {name: buf.grads[name].copy() for name in PARAM_NAMES}


def evaluate(params, x, y, chunk: int = EVAL_CHUNK) -> tuple[float, float]:
    """Mean cross-entropy (6) and accuracy of ``params`` on ``(x, y)``, in chunks.

    The loss uses log-softmax, logsumexp(z2) - z2[y] on the shifted logits: no log(0).
    """
    rows = min(chunk, len(x))
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


def train(spec: TrainSpec, x_train, y_train, x_test, y_test, on_epoch: EpochCallback | None = None):
    """Train the network with mini-batch SGD as ``spec`` says; return a ``RunResult``."""
    options = {**DEFAULT_OPTIONS, **{k: v for k, v in spec.options.items() if k in DEFAULT_OPTIONS}}
    dtype = np.dtype(options["dtype"])
    run_start = start(spec, dtype)
    params = run_start.params
    x_train = np.ascontiguousarray(x_train, dtype=dtype)
    x_test = np.ascontiguousarray(x_test, dtype=dtype)
    onehot = _one_hot(y_train, dtype)
    n, batch = len(x_train), spec.batch_size
    buf = _Buffers(params, min(batch, n))
    bounds = [(s, min(s + batch, n)) for s in range(0, n, batch)]
    scales = {e - s: spec.learning_rate / (e - s) for s, e in bounds}  # lr / b
    updates = [(params[name], buf.grads[name]) for name in PARAM_NAMES]

    def shuffle(epoch):
        return run_start.permutation(n)

    def train_epoch(order):
        for s, e in bounds:  # mode="clip" skips the bounds check that forces a copy
            xb = np.take(x_train, order[s:e], axis=0, out=buf.x[: e - s], mode="clip")
            yb = np.take(onehot, order[s:e], axis=0, out=buf.onehot[: e - s], mode="clip")
            _backward(params, xb, yb, scales[e - s], buf)
            for p, g in updates:  # (12) W <- W - lr dL/dW (lr already in g)
                p -= g

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
