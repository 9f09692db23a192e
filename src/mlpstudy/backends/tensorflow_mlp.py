"""Any network of ``mlpstudy.nets`` in Keras on TensorFlow, as a Keras user writes it.

A ``Sequential`` of Keras' own layers, one per layer of the net (``Conv2D``,
``MaxPooling2D``, ``Flatten``, ``Dense``; the study's MLP is
``Sequential([Input(784), Dense(64, relu), Dense(10, softmax)])``), Keras' own optimizer
(``SGD``, ``SGD(momentum=..., nesterov=...)`` or ``Adam(...)`` with the spec's numbers,
epsilon set explicitly), sparse categorical cross-entropy and one ``fit`` call per
epoch; the per-epoch quantities come from ``test_on_batch`` on the whole sets (in chunks
of ``base.eval_rows`` rows, whose layer outputs stay in cache: ``base.CHUNK_BYTES``) between
the ``fit`` calls (Keras' running loss average during ``fit`` is not the loss over the
training set after the epoch, so it is not recorded).

``fit`` is given the epoch's batches as a ``tf.data`` pipeline held to the run's thread
budget (:func:`batches`), not the arrays: for arrays Keras builds a pipeline that
tf.data's autotuner sizes for the whole machine, and on the run's dedicated core that
pipeline leaves the core idle between steps (``benchmarks/bench_backends.py``, pinned,
batch 32: plain ``fit`` on arrays 4.5 s per epoch at wall/CPU 1.4, this backend 1.6 s at
wall/CPU 1.00; docs/backends.md). The batches are the same rows in the same order.

With the shared start, the model gets the shared initial weights through
``set_weights`` and each epoch sees the training set gathered in the shared
permutation's order (``tf.gather``). With the independent start, Keras draws its own
He-uniform weights and each epoch is gathered in a ``tf.random.shuffle`` order (what
``fit(shuffle=True)`` does for arrays), all seeded by ``keras.utils.set_random_seed``.

Regularisation (``mlpstudy.regularization``: the conventions), with Keras' own mechanisms
where they compute exactly that. A net and run without any build, compile and fit what
they did before: no regularizer, no extra metric, no decay, no mask layer.

- ``l2``: ``kernel_regularizer=keras.regularizers.L2(lambda / 2)`` on every dense and conv
  layer (Keras' ``L2(l)`` is ``l sum(W**2)``; biases and batch norms get none): ``fit``
  adds it to the loss, so each kernel's gradient gains ``lambda W`` and the optimizer
  sees it. ``test_on_batch``'s ``loss`` includes it too, so the data loss (the history's
  ``train_loss``) comes from a compiled ``SparseCategoricalCrossentropy`` metric beside
  it, in the same one call per chunk; the objective adds ``spec.penalty`` of the weights.
  The metric is exact, but ``fit`` updates it every step too (measured: ~10 % of an MLP
  epoch at batch 32, noisy; nothing on a CNN's step); the loss minus the penalty costs
  nothing per step, but a float32 loss of 0.47 less a penalty of 0.47 left a data loss of
  1e-3 off by 4e-5 relative (mlp-wide, 3 epochs), a third of the agreement's budget.
- ``decoupled``: the optimizer's own ``weight_decay`` (``Adam`` with it is Keras'
  ``AdamW``). Keras 3 (``BaseOptimizer.apply``, the TensorFlow optimizer's
  ``_apply_weight_decay``) decays ``W -= W * wd * lr`` with the optimizer's learning rate
  right before ``_backend_update_step``, so at the weights the gradient was taken at, and
  the update itself sees no decay: the convention. It decays every trainable variable
  unless told, so ``exclude_from_weight_decay`` gets every one but the kernels (biases,
  gammas, betas).
- ``dropout``: with the shared start, ``SharedDropout``: the epoch's keep-masks
  (``SharedStart.keep_masks``, drawn right after the epoch's permutation) are assigned at
  shuffle time to a uint8 variable of the layer (one byte a number: cnn-dropout's
  60000 x 1600 epoch is 96 MB), beside the position of the next step's rows, which each
  training call slices and advances. The epoch's batches come in order, so the step over
  rows s..e takes masks s..e, the short last batch included, also with
  ``steps_per_execution`` or XLA. ``fit``, the data pipeline and evaluation stay as they
  are (masks fed through ``tf.data`` as a second input would change the model's inputs
  and evaluation's calls). With an independent start, ``keras.layers.Dropout`` seeded
  from the run's seed: Keras' own generator.
- ``batchnorm``: ``keras.layers.BatchNormalization(epsilon, momentum)``, then the batch
  norm's activation as an ``Activation`` layer: Keras' conventions are the project's
  (``momentum`` weighs the old statistics; the batch's biased variance, ``tf.nn.moments``,
  in the running variance too), only epsilon and momentum are set explicitly. Under
  ``mixed_bfloat16`` and ``mixed_float16`` it is Keras' default: float32 variables, the
  statistics and normalisation computed in float32 (the layer upcasts its input), the
  output cast to the compute dtype.

Implements ``base.Backend``, like every other backend module.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import tensorflow as tf
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

# The options and their defaults are the registry's (``BackendInfo.options``): Keras'
# own defaults for the compile knobs, op determinism on unless asked otherwise.
# TensorFlow has no public switch back: once on, determinism stays on for the process
# (a job trains once, so this matters only when one process trains several times).
# Keras also turns ``jit_compile`` off while op determinism is on: XLA needs
# ``deterministic: False``. ``RunResult.metrics["options"]`` records what was in effect.


def set_threads(n: int) -> dict[str, int]:
    """Set TensorFlow's intra-/inter-op pools (and NumPy's BLAS) to ``n``; return them.

    TensorFlow fixes its pools when it starts its runtime: call this before any op runs.
    After that, the values it started with stay (``mlpstudy.training`` also sets
    ``TF_NUM_INTRAOP_THREADS``/``TF_NUM_INTEROP_THREADS`` before the import), and the
    returned dict says which are in effect.
    """
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:  # the runtime has started: its pools are fixed
        pass
    threadpool_limits(limits=n)  # NumPy's BLAS, in case anything here uses it
    xla_flags = os.environ.get("XLA_FLAGS", "")
    return {
        "tf_intra_op": _pool_size(
            tf.config.threading.get_intra_op_parallelism_threads(), "TF_NUM_INTRAOP_THREADS"
        ),
        "tf_inter_op": _pool_size(
            tf.config.threading.get_inter_op_parallelism_threads(), "TF_NUM_INTEROP_THREADS"
        ),
        "xla_cpu_multi_thread_eigen": int("--xla_cpu_multi_thread_eigen=false" not in xla_flags),
    }


def start(spec: TrainSpec) -> SharedStart | None:
    """The shared start, or None: Keras then draws its own weights and shuffles itself."""
    return SharedStart.of(spec) if spec.shared else None


def optimizer(spec: TrainSpec, model: keras.Model | None = None) -> keras.optimizers.Optimizer:
    """Keras' own optimizer for ``spec.optimizer``, with the spec's numbers; a decoupled
    decay is its ``weight_decay`` on ``model``'s kernels alone (module docstring)."""
    lr, settings = spec.learning_rate, spec.optimizer_settings
    decay = {"weight_decay": spec.weight_decay} if spec.weight_decay else {}
    if spec.optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate=lr, **decay)
    elif spec.optimizer == "momentum":
        opt = keras.optimizers.SGD(
            learning_rate=lr, momentum=settings["momentum"], nesterov=settings["nesterov"], **decay
        )
    elif spec.optimizer == "adam":  # with weight_decay: Keras' AdamW (the same class's step)
        opt = keras.optimizers.Adam(
            learning_rate=lr,
            beta_1=settings["beta_1"],
            beta_2=settings["beta_2"],
            epsilon=settings["epsilon"],  # Keras' default is 1e-7, PyTorch's 1e-8: explicit
            **decay,
        )
    else:
        raise ValueError(f"no Keras optimizer for {spec.optimizer!r}")
    if decay:  # Keras decays every trainable variable unless told: biases, gammas, betas not
        if model is None:
            raise ValueError("a decoupled decay needs the model whose kernels it decays")
        kernels = {id(v) for v in _kernels(model)}
        opt.exclude_from_weight_decay(
            var_list=[v for v in model.trainable_variables if id(v) not in kernels]
        )
    return opt


class SharedDropout(keras.layers.Layer):
    """Inverted dropout by given keep-masks: ``x * keep / (1 - rate)`` in training, the
    identity in evaluation. ``feed`` puts an epoch's masks (``(rows, *shape)``, bool) in a
    uint8 variable and rewinds the position; each training call takes the next rows of
    them and advances it, so the k-th step of an epoch fed in order gets its own rows.
    Both are plain ``tf.Variable``s, not Keras weights: the run's input, not the model's
    (``get_weights`` stays ``Net.weight_names``)."""

    def __init__(self, rate: float, rows: int, shape: tuple[int, ...], **kwargs):
        super().__init__(**kwargs)
        self.scale = 1.0 / (1.0 - rate)
        self.masks = tf.Variable(tf.zeros((rows, *shape), tf.uint8), trainable=False)
        self.position = tf.Variable(0, dtype=tf.int32, trainable=False)

    def feed(self, masks: np.ndarray) -> None:
        masks = np.ascontiguousarray(masks, bool)
        self.masks.assign(masks.view(np.uint8))  # a bool is a byte: no copy of the epoch's
        self.position.assign(0)

    def call(self, x, training=False):
        if not training:
            return x
        rows = tf.shape(x)[0]
        keep = self.masks[self.position : self.position + rows]
        self.position.assign_add(rows)
        # tf.constant, not tf.cast: a cast of a Python float rounds it to float32 first
        return x * tf.cast(keep, x.dtype) * tf.constant(self.scale, x.dtype)


def build_model(
    net: nets.Net,
    input_shape: tuple[int, ...],
    params: Params | None = None,
    seed: int | None = None,
    dtype="float32",
    l2: float = 0.0,
    mask_rows: int | None = None,
):
    """``net`` as a Keras ``Sequential`` on inputs of ``input_shape``; ``params`` (the
    canonical layout, Keras' own) override its initial weights. Without them, kernel k
    (counting from 0) gets Keras' ``HeUniform(seed + k)``. A flatten of an input that is
    already flat builds no layer.

    ``dtype`` is every layer's dtype policy: ``float32``, ``float64``, or
    ``mixed_bfloat16`` (float32 variables, bfloat16 compute); under a mixed policy the
    softmax of the output layer is its own float32 ``Activation`` layer, as Keras' mixed
    precision guide prescribes (a bfloat16 softmax would round the probabilities the loss
    takes the log of), and the input stays float32.

    ``l2``: each kernel's ``keras.regularizers.L2(l2 / 2)``. A dropout is ``SharedDropout``
    for epochs of ``mask_rows`` rows (the shared keep-masks), or without them Keras'
    ``Dropout`` (seeded from ``seed``); a batch norm Keras' ``BatchNormalization`` with the
    net's epsilon and momentum, then its activation."""
    mixed = dtype.startswith("mixed_")
    regularizer = keras.regularizers.L2(l2 / 2) if l2 else None
    shapes = net.shapes(input_shape)
    input_dtype = "float32" if mixed else dtype
    layers, k = [keras.Input(shape=tuple(input_shape), dtype=input_dtype)], 0
    for layer, shape in zip(net.layers, shapes, strict=False):
        if isinstance(layer, nets.Flatten):
            if len(shape) > 1:
                layers.append(keras.layers.Flatten(dtype=dtype))
            continue
        if isinstance(layer, nets.MaxPool2D):
            layers.append(keras.layers.MaxPooling2D(layer.pool, layer.stride, dtype=dtype))
            continue
        if isinstance(layer, nets.Dropout):
            if mask_rows is not None:
                layers.append(SharedDropout(layer.rate, mask_rows, shape, dtype=dtype))
            else:
                drop_seed = None if seed is None else seed + 1000 + len(layers)
                layers.append(keras.layers.Dropout(layer.rate, seed=drop_seed, dtype=dtype))
            continue
        if isinstance(layer, nets.BatchNorm):
            layers.append(
                keras.layers.BatchNormalization(
                    epsilon=layer.epsilon, momentum=layer.momentum, dtype=dtype
                )
            )
            if layer.activation != "linear":
                layers.append(keras.layers.Activation(layer.activation, dtype=dtype))
            continue
        init = keras.initializers.HeUniform(seed=None if seed is None else seed + k)
        k += 1
        if isinstance(layer, nets.Conv2D):
            layers.append(
                keras.layers.Conv2D(
                    layer.filters,
                    layer.kernel,
                    strides=layer.stride,
                    padding=layer.padding,  # 'same': TensorFlow's convention, nets' own
                    activation=layer.activation,
                    kernel_initializer=init,
                    kernel_regularizer=regularizer,
                    dtype=dtype,
                )
            )
        else:
            softmax_apart = mixed and layer.activation == "softmax"
            activation = None if softmax_apart else layer.activation
            layers.append(
                keras.layers.Dense(
                    layer.units,
                    activation=activation,
                    kernel_initializer=init,
                    kernel_regularizer=regularizer,
                    dtype=dtype,
                )
            )
            if softmax_apart:
                layers.append(keras.layers.Activation("softmax", dtype="float32"))
    model = keras.Sequential(layers)
    if params is not None:
        model.set_weights([np.asarray(params[name], input_dtype) for name in net.weight_names])
    return model


def _shared_dropouts(model) -> list[SharedDropout]:
    return [layer for layer in model.layers if isinstance(layer, SharedDropout)]


def _kernels(model) -> list:
    """The dense and conv layers' kernels: what weight decay decays."""
    return [layer.kernel for layer in model.layers if hasattr(layer, "kernel")]


def gradients(
    net: nets.Net, params: Params, x: np.ndarray, y: np.ndarray, keep: KeepMasks | None = None
) -> tuple[float, Params]:
    """Mean cross-entropy of the batch ``(x, y)`` for ``net`` and its gradients, by
    ``tf.GradientTape`` (in the dtype of ``params``: float64 works too), in training mode
    (batch norms on the batch's statistics, dropouts applying ``keep``)."""
    dtype = params["W1"].dtype.name
    if keep is None:  # the dropouts keep everything, unscaled: the net without them
        net = nets.Net(
            net.name, [layer for layer in net.layers if not isinstance(layer, nets.Dropout)]
        )
    model = build_model(net, x.shape[1:], params, dtype=dtype, mask_rows=len(x))
    for layer, mask in zip(_shared_dropouts(model), keep or (), strict=True):
        layer.feed(mask)
    x = tf.constant(x, dtype=dtype)
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True))
        loss = tf.reduce_mean(loss)
    grads = tape.gradient(loss, model.trainable_weights)
    return float(loss), {name: g.numpy() for name, g in zip(net.param_names, grads, strict=True)}


def evaluate(net: nets.Net, params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``net`` at ``params`` on ``(x, y)``: the loss
    Keras trains on, computed by a model holding ``params``."""
    dtype = params["W1"].dtype.name
    model = build_model(net, x.shape[1:], params, dtype=dtype)
    probs = model(tf.constant(x, dtype=dtype), training=False)
    loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, probs))
    accuracy = np.mean(np.argmax(probs.numpy(), axis=1) == np.asarray(y))
    return float(loss), float(accuracy)


def train(
    spec: TrainSpec,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    on_epoch: EpochCallback | None = None,
    cores: LoopCores | None = None,
) -> RunResult:
    """Train the network with Keras' ``spec.optimizer`` as ``spec`` says.

    ``precision="float64"`` sets Keras' ``floatx`` to float64 for the run (Keras' own way
    to train in float64): with float64 layers alone, the loss and the optimizer's
    learning rate stay float32 (``floatx``), and the float32 loss rounds every gradient.
    ``"bfloat16"`` sets the global dtype policy ``mixed_bfloat16`` for the run
    (``keras.mixed_precision.set_global_policy``; the layers get it too, see
    ``build_model``): float32 variables and optimizer, bfloat16 compute, no loss scaling
    (bfloat16 has float32's exponent range); ``"float16"`` the policy ``mixed_float16``,
    with Keras' dynamic loss scaling (``compile`` wraps the optimizer in a
    ``LossScaleOptimizer``: the loss times 2^15 at first, halved on a step with inf/NaN
    gradients, which it skips). Both are restored after the run.
    """
    options = info("tensorflow").resolve_options(spec.options)
    floatx, policy = keras.config.floatx(), keras.mixed_precision.global_policy()
    keras.config.set_floatx(spec.param_dtype.name)
    keras.mixed_precision.set_global_policy(_policy(spec))
    try:
        return _train(spec, options, x_train, y_train, x_test, y_test, on_epoch, cores)
    finally:
        keras.mixed_precision.set_global_policy(policy)
        keras.config.set_floatx(floatx)


def _policy(spec: TrainSpec) -> str:
    """The Keras dtype policy of ``spec``'s precision: ``mixed_bfloat16``,
    ``mixed_float16`` (with which ``compile`` wraps the optimizer in Keras' dynamic
    ``LossScaleOptimizer``), else the parameters' dtype."""
    return f"mixed_{spec.compute}" if spec.compute else spec.param_dtype.name


def _train(spec, options, x_train, y_train, x_test, y_test, on_epoch, cores) -> RunResult:
    if options["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    run_start = start(spec)
    seed = None
    if run_start is None:
        seed = framework_seed(spec)
        keras.utils.set_random_seed(seed)
    dtype, net = spec.param_dtype.name, spec.net
    shape = model_input(net, spec.input_shape)
    n = len(x_train)
    model = build_model(
        net,
        shape,
        run_start.params if run_start is not None else None,
        seed,
        _policy(spec),
        l2=spec.l2,
        mask_rows=n if run_start is not None else None,
    )
    metrics = ["accuracy"]
    if spec.l2:  # the reported loss includes the penalty: the data loss apart
        metrics.append(keras.metrics.SparseCategoricalCrossentropy(name="data_loss"))
    model.compile(
        optimizer=optimizer(spec, model),
        loss="sparse_categorical_crossentropy",
        metrics=metrics,
        jit_compile=options["jit_compile"],
        steps_per_execution=options["steps_per_execution"],
    )
    options["jit_compile"] = model.jit_compile  # "auto" resolved by Keras
    # Tensors once: fit and test_on_batch then skip converting 60000x784 floats each call.
    x_train, x_test = (np.asarray(x, dtype).reshape(len(x), *shape) for x in (x_train, x_test))
    x_train, y_train = _tensor(x_train), tf.constant(y_train)
    x_test, y_test = _tensor(x_test), tf.constant(y_test)
    rows = eval_rows(net, shape, np.dtype(dtype).itemsize)

    dropouts = _shared_dropouts(model)

    def shuffle(epoch):
        if run_start is None:
            order = tf.random.shuffle(tf.range(n))
        else:
            order = run_start.permutation(n)
            if dropouts:  # the epoch's keep-masks, right after its permutation
                for layer, mask in zip(dropouts, run_start.keep_masks(n), strict=True):
                    layer.feed(mask)
        x, y = tf.gather(x_train, order), tf.gather(y_train, order)
        return batches(x, y, spec.batch_size, spec.threads)

    def train_epoch(data):
        model.fit(data, epochs=1, shuffle=False, verbose=0)  # shuffled above

    def evaluate_epoch():
        loss, accuracy = _evaluate(model, x_train, y_train, rows)
        return loss, accuracy, _evaluate(model, x_test, y_test, rows)[1]

    def penalty():
        return spec.penalty(dict(zip(net.weight_names, model.get_weights(), strict=True)))

    result = run_epochs(spec, shuffle, train_epoch, evaluate_epoch, on_epoch, options, cores,
                        penalty if spec.l2 else None)  # fmt: skip
    result.params = dict(zip(net.weight_names, model.get_weights(), strict=True))
    return result


def batches(x, y, batch_size: int, threads: int) -> tf.data.Dataset:
    """The rows of ``(x, y)`` in order, in batches of ``batch_size`` (the last one
    partial, as ``fit`` makes them), as a ``tf.data`` pipeline on ``threads`` threads.

    tf.data's autotuner is off: it sizes parallelism and prefetching for every core of
    the machine, and pinned to a run's own core(s) it leaves them idle between steps.
    No prefetch either: a batch is made when the step asks for it, so no second stage
    competes with the step for the run's cores.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    options.experimental_optimization.inject_prefetch = False
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).with_options(options)


def _evaluate(model: keras.Model, x, y, rows: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of the compiled ``model`` on ``(x, y)``, in one
    compiled call per ``rows`` rows (one for the whole set where it fits, as for the
    study's MLP): ``test_on_batch`` on the whole set gives what ``evaluate`` gives,
    without the per-call data pipeline that made ``evaluate`` 2.5x slower on 60000
    MNIST rows. Chunks' means are weighted by their rows."""
    n = len(x)
    if rows >= n:
        scores = model.test_on_batch(x, y, return_dict=True)
        return scores.get("data_loss", scores["loss"]), scores["accuracy"]
    loss = accuracy = 0.0
    for s in range(0, n, rows):
        scores = model.test_on_batch(x[s : s + rows], y[s : s + rows], return_dict=True)
        size = min(rows, n - s)
        data_loss = scores.get("data_loss", scores["loss"])
        loss, accuracy = loss + data_loss * size, accuracy + scores["accuracy"] * size
    return loss / n, accuracy / n


def _tensor(array: np.ndarray) -> tf.Tensor:
    """``array`` as a tensor: without a copy (DLPack) when it is C-contiguous and 64-byte
    aligned, as TensorFlow requires of memory it did not allocate; else copied.

    The copy of MNIST's training set costs a TensorFlow job ~0.2 s and ~225 MB of peak
    memory (measured: 1440 -> 1215 MB peak RSS for one epoch, identical results). The
    tensor then shares the array's memory, which nothing here writes to.
    """
    if array.flags.c_contiguous and array.ctypes.data % 64 == 0 and array.size:
        try:
            return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
        except BufferError:  # e.g. a read-only array: NumPy exports none
            pass
    return tf.constant(array)


def _pool_size(configured: int, env_var: str) -> int:
    """The pool's size: set through the API, else through the environment, else TF's
    default (0 there means one thread per core)."""
    if configured:
        return configured
    return int(os.environ.get(env_var) or 0) or os.cpu_count()
