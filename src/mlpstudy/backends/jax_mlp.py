"""Any network of ``mlpstudy.nets`` in JAX, as a JAX user writes it: pure functions of a
parameter pytree.

The parameters are a dict ``{"W1", "b1", "W2", "b2", ...}`` (``Net.param_names``, batch
norms' ``gamma{k}``, ``beta{k}`` included) of device arrays in the layout the forward pass
computes with, the canonical one (Keras' and Flax's: dense ``x @ W``, W (in, out); conv
kernels HWIO on NHWC images; one number per channel for a batch norm), so the shared start
needs no conversion; batch norms' running statistics are a second dict beside it.
``forward`` walks the net's layers: ``jax.lax.conv_general_dilated`` with the net's
explicit padding (TensorFlow's 'same' convention), ``jax.lax.reduce_window`` for
max-pooling, a reshape for flatten (NHWC order), a matrix product for dense. No flax:
one forward function over the layer list is a dozen lines, while flax would add a
dependency and a parameter tree of its own to convert to and from. The loss is
``optax``'s softmax cross-entropy on the logits: the net's softmax output layer sits
inside the loss, where it is computed as log-softmax. ``jax.value_and_grad``
differentiates it, an ``optax`` optimizer updates the parameters, and the whole step is
one ``jax.jit``-compiled function whose parameter, optimizer-state and statistics
buffers are donated (updated in place).
The training and test sets become device arrays once per run; each step gathers its
mini-batch inside the compiled step from the epoch's permutation.
The per-epoch loss and accuracies come from one compiled call per chunk of ``eval_rows``
rows of each whole set, whose layer outputs stay in cache (``base.CHUNK_BYTES``).

Option ``scan_epoch`` (default false): one compiled function runs the whole epoch with
``jax.lax.scan`` over the full batches plus one step for a short last batch, so
Python dispatches once per epoch instead of once per step.

Compilation happens on the first call of each compiled function, inside the first
epoch, so ``first_epoch_s`` carries it (as Keras' tracing). It is also timed apart,
from ``jax.monitoring``'s compile events (tracing, lowering, XLA compilation), as
``metrics["compile_s"]``.

Optimizers (``optax``), each built as optax builds its aliases, the optimizer's scaling of
the gradient and then ``scale_by_learning_rate(lr)`` (so that the weight decays below
have their place in one chain): ``sgd``, nothing (``identity``); ``momentum``,
``trace(m, nesterov)``, whose ``t = m t + g``, ``w -= lr t`` equals Keras'
``v = m v - lr g``, ``w += v`` with ``v = -lr t`` for a constant learning rate; ``adam``,
``scale_by_adam(b1, b2, eps)``. optax adds ``eps`` to sqrt(v_hat) (Kingma & Ba's
Algorithm 1, as PyTorch); Keras, whose number the config's ``epsilon`` is, adds it to
sqrt(v) before the bias correction, which is optax's form with
``eps_t = epsilon / sqrt(1 - beta_2^t)``. ``optax.inject_hyperparams`` passes exactly
that schedule as ``scale_by_adam``'s ``eps``, so all backends run the same Adam
(at step 1 with beta_2 = 0.999, optax's plain ``eps=1e-7`` is 32x smaller than Keras'
effective one: 4 steps at lr 1e-3 from the shared start on random pixels ended up to
1.9e-3 apart from Keras with it, under 1e-6 with the schedule).

Regularisation (``mlpstudy.regularization``: the conventions), as a JAX user writes it:

- ``l2``: ``optax.add_decayed_weights(lambda, mask=kernels)`` first in the optimizer's
  chain, optax's documented coupled decay: each kernel's gradient gains lambda W before
  the optimizer's own transformation sees it (Adam's moments too).
- ``decoupled``: ``optax.add_decayed_weights(wd, mask=kernels)`` between the optimizer's
  scaling and ``scale_by_learning_rate``, where ``optax.adamw`` puts it, for SGD and
  momentum as for Adam: the update is ``-lr (u(g) + wd W)`` with W the weights the
  gradient was taken at, and the momentum trace and Adam's moments see no decay.
- ``dropout``: inverted dropout in ``forward``, ``where(keep, x / (1 - rate), 0)``, as
  Keras' JAX backend. With the shared start each epoch's keep-masks
  (``SharedStart.keep_masks``) become device arrays beside the permutation and every step
  slices its rows s..e inside the compiled step (``lax.dynamic_slice``); with an
  independent start each step draws its own with ``jax.random.bernoulli`` from a key
  folded from ``framework_seed``'s key (``_DROPOUT_STREAM``: the kernels' and
  permutations' keys stay what they were), the epoch and the step's first row, so the
  run is reproducible and the plain loop and the scanned epoch draw the same masks.
- ``batchnorm``: written out in ``forward``: the batch's mean and biased variance over
  every axis but the last (training), ``(x - mean) rsqrt(var + epsilon) gamma + beta``,
  then the layer's activation; the net's epsilon, not a framework default. The running
  statistics (``mean{k}``, ``var{k}``) are no parameters: they stay out of the gradient
  and the optimizer's state, are carried beside them through the step (and the scan),
  and move after each step as ``momentum old + (1 - momentum) batch`` (Keras' momentum).
  Under bfloat16 a batch norm computes in float32, as Keras' does (its input cast up,
  gamma, beta and the statistics float32, its output cast back to bfloat16).

A net without dropout and batch norm, trained without decay, runs the step it ran before
these existed: no masks, no statistics (an empty dict), no extra transformation in the
chain; its compiled step and scanned epoch have the same operations (SGD, momentum; Adam's
a few fewer, its learning rate now a constant) and its runs the same numbers, bit for bit.

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
    KeepMasks,
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
#: Folded into the root key of ``framework_seed`` for the own dropout's stream (apart from
#: the initial kernels' and the permutations' keys, which it leaves as they were).
_DROPOUT_STREAM = 0x64726F70  # "drop"


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
    layer order), zero biases, batch norms as Flax and Keras start them (gamma 1, beta 0,
    running mean 0, running variance 1), and the key from which epoch ``e``'s
    permutation is drawn (``fold_in(key, e)``)."""
    net = spec.net
    shapes = net.param_shapes(model_input(net, spec.input_shape))
    n_kernels = len(net.param_layers)
    *keys, key_shuffle = jax.random.split(jax.random.key(framework_seed(spec)), n_kernels + 1)
    he_uniform = jax.nn.initializers.he_uniform()
    keys = iter(keys)
    params = {}
    for i, names in net.layer_weights().items():
        if net.layers[i].has_params:
            w, b = names
            params[w] = he_uniform(next(keys), shapes[w], jnp.float32)
            params[b] = jnp.zeros(shapes[b], jnp.float32)
        else:
            gamma, beta, mean, var = names
            for name, fill in ((gamma, 1.0), (beta, 0.0), (mean, 0.0), (var, 1.0)):
                params[name] = jnp.full(shapes[name], fill, jnp.float32)
    return params, key_shuffle


def forward(
    net: nets.Net,
    params,
    x,
    compute: str | None = None,
    train: bool = False,
    keep: KeepMasks | None = None,
):
    """The logits of ``x`` (NHWC images, or flat rows for a net that begins with a
    flatten) through the net's layers, and the batch statistics of its batch norms
    (``{mean{k}, var{k}}`` of this batch: empty in evaluation); the softmax is in ``loss``.

    ``train``: as in a training step: batch norms normalise with the batch's mean and
    biased variance, and dropouts apply ``keep`` (one boolean mask like its input per
    dropout layer; None: they keep everything, unscaled). Else as in evaluation: no
    dropout, batch norms with ``params``' running ``mean{k}``, ``var{k}``.

    ``compute="bfloat16"`` (or ``"float16"``): mixed precision as a JAX user writes it
    (jmp's and Flax's ``dtype``/``param_dtype`` convention): the dense and conv weights
    and ``x`` are cast to bfloat16 here, those layers compute in bfloat16, and the
    logits come back as float32, so the loss, the gradients of the (float32) parameters
    and the optimizer stay float32. A batch norm computes in float32 (``_batch_norm``)."""
    if compute is not None:
        cast = {name for i in net.param_layers for name in net.layer_weights()[i]}
        params = {k: v.astype(compute) if k in cast else v for k, v in params.items()}
        x = x.astype(compute)
    logits, stats = _layers(net, params, x, train, keep)
    return (logits if compute is None else logits.astype(jnp.float32)), stats


def _layers(net: nets.Net, params, x, train: bool, keep):
    names, stats, masks = net.layer_weights(), {}, iter(keep or ())
    for i, layer in enumerate(net.layers):
        if isinstance(layer, nets.Flatten):
            x = x.reshape(len(x), -1)
            continue
        if isinstance(layer, nets.MaxPool2D):
            window, stride = (1, *layer.pool, 1), (1, *layer.stride, 1)
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, stride, "VALID")
            continue
        if isinstance(layer, nets.Dropout):
            if train and keep is not None:
                x = jnp.where(next(masks), x / (1 - layer.rate), 0)
            continue
        if isinstance(layer, nets.BatchNorm):
            x = _batch_norm(layer, names[i], params, x, stats if train else None)
        elif isinstance(layer, nets.Conv2D):
            w, b = (params[name] for name in names[i])
            pads = layer.pads(x.shape[1:])
            dims = ("NHWC", "HWIO", "NHWC")
            x = jax.lax.conv_general_dilated(x, w, layer.stride, pads, dimension_numbers=dims)
            x = x + b
        else:
            w, b = (params[name] for name in names[i])
            x = x @ w + b
        if layer.activation == "relu":
            x = jax.nn.relu(x)
    return x, stats


def _batch_norm(layer: nets.BatchNorm, names, params, x, stats: dict | None):
    """``(x - mu) rsqrt(var + epsilon) gamma + beta`` per channel (the last axis), before
    the layer's activation. ``stats`` a dict (training): mu and var are the batch's mean
    and biased variance over every other axis, recorded in ``stats`` under the running
    statistics' names; None (evaluation): the running ones of ``params``. In the dtype of
    gamma (float32 under bfloat16, as Keras' ``BatchNormalization``), the output back in
    ``x``'s."""
    gamma, beta, mean, var = names
    z = x.astype(jnp.result_type(x.dtype, params[gamma].dtype))
    if stats is None:
        mu, variance = params[mean], params[var]
        centred = z - mu
    else:
        axes = tuple(range(z.ndim - 1))
        mu = z.mean(axes)
        centred = z - mu
        variance = jnp.square(centred).mean(axes)  # biased: divided by the count
        stats[mean], stats[var] = mu, variance
    out = centred * jax.lax.rsqrt(variance + layer.epsilon) * params[gamma] + params[beta]
    return out.astype(x.dtype)


def _moved_statistics(net: nets.Net, running, batch):
    """The running statistics after a training step: ``momentum old + (1 - momentum)
    batch`` for every batch norm's mean and variance (Keras' convention)."""
    moved = dict(running)
    for i in net.norm_layers:
        m = net.layers[i].momentum
        for name in net.layer_weights()[i][2:]:
            moved[name] = m * running[name] + (1 - m) * batch[name]
    return moved


def loss(
    net: nets.Net,
    params,
    x,
    y,
    compute: str | None = None,
    train: bool = False,
    keep: KeepMasks | None = None,
):
    """Mean cross-entropy of softmax(logits) against the integer labels ``y`` (float32
    logits also under ``compute="bfloat16"``), and the batch statistics (``forward``)."""
    logits, stats = forward(net, params, x, compute, train, keep)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), stats


def optimizer(spec: TrainSpec) -> optax.GradientTransformation:
    """The ``optax`` optimizer of ``spec`` with the config's numbers, built as optax
    builds its aliases (``sgd``, ``adam``, ``adamw``): the optimizer's scaling of the
    gradient, then ``scale_by_learning_rate``; ``l2`` puts ``add_decayed_weights`` before
    the scaling, ``decoupled`` between the scaling and the learning rate, both over the
    kernels only (module docstring; how Adam's epsilon is made Keras' too)."""
    lr, settings, net = spec.learning_rate, spec.optimizer_settings, spec.net
    if spec.optimizer == "sgd":
        scaling = optax.identity()
    elif spec.optimizer == "momentum":
        scaling = optax.trace(decay=settings["momentum"], nesterov=settings["nesterov"])
    elif spec.optimizer == "adam":
        beta_2, epsilon = settings["beta_2"], settings["epsilon"]

        def keras_epsilon(count):  # count: updates done before this one
            return epsilon / jnp.sqrt(1 - beta_2 ** (count + 1))

        scaling = optax.inject_hyperparams(optax.scale_by_adam)(
            b1=settings["beta_1"], b2=beta_2, eps=keras_epsilon
        )
    else:
        raise ValueError(f"unknown optimizer {spec.optimizer!r}")
    kernels = {name: name in net.kernel_names for name in net.param_names}
    coupled = [optax.add_decayed_weights(spec.l2, kernels)] if spec.l2 else []
    decoupled = [optax.add_decayed_weights(spec.weight_decay, kernels)] if spec.weight_decay else []
    return optax.chain(*coupled, scaling, *decoupled, optax.scale_by_learning_rate(lr))


def gradients(
    net: nets.Net,
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    keep: KeepMasks | None = None,
) -> tuple[float, Params]:
    """Mean cross-entropy of the batch ``(x, y)`` for ``net`` and its gradients (of
    ``net.param_names``), by ``jax.value_and_grad``, as in a training step: batch norms
    on the batch's statistics, dropouts applying ``keep``. Works in the dtype of
    ``params``: float64 inside ``jax.enable_x64``."""
    with jax.enable_x64(_is_float64(params)):
        params, x, y = _device_args(net.param_names, params, x, y)
        keep = None if keep is None else [jnp.asarray(mask) for mask in keep]
        (value, _), grads = _value_and_grad(net, params, x, y, None, True, keep)
        return float(value), {name: np.asarray(grads[name]) for name in net.param_names}


def evaluate(net: nets.Net, params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``net`` at ``params`` on ``(x, y)``, in one
    compiled call per chunk (``scores``; in the dtype of ``params``, as ``gradients``):
    no dropout, batch norms with the running statistics of ``params``."""
    with jax.enable_x64(_is_float64(params)):
        params, x, y = _device_args(net.weight_names, params, x, y)
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
    """Train the network with ``spec``'s optimizer and regularisation; return a
    ``RunResult`` (its ``params``: every weight, running statistics included).

    ``precision="float64"`` runs inside ``jax.enable_x64``: the run computes in float64,
    and the process' other JAX computations keep their float32 default. ``"bfloat16"``
    (``"float16"``) computes the forward pass in bfloat16 (float16) (``forward``) with
    float32 parameters, loss, optimizer state and batch-norm statistics; JAX and optax
    provide no loss scaling (the ``jmp`` library would), so float16 runs without.
    """
    options = info("jax").resolve_options(spec.options)
    with jax.enable_x64(spec.precision == "float64"):
        return _train(spec, options, x_train, y_train, x_test, y_test, on_epoch, cores)


def _train(spec, options, x_train, y_train, x_test, y_test, on_epoch, cores) -> RunResult:
    dtype, net = spec.param_dtype, spec.net
    compute = spec.compute
    shape = model_input(net, spec.input_shape)
    n, batch = len(x_train), spec.batch_size
    run_start = start(spec)
    if run_start is None:
        weights, shuffle_key = own_start(spec)
        dropout_key = jax.random.fold_in(jax.random.key(framework_seed(spec)), _DROPOUT_STREAM)
    else:
        weights = run_start.params
    weights = {name: jnp.asarray(value, dtype) for name, value in weights.items()}
    # Device arrays once per run: every compiled call then takes them without a copy.
    x_train, x_test = (
        jax.device_put(np.asarray(x, dtype).reshape(len(x), *shape)) for x in (x_train, x_test)
    )
    y_train, y_test = jnp.asarray(y_train, jnp.int32), jnp.asarray(y_test, jnp.int32)
    rows = eval_rows(net, shape, dtype.itemsize)
    tx = optimizer(spec)
    params = {name: weights[name] for name in net.param_names}
    # The running statistics: beside the parameters, not in the gradient or the optimizer.
    state = {
        "params": params,
        "opt": tx.init(params),
        "stats": {name: weights[name] for name in net.state_names},
    }
    keep = _keep_masks(net, spec.input_shape, run_start is not None)
    step = _make_step(tx, net, compute)
    run_epoch = _make_epoch(step, keep, batch) if options["scan_epoch"] else None
    step = _jit_step(step, keep)

    def shuffle(epoch):
        if run_start is None:
            order = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n))
            drop = jax.random.fold_in(dropout_key, epoch) if net.dropout_layers else None
        else:
            order = run_start.permutation(n).astype(np.int32)
            masks = run_start.keep_masks(n) if net.dropout_layers else None
            drop = None if masks is None else [jax.device_put(mask) for mask in masks]
        return order, drop

    def train_epoch(data):
        order, drop = data
        carry = state["params"], state["opt"], state["stats"]
        if run_epoch is not None:
            carry = run_epoch(*carry, x_train, y_train, jnp.asarray(order), drop)
        else:
            for s in range(0, n, batch):
                at = None if drop is None else s
                carry = step(*carry, x_train, y_train, order[s : s + batch], drop, at)
        state["params"], state["opt"], state["stats"] = jax.block_until_ready(carry)

    def evaluate_epoch():
        weights = {**state["params"], **state["stats"]}
        loss_value, correct = scores(net, weights, x_train, y_train, rows, compute)
        _, test_correct = scores(net, weights, x_test, y_test, rows, compute)
        return loss_value, correct / n, test_correct / len(x_test)

    def penalty():
        return spec.penalty({k: np.asarray(state["params"][k]) for k in net.kernel_names})

    compile_s = []

    def on_compile(event: str, duration: float, **kwargs):
        if event in _COMPILE_EVENTS:
            compile_s.append(duration)

    jax.monitoring.register_event_duration_secs_listener(on_compile)
    try:
        result = run_epochs(
            spec, shuffle, train_epoch, evaluate_epoch, on_epoch, options, cores,
            penalty if spec.regularization == "l2" else None,
        )  # fmt: skip
    finally:
        jax.monitoring.unregister_event_duration_listener(on_compile)
    result.metrics["compile_s"] = sum(compile_s)
    weights = {**state["params"], **state["stats"]}
    result.params = {name: np.asarray(weights[name]) for name in net.weight_names}
    return result


def _make_step(tx: optax.GradientTransformation, net: nets.Net, compute: str | None = None):
    """One optimisation step of ``net`` on the rows ``idx`` of ``(x, y)`` with the step's
    keep-masks ``keep``, a pure function of the parameters, the optimizer's state and
    the running statistics, which it returns moved (the forward pass in ``compute``, see
    ``forward``)."""

    def step(params, opt_state, stats, x, y, idx, keep=None):
        grads, batch_stats = jax.grad(loss, argnums=1, has_aux=True)(
            net, params, x[idx], y[idx], compute, True, keep
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, _moved_statistics(net, stats, batch_stats)

    return step


def _keep_masks(net: nets.Net, input_shape, shared: bool):
    """``keep(drop, s, rows)``: the keep-masks of the step over the epoch's rows
    ``s .. s + rows`` (traced), or None for a net without dropout. ``drop`` is what the
    epoch's ``shuffle`` gave: with the shared start the epoch's masks (device arrays,
    one per dropout layer), sliced; else the epoch's key, from which the step draws its
    own, ``bernoulli(1 - rate)`` per number, with the key ``fold_in(key, s)``."""
    shapes = net.shapes(input_shape)
    layers = [(net.layers[i].rate, shapes[i]) for i in net.dropout_layers]
    if not layers:
        return lambda drop, s, rows: None
    if shared:
        return lambda drop, s, rows: [jax.lax.dynamic_slice_in_dim(m, s, rows) for m in drop]

    def draw(key, s, rows):
        keys = jax.random.split(jax.random.fold_in(key, s), len(layers))
        return [
            jax.random.bernoulli(k, 1 - rate, (rows, *shape))
            for k, (rate, shape) in zip(keys, layers, strict=True)
        ]

    return draw


def _jit_step(step, keep):
    """The compiled step of the plain loop: ``step`` on the rows ``idx``, the epoch's
    ``drop`` and the batch's first row ``s`` giving its keep-masks (``_keep_masks``;
    both None for a net without dropout); the carried buffers donated."""

    def compiled(params, opt_state, stats, x, y, idx, drop, s):
        return step(params, opt_state, stats, x, y, idx, keep(drop, s, len(idx)))

    return jax.jit(compiled, donate_argnums=(0, 1, 2))


def _make_epoch(step, keep, batch: int):
    """One compiled epoch: ``lax.scan`` over the full batches of ``order`` (and their
    first rows, for the keep-masks), then one step on the short last batch if there is
    one (its size is static: one compile per run)."""

    def epoch(params, opt_state, stats, x, y, order, drop):
        full = len(order) // batch * batch
        batches = order[:full].reshape(-1, batch)
        starts = jnp.arange(0, full, batch, dtype=jnp.int32)

        def body(carry, xs):
            idx, s = xs
            return step(*carry, x, y, idx, keep(drop, s, batch)), None

        carry, _ = jax.lax.scan(body, (params, opt_state, stats), (batches, starts))
        if full < len(order):
            carry = step(*carry, x, y, order[full:], keep(drop, full, len(order) - full))
        return carry

    return jax.jit(epoch, donate_argnums=(0, 1, 2))


_value_and_grad = jax.jit(
    jax.value_and_grad(loss, argnums=1, has_aux=True), static_argnums=(0, 4, 5)
)


def _is_float64(params: Params) -> bool:
    return np.asarray(params["W1"]).dtype == np.float64


def _device_args(names, params: Params, x, y):
    """``params`` of ``names``, ``x`` (in the dtype of ``params``) and integer ``y`` as
    device arrays."""
    params = {name: jnp.asarray(params[name]) for name in names}
    return params, jnp.asarray(x, params["W1"].dtype), jnp.asarray(y, jnp.int32)


def scores(net: nets.Net, params, x, y, rows: int, compute: str | None = None) -> tuple[float, int]:
    """Mean loss and number of correct predictions on ``(x, y)`` as in evaluation
    (``params``: every weight, running statistics included): one compiled call on the
    whole set where ``rows`` covers it (the study's MLP), else one per ``rows`` rows
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
    logits, _ = forward(net, params, x, compute)
    value = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return value, (jnp.argmax(logits, axis=1) == y).sum()
