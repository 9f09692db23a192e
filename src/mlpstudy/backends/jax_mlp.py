"""Any network of ``mlpstudy.nets`` in JAX, as a JAX user writes it: pure functions of a
parameter pytree.

The parameters are a dict ``{"W1", "b1", "W2", "b2", ...}`` of device arrays in the
layout the forward pass computes with, the canonical one (Keras' and Flax's: dense
``x @ W``, W (in, out); conv kernels HWIO on NHWC images), so the shared start needs no
conversion. ``forward`` walks the net's layers: ``jax.lax.conv_general_dilated`` with the
net's explicit padding (TensorFlow's 'same' convention), ``jax.lax.reduce_window`` for
max-pooling, a reshape for flatten (NHWC order), a matrix product for dense. No flax:
one forward function over the layer list is a dozen lines, while flax would add a
dependency and a parameter tree of its own to convert to and from. The loss is
``optax``'s softmax cross-entropy on the logits: the net's softmax output layer sits
inside the loss, where it is computed as log-softmax. ``jax.value_and_grad``
differentiates it, an ``optax`` optimizer updates the parameters, and the whole step is
one ``jax.jit``-compiled function whose parameter and optimizer-state buffers are donated
(updated in place).
The training and test sets become device arrays once per run; each step gathers its
mini-batch inside the compiled step from the epoch's permutation.
The per-epoch loss and accuracies come from one compiled call on each whole set, or
one per chunk of ``eval_rows`` rows where one call would hold more than ``base.EVAL_BYTES``
of layer outputs (CNNs).

Option ``scan_epoch`` (default false): one compiled function runs the whole epoch with
``jax.lax.scan`` over the full batches plus one step for a short last batch, so
Python dispatches once per epoch instead of once per step.

Compilation happens on the first call of each compiled function, inside the first
epoch, so ``first_epoch_s`` carries it (as Keras' tracing). It is also timed apart,
from ``jax.monitoring``'s compile events (tracing, lowering, XLA compilation), as
``metrics["compile_s"]``.

Optimizers (``optax``): ``sgd(lr)``; ``sgd(lr, momentum, nesterov)``, whose trace
``t = m t + g``, ``w -= lr t`` equals Keras' ``v = m v - lr g``, ``w += v`` with
``v = -lr t`` for a constant learning rate; ``adam(lr, b1, b2, eps)``. optax adds
``eps`` to sqrt(v_hat) (Kingma & Ba's Algorithm 1, as PyTorch); Keras, whose number the
config's ``epsilon`` is, adds it to sqrt(v) before the bias correction, which is
optax's form with ``eps_t = epsilon / sqrt(1 - beta_2^t)``. ``optax.inject_hyperparams``
passes exactly that schedule as optax's ``eps``, so all backends run the same Adam
(at step 1 with beta_2 = 0.999, optax's plain ``eps=1e-7`` is 32x smaller than Keras'
effective one: 4 steps at lr 1e-3 from the shared start on random pixels ended up to
1.9e-3 apart from Keras with it, under 1e-6 with the schedule).

Implements ``base.Backend``, like every other backend module.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from threadpoolctl import threadpool_limits

from mlpstudy import nets
from mlpstudy.cores import LoopCores

from . import info
from .base import (
    EpochCallback,
    Params,
    RunResult,
    SharedStart,
    TrainSpec,
    eval_rows,
    framework_seed,
    model_input,
)
from .loop import run_epochs

#: XLA_FLAGS that keep XLA's CPU backend to one thread (``training.thread_env`` sets them).
_SINGLE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
#: jax.monitoring events whose durations add up to the compile time of a jitted call.
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


def set_threads(n: int) -> dict[str, int]:
    """Ask XLA's CPU backend (and NumPy's BLAS) for ``n`` threads; return what is in effect.

    JAX has no thread-count API (jax-ml/jax#1539). XLA reads ``XLA_FLAGS`` when its CPU
    client starts, at the first JAX operation: for ``n == 1`` this adds the
    single-thread flags if ``mlpstudy.training`` did not. They are not a bound: XLA
    sizes its intra-op pool by the CPUs the process may run on, and a 2048^3 matmul
    used both of this machine's 2 cores with the flags set, one under ``taskset -c 0``.
    The bound that holds is the pinning of ``mlpstudy.cores`` (``pinned_cpus``).
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if n == 1 and _SINGLE_THREAD_FLAGS not in flags:
        os.environ["XLA_FLAGS"] = flags = f"{flags} {_SINGLE_THREAD_FLAGS}".strip()
    threadpool_limits(limits=n)  # NumPy's BLAS, in case anything here uses it
    return {"xla_cpu_multi_thread_eigen": int("--xla_cpu_multi_thread_eigen=false" not in flags)}


def start(spec: TrainSpec) -> SharedStart | None:
    """The shared start, or None: JAX then draws its own weights and batch order with
    ``jax.random`` from a key seeded by ``(seed, trial)`` (see ``own_start``)."""
    return SharedStart.of(spec) if spec.start == "shared" else None


def own_start(spec: TrainSpec) -> tuple[dict[str, jax.Array], jax.Array]:
    """JAX's own start: He-uniform kernels from ``jax.nn.initializers`` (one key each, in
    layer order), zero biases, and the key from which epoch ``e``'s permutation is drawn
    (``fold_in(key, e)``)."""
    shapes = spec.net.param_shapes(model_input(spec.net, spec.input_shape))
    n_kernels = len(spec.net.param_layers)
    *keys, key_shuffle = jax.random.split(jax.random.key(framework_seed(spec)), n_kernels + 1)
    he_uniform = jax.nn.initializers.he_uniform()
    params = {}
    for k, key in enumerate(keys, start=1):
        params[f"W{k}"] = he_uniform(key, shapes[f"W{k}"], jnp.float32)
        params[f"b{k}"] = jnp.zeros(shapes[f"b{k}"], jnp.float32)
    return params, key_shuffle


def forward(net: nets.Net, params, x, compute: str | None = None):
    """The logits of ``x`` (NHWC images, or flat rows for a net that begins with a
    flatten) through the net's layers; the softmax is in ``loss``.

    ``compute="bfloat16"``: mixed precision as a JAX user writes it (jmp's and Flax's
    ``dtype``/``param_dtype`` convention): the parameters and ``x`` are cast to bfloat16
    here, every layer computes in bfloat16, and the logits come back as float32, so the
    loss, the gradients of the (float32) parameters and the optimizer stay float32."""
    if compute is not None:
        params = jax.tree.map(lambda a: a.astype(compute), params)
        x = x.astype(compute)
    logits = _layers(net, params, x)
    return logits if compute is None else logits.astype(jnp.float32)


def _layers(net: nets.Net, params, x):
    k = 0
    for layer in net.layers:
        if isinstance(layer, nets.Flatten):
            x = x.reshape(len(x), -1)
            continue
        if isinstance(layer, nets.MaxPool2D):
            window, stride = (1, *layer.pool, 1), (1, *layer.stride, 1)
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, stride, "VALID")
            continue
        k += 1
        w, b = params[f"W{k}"], params[f"b{k}"]
        if isinstance(layer, nets.Conv2D):
            pads = layer.pads(x.shape[1:])
            dims = ("NHWC", "HWIO", "NHWC")
            x = jax.lax.conv_general_dilated(x, w, layer.stride, pads, dimension_numbers=dims)
            x = x + b
        else:
            x = x @ w + b
        if layer.activation == "relu":
            x = jax.nn.relu(x)
    return x


def loss(net: nets.Net, params, x, y, compute: str | None = None):
    """Mean cross-entropy of softmax(logits) against the integer labels ``y`` (float32
    logits also under ``compute="bfloat16"``)."""
    logits = forward(net, params, x, compute)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def optimizer(spec: TrainSpec) -> optax.GradientTransformation:
    """The ``optax`` optimizer of ``spec`` with the config's numbers (see the module
    docstring for how Adam's epsilon is made Keras')."""
    lr, settings = spec.learning_rate, spec.optimizer_settings
    if spec.optimizer == "sgd":
        return optax.sgd(lr)
    if spec.optimizer == "momentum":
        return optax.sgd(lr, momentum=settings["momentum"], nesterov=settings["nesterov"])
    if spec.optimizer == "adam":
        beta_2, epsilon = settings["beta_2"], settings["epsilon"]

        def keras_epsilon(count):  # count: updates done before this one
            return epsilon / jnp.sqrt(1 - beta_2 ** (count + 1))

        return optax.inject_hyperparams(optax.adam)(
            learning_rate=lr, b1=settings["beta_1"], b2=beta_2, eps=keras_epsilon
        )
    raise ValueError(f"unknown optimizer {spec.optimizer!r}")


def gradients(net: nets.Net, params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, Params]:
    """Mean cross-entropy of the batch ``(x, y)`` for ``net`` and its gradients, by
    ``jax.value_and_grad``. Works in the dtype of ``params``: float64 inside
    ``jax.enable_x64``."""
    with jax.enable_x64(_is_float64(params)):
        value, grads = _value_and_grad(net, *_device_args(net, params, x, y))
        return float(value), {name: np.asarray(grads[name]) for name in net.param_names}


def evaluate(net: nets.Net, params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``net`` at ``params`` on ``(x, y)``, in one
    compiled call per chunk (``scores``; in the dtype of ``params``, as ``gradients``)."""
    with jax.enable_x64(_is_float64(params)):
        params, x, y = _device_args(net, params, x, y)
        value, correct = scores(net, params, x, y, eval_rows(net, x.shape[1:], x.itemsize))
        return value, correct / len(x)


def train(
    spec: TrainSpec,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    on_epoch: EpochCallback | None = None,
    cores: LoopCores | None = None,
) -> RunResult:
    """Train the network with ``spec``'s optimizer; return a ``RunResult``.

    ``precision="float64"`` runs inside ``jax.enable_x64``: the run computes in float64,
    and the process' other JAX computations keep their float32 default. ``"bfloat16"``
    computes the forward pass in bfloat16 (``forward``) with float32 parameters, loss
    and optimizer state.
    """
    options = info("jax").resolve_options(spec.options)
    with jax.enable_x64(spec.precision == "float64"):
        return _train(spec, options, x_train, y_train, x_test, y_test, on_epoch, cores)


def _train(spec, options, x_train, y_train, x_test, y_test, on_epoch, cores) -> RunResult:
    dtype, net = spec.param_dtype, spec.net
    compute = "bfloat16" if spec.precision == "bfloat16" else None
    shape = model_input(net, spec.input_shape)
    n, batch = len(x_train), spec.batch_size
    run_start = start(spec)
    if run_start is None:
        params, shuffle_key = own_start(spec)
    else:
        params = run_start.params
    params = {name: jnp.asarray(value, dtype) for name, value in params.items()}
    # Device arrays once per run: every compiled call then takes them without a copy.
    x_train, x_test = (
        jax.device_put(np.asarray(x, dtype).reshape(len(x), *shape)) for x in (x_train, x_test)
    )
    y_train, y_test = jnp.asarray(y_train, jnp.int32), jnp.asarray(y_test, jnp.int32)
    rows = eval_rows(net, shape, dtype.itemsize)
    tx = optimizer(spec)
    state = {"params": params, "opt": tx.init(params)}
    step = _make_step(tx, net, compute)
    run_epoch = _make_epoch(step, batch) if options["scan_epoch"] else None
    step = jax.jit(step, donate_argnums=(0, 1))

    def shuffle(epoch):
        if run_start is None:
            return np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n))
        return run_start.permutation(n).astype(np.int32)

    def train_epoch(order):
        params, opt_state = state["params"], state["opt"]
        if run_epoch is not None:
            params, opt_state = run_epoch(params, opt_state, x_train, y_train, jnp.asarray(order))
        else:
            for s in range(0, n, batch):
                params, opt_state = step(params, opt_state, x_train, y_train, order[s : s + batch])
        state["params"], state["opt"] = jax.block_until_ready((params, opt_state))

    def evaluate_epoch():
        loss_value, correct = scores(net, state["params"], x_train, y_train, rows, compute)
        _, test_correct = scores(net, state["params"], x_test, y_test, rows, compute)
        return loss_value, correct / n, test_correct / len(x_test)

    compile_s = []

    def on_compile(event: str, duration: float, **kwargs):
        if event in _COMPILE_EVENTS:
            compile_s.append(duration)

    jax.monitoring.register_event_duration_secs_listener(on_compile)
    try:
        result = run_epochs(spec, shuffle, train_epoch, evaluate_epoch, on_epoch, options, cores)
    finally:
        jax.monitoring.unregister_event_duration_listener(on_compile)
    result.metrics["compile_s"] = sum(compile_s)
    result.params = {name: np.asarray(state["params"][name]) for name in net.param_names}
    return result


def _make_step(tx: optax.GradientTransformation, net: nets.Net, compute: str | None = None):
    """One optimisation step of ``net`` on the rows ``idx`` of ``(x, y)``, a pure function
    (the forward pass in ``compute``, see ``forward``)."""

    def step(params, opt_state, x, y, idx):
        grads = jax.grad(loss, argnums=1)(net, params, x[idx], y[idx], compute)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return step


def _make_epoch(step, batch: int):
    """One compiled epoch: ``lax.scan`` over the full batches of ``order``, then one step
    on the short last batch if there is one (its size is static: one compile per run)."""

    def epoch(params, opt_state, x, y, order):
        full = len(order) // batch * batch
        batches = order[:full].reshape(-1, batch)

        def body(carry, idx):
            return step(*carry, x, y, idx), None

        (params, opt_state), _ = jax.lax.scan(body, (params, opt_state), batches)
        if full < len(order):
            params, opt_state = step(params, opt_state, x, y, order[full:])
        return params, opt_state

    return jax.jit(epoch, donate_argnums=(0, 1))


_value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=1), static_argnums=0)


def _is_float64(params: Params) -> bool:
    return np.asarray(params["W1"]).dtype == np.float64


def _device_args(net: nets.Net, params: Params, x, y):
    """``params``, ``x`` (in the dtype of ``params``) and integer ``y`` as device arrays."""
    params = {name: jnp.asarray(params[name]) for name in net.param_names}
    return params, jnp.asarray(x, params["W1"].dtype), jnp.asarray(y, jnp.int32)


def scores(net: nets.Net, params, x, y, rows: int, compute: str | None = None) -> tuple[float, int]:
    """Mean loss and number of correct predictions on ``(x, y)``: one compiled call on
    the whole set where ``rows`` covers it (the study's MLP), else one per ``rows`` rows
    (chunks' means weighted by their rows); the forward pass in ``compute``."""
    n = len(x)
    if rows >= n:
        value, correct = _scores(net, params, x, y, compute)
        return float(value), int(correct)
    loss, correct = 0.0, 0
    for s in range(0, n, rows):
        value, chunk_correct = _scores(net, params, x[s : s + rows], y[s : s + rows], compute)
        loss, correct = loss + float(value) * min(rows, n - s), correct + int(chunk_correct)
    return loss / n, correct


@functools.partial(jax.jit, static_argnums=(0, 4))
def _scores(net: nets.Net, params, x, y, compute=None):
    """Mean loss and the number of correct predictions on the whole of ``(x, y)``, one
    compiled call (the count, so the accuracy is an exact fraction, as elsewhere)."""
    logits = forward(net, params, x, compute)
    value = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return value, (jnp.argmax(logits, axis=1) == y).sum()
