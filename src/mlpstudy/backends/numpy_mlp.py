"""Any network of ``mlpstudy.nets`` in plain NumPy: forward and backward passes
written out, no autodiff (``numpy_layers``: each layer's equations in its docstrings;
for the study's MLP they are its equations (1)-(12), section 4.1).

Speed comes from doing every step with a few in-place array operations on buffers
allocated once per run, so a step costs little beyond its matrix products:

- each mini-batch is gathered by the epoch's permutation into a preallocated
  buffer, where it is still in cache for the matrix products that read it;
- a batch whose pass would touch more than ``base.CHUNK_BYTES`` (cnn's from batch 32,
  cnn-small's from 64; no MLP's of the catalog up to 512) is taken in equal chunks
  whose layer buffers stay in cache from one layer to the next, their gradients summed;
  the evaluation likewise (``numpy_layers.pass_rows``);
- labels are one-hot encoded once, so delta = y_hat - y_onehot is one subtraction;
- the 1/b of the batch mean and the learning rate are folded into the output layer's
  delta (one small multiplication), so each gradient product already is the SGD update
  lr * dL/dW;
- the parameter arrays are views into one flat vector, and so are their gradients, so
  an optimizer updates every number (50,890 for the MLP) with a few in-place passes over
  one array (``SGD``, ``Momentum``, ``Adam`` below: equations in their docstrings).

Regularisation (``mlpstudy.regularization``), written out like the rest:

- ``l2``: after the backward pass each kernel's gradient gains lambda W (times the
  gradient's scale: lr for SGD and momentum, whose learning rate is folded in), one
  multiply and one add per kernel into a preallocated buffer; the optimizer sees the sum.
- ``decoupled``: before the optimizer's step each kernel is scaled by (1 - lr wd) in
  place (the optimizers' updates do not depend on the weights, so before or after the
  step is the same formula).
- ``dropout``: each epoch's keep-masks (``SharedStart.keep_masks``: the shared ones, or
  NumPy's own stream's with an independent start) are sliced per step like the batch.
- ``batchnorm``: the running statistics live outside the flat vector (no gradient, no
  optimizer), updated after each step's backward pass (``Model.update_statistics``).

Precision: ``float32`` and ``float64`` end to end (parameters, data, arithmetic);
``bfloat16`` is mixed precision written out (``numpy_layers``, "Mixed precision"):
float32 weights and optimizer, every product on bfloat16-rounded operands with float32
accumulation, every layer output and gradient rounded to bfloat16; ``float16`` the same
with float16 rounding and no loss scaling (NumPy provides none).

Implements ``base.Backend``, like every other backend module.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from mlpstudy.cores import LoopCores
from mlpstudy.nets import Net

from . import info, numpy_layers
from .base import EpochCallback, KeepMasks, Params, RunResult, SharedStart, TrainSpec
from .loop import run_epochs


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
    float32 draw in every precision (``train`` casts them), as every backend takes the
    shared start: a float64 run starts from the same numbers as a float32 one.
    """
    return SharedStart.of(spec, stream=None if spec.shared else "numpy")


def gradients(
    net: Net, params: Params, x: np.ndarray, y: np.ndarray, keep: KeepMasks | None = None
) -> tuple[float, Params]:
    """Mean cross-entropy of the batch ``(x, y)`` for ``net`` and its gradients (of
    ``net.param_names``), in the dtype of ``params`` (float64 for finite-difference
    checks); batch norms on the batch's statistics, dropouts applying ``keep``."""
    return numpy_layers.gradients(net, params, x, y, keep)


def evaluate(net: Net, params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``net`` at ``params`` on ``(x, y)``, in chunks
    (bounded memory); the loss is logsumexp(z) - z[y] on the shifted logits: no log(0)."""
    return numpy_layers.evaluate(net, params, x, y)


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

    def step_size(self, t: int) -> float:
        """a_t of step ``t`` (the bias corrections; a scalar, once per step)."""
        b1, b2 = self.b1, self.b2
        return self.lr * (1 - b1) * math.sqrt(1 - b2**t) / ((1 - b1**t) * math.sqrt(1 - b2))

    def step(self) -> None:
        w, g, m, v, tmp = self.w, self.g, self.m, self.v, self.tmp
        self.t += 1
        b1, b2 = self.b1, self.b2
        a = self.step_size(self.t)
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
    cores: LoopCores | None = None,
) -> RunResult:
    """Train the network with mini-batch ``spec.optimizer`` as ``spec`` says."""
    options = info("numpy").resolve_options(spec.options)
    dtype = spec.param_dtype
    net, shape = spec.net, spec.input_shape
    run_start = start(spec)
    trained = {k: run_start.params[k] for k in net.param_names}
    flat, params = numpy_layers.flat(trained, dtype)
    params.update({k: run_start.params[k].astype(dtype) for k in net.state_names})
    # Rows of images (N, H, W, C) as the net takes them: views of the contiguous arrays.
    x_train = np.ascontiguousarray(x_train, dtype=dtype).reshape(len(x_train), *shape)
    x_test = np.ascontiguousarray(x_test, dtype=dtype).reshape(len(x_test), *shape)
    onehot = numpy_layers.one_hot(y_train, net.n_classes, dtype)
    n, batch = len(x_train), spec.batch_size
    compute = spec.compute
    model = numpy_layers.trainer(net, shape, min(batch, n), dtype, compute)
    batch_x = np.empty((min(batch, n), *shape), dtype)
    batch_onehot = np.empty((min(batch, n), net.n_classes), dtype)
    optimizer = OPTIMIZERS[spec.optimizer](
        flat, model.grad, spec.learning_rate, spec.optimizer_settings
    )
    bounds = [(s, min(s + batch, n)) for s in range(0, n, batch)]
    scales = {e - s: optimizer.grad_scale / (e - s) for s, e in bounds}  # (lr) / b
    step = _regularised_step(spec, optimizer, params, model)

    def shuffle(epoch):
        order = run_start.permutation(n)
        return order, run_start.keep_masks(n)

    def train_epoch(data):
        order, masks = data
        for s, e in bounds:  # mode="clip" skips the bounds check that forces a copy
            xb = np.take(x_train, order[s:e], axis=0, out=batch_x[: e - s], mode="clip")
            yb = np.take(onehot, order[s:e], axis=0, out=batch_onehot[: e - s], mode="clip")
            keep = [mask[s:e] for mask in masks] if masks else None
            model.backward(params, xb, yb, scales[e - s], keep)
            step()

    rows = max(len(x_train), len(x_test))
    evaluator = numpy_layers.evaluator(net, shape, rows, dtype, compute)

    def evaluate_epoch():  # as the model trains: under mixed precision, the bfloat16 model
        loss, accuracy = evaluator.evaluate(params, x_train, y_train)
        return loss, accuracy, evaluator.evaluate(params, x_test, y_test)[1]

    penalty = (lambda: spec.penalty(params)) if spec.l2 else None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        result = run_epochs(
            spec, shuffle, train_epoch, evaluate_epoch, on_epoch, options, cores, penalty
        )
    result.params = {name: params[name].copy() for name in net.weight_names}
    return result


def _regularised_step(spec: TrainSpec, optimizer, params: Params, model) -> Callable[[], None]:
    """The step after a backward pass: the ``l2`` gradient (lambda W, at the gradient's
    scale) into each kernel's gradient, the ``decoupled`` decay (W *= 1 - lr wd), the
    optimizer's step, the batch norms' running statistics; just the optimizer's step
    when there is none of these."""
    kernels = [(params[k], model.grads[k]) for k in spec.net.kernel_names]
    l2 = spec.l2 * optimizer.grad_scale
    decay = 1.0 - spec.learning_rate * spec.weight_decay
    buffers = [np.empty_like(w) for w, _ in kernels] if l2 else []
    if not (l2 or spec.weight_decay or model.norms):
        return optimizer.step

    def step():
        for (w, g), tmp in zip(kernels, buffers, strict=False):
            np.multiply(w, l2, out=tmp)
            g += tmp
        if spec.weight_decay:
            for w, _ in kernels:
                w *= decay
        optimizer.step()
        model.update_statistics(params)

    return step
