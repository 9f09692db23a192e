"""What every backend shares: the contract, the run's spec, the shared start, the result.

Every backend module imports these names, so ``TrainSpec``, ``SharedStart`` or
``RunResult`` mean the same thing in each of them, and each module implements the
``Backend`` protocol below with exactly its signatures (a test checks them).

The network is a value (``TrainSpec.net``, a ``mlpstudy.nets.Net``; the study's
784-64-10 MLP is ``nets.CATALOG[nets.DEFAULT]``, the default), and so is the shape of one input
image (``TrainSpec.input_shape``, (H, W, C) from the dataset's catalog entry): every
backend builds its model from the two, and the parameters are named and laid out as the
net says (``Net.param_names``: W1, b1, W2, b2, ...; Keras' layout, converted where a
framework stores them otherwise).

The shared start (``TrainSpec.start == "shared"``, the default): one NumPy ``Generator``
seeded by ``(seed, trial)`` draws, in this order, the He-uniform initial kernels (one
per parameterised layer, in layer order; biases are zero; ``nets.init``) and then one
permutation of the training set per epoch. Every backend consumes exactly those, so two
backends started from the same spec differ only by their implementation. With
``start == "independent"`` each framework draws its own weights and batch order from
``(seed, trial)`` (the study's setting). A net with dropout layers also takes, with the
shared start, one keep-mask per dropout layer and epoch from the shared start's own
stream (``SharedStart.keep_masks``), fed to every backend, so that backends still agree
step for step; with independent starts each framework drops with its own generator.

Regularisation (``TrainSpec.regularization``, ``mlpstudy.regularization``): the spec's
``net`` is the network the run trains, dropouts and batch norms included (``apply``d in
the spec); ``l2`` and ``decoupled`` act on the loss and the optimizer's step, over the
kernels. A batch norm's running statistics are weights too (``Net.state_names``), in
``Params`` beside the trained ones.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from mlpstudy import nets, regularization
from mlpstudy.cores import LoopCores

from .optimizers import resolve

#: The study's network (section 3.1): 784 -> 64 ReLU -> 10 softmax, the default net.
MLP = nets.CATALOG[nets.DEFAULT]
#: The shape of one MNIST image, (H, W, C): the default input.
MNIST_SHAPE = (28, 28, 1)
#: Columns of ``RunResult.history``, in order. ``train_loss`` is the data loss (mean
#: cross-entropy over the training set), ``train_objective`` what the run minimises: the
#: data loss plus the ``l2`` penalty (equal to ``train_loss`` without one).
HISTORY_COLUMNS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "test_accuracy",
    "epoch_s",
    "train_objective",
)
#: The start modes: one shared draw for every backend, or each framework its own.
STARTS = ("shared", "independent")
#: The numeric precisions (the ``precision`` axis): float32 and float64 end to end, and
#: bfloat16 and float16 = mixed precision, float32 master weights and bfloat16 (float16)
#: compute, as each framework does it, float16 with the loss scaling the framework
#: provides (docs/backends.md). The registry says which a backend cannot run
#: (``BackendInfo.cannot_run``).
PRECISIONS = ("float32", "float64", "bfloat16", "float16")
#: The mixed precisions: precision -> the dtype the layers compute in.
MIXED = {"bfloat16": "bfloat16", "float16": "float16"}

#: The network's weights by ``Net.weight_names`` (the trained ``param_names`` and a batch
#: norm's running statistics ``state_names``), as NumPy arrays in Keras' layout (the
#: study's MLP: W1 784x64, b1 64, W2 64x10, b2 10; a conv kernel HWIO); a backend storing
#: them otherwise converts (``nets.to_torch``). Gradients are ``Params`` of the trained
#: ones only.
Params = dict[str, np.ndarray]
#: One keep-mask per dropout layer of the net (``Net.dropout_layers`` order), each a
#: boolean array of the batch's rows by that layer's input shape: True keeps the number
#: (scaled by 1 / (1 - rate)), False drops it.
KeepMasks = list[np.ndarray]
#: What ``Backend.train`` calls after each epoch with a copy of that epoch's history row.
EpochCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainSpec:
    """One training run: the grid point, the trial, the optimizer, and how to run it.

    ``optimizer`` is one of ``optimizers.OPTIMIZERS`` and ``optimizer_settings`` its
    settings (the config's ``optimizer_settings[optimizer]``); missing settings take the
    defaults, so after construction ``optimizer_settings`` holds every number used.
    ``precision`` is one of ``PRECISIONS``: the dtype of parameters, data and arithmetic
    (``float32``, ``float64``), or mixed precision with float32 parameters and bfloat16
    or float16 compute (``bfloat16``, ``float16``: ``compute``; ``param_dtype`` is the
    parameters' dtype in each case).
    ``options`` holds backend-specific knobs (the registry's ``BackendInfo.options``);
    a backend ignores the ones it does not know and records the ones it used in
    ``RunResult.metrics["options"]``. ``net`` is a ``nets.Net`` or its config form
    ``{"name": ..., "layers": [...]}``; it must fit ``input_shape`` (checked here).
    """

    learning_rate: float
    batch_size: int
    epochs: int
    seed: int
    trial: int
    start: str = "shared"
    optimizer: str = "sgd"
    optimizer_settings: dict[str, Any] = field(default_factory=dict)
    threads: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    net: nets.Net = MLP
    input_shape: tuple[int, ...] = MNIST_SHAPE
    precision: str = "float32"
    regularization: str = regularization.DEFAULT
    regularization_settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        lr = self.learning_rate
        if (
            isinstance(lr, bool)
            or not isinstance(lr, (int, float))
            or not (lr > 0 and math.isfinite(lr))
        ):
            raise ValueError(f"learning_rate must be a positive finite number, got {lr!r}")
        for name in ("batch_size", "epochs", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("seed", "trial"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.start not in STARTS:
            raise ValueError(f"start must be one of {', '.join(STARTS)}, got {self.start!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if not isinstance(self.optimizer_settings, dict):
            raise TypeError(
                f"optimizer_settings must be a mapping, got {self.optimizer_settings!r}"
            )
        object.__setattr__(
            self, "optimizer_settings", resolve(self.optimizer, self.optimizer_settings)
        )
        object.__setattr__(self, "options", dict(self.options))
        net = self.net
        if not isinstance(net, nets.Net):
            net = nets.Net.from_config(net["name"], net["layers"])
        if not isinstance(self.regularization_settings, dict):
            raise TypeError(
                f"regularization_settings must be a mapping, got {self.regularization_settings!r}"
            )
        settings = regularization.resolve(self.regularization, self.regularization_settings)
        object.__setattr__(self, "regularization_settings", settings)
        net = regularization.apply(net, self.regularization, settings)
        object.__setattr__(self, "net", net)
        object.__setattr__(self, "input_shape", tuple(int(n) for n in self.input_shape))
        net.check(self.input_shape)

    @property
    def shared(self) -> bool:
        """True when every backend starts from the shared draw."""
        return self.start == "shared"

    @property
    def weight_decay(self) -> float:
        """The decoupled decay's ``wd`` (``W <- W - lr wd W`` each step), 0 without it."""
        return self.regularization_settings.get("weight_decay", 0.0)

    @property
    def l2(self) -> float:
        """The ``l2`` penalty's ``lambda`` (each kernel's gradient gains ``lambda W``),
        0 without it."""
        return self.regularization_settings.get("lambda", 0.0)

    def penalty(self, params: Params) -> float:
        """What the run adds to its data loss at ``params`` (``regularization.penalty``)."""
        return regularization.penalty(
            self.regularization, self.regularization_settings, self.net, params
        )

    @property
    def compute(self) -> str | None:
        """The dtype the layers compute in under mixed precision (``MIXED``), else None."""
        return MIXED.get(self.precision)

    @property
    def param_dtype(self) -> np.dtype:
        """The dtype of the parameters, the data and the optimizer's state: float64 for
        ``precision="float64"``, else float32 (mixed precision's master weights are
        float32)."""
        return np.dtype(np.float64 if self.precision == "float64" else np.float32)


def model_input(net: nets.Net, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of one example as every framework's model takes it: the flat row for a
    net that begins with a flatten (so the study's MLP takes its 784 numbers, as in the
    study, and a framework builds no flatten layer for it), else the (H, W, C) image.
    The flat rows are the images in (h, w, c) order, which is what that flatten makes."""
    if isinstance(net.layers[0], nets.Flatten):
        return (math.prod(input_shape),)
    return tuple(input_shape)


#: Bytes one pass over a chunk of images may write, so that what one layer writes is in
#: cache when the next reads it: every backend evaluates a data set in chunks whose layer
#: outputs stay within it (``eval_rows``), and NumPy takes its evaluation and any larger
#: training batch in chunks whose buffers and input rows do (``numpy_layers.pass_rows``).
#: A quarter of the 32 MiB L3 of the machine it was chosen on (2-core AMD EPYC,
#: 2026-12-04; one pinned core, 3 epochs' evaluations of 7000 MNIST images, 256 MiB
#: against 8 MiB of layer outputs per call: PyTorch cnn 4.12 -> 0.86 s, cnn-small 1.49 ->
#: 0.76 s; TensorFlow cnn 2.15 -> 1.30 s, cnn-small 1.53 -> 0.85 s; JAX and every MLP
#: within the runs' spread). The study's MLP (74 outputs per image) evaluates MNIST's
#: training set in 3 calls.
CHUNK_BYTES = 8 * 2**20


def layer_outputs(net: nets.Net, shape: tuple[int, ...]) -> int:
    """Numbers per image the layers' outputs hold in evaluation (a flatten's is a
    reshape: not counted)."""
    return sum(math.prod(s) for layer, s in zip(net.layers, net.shapes(shape)[1:], strict=True)
               if not isinstance(layer, nets.Flatten))  # fmt: skip


def eval_rows(net: nets.Net, shape: tuple[int, ...], itemsize: int) -> int:
    """Rows per evaluation call for inputs of ``shape``: as many as keep the outputs of
    the layers (:func:`layer_outputs`) within ``CHUNK_BYTES``."""
    return max(1, CHUNK_BYTES // (itemsize * layer_outputs(net, shape)))


def work_mb(
    net: nets.Net, shape: tuple[int, ...], batch_size: int, n_train: int, itemsize: int = 4
) -> float:
    """MB a run of ``net`` on images of ``shape`` holds at once beyond its data and its
    framework, for the scheduler's memory request: the larger of a training step's
    (``batch_size`` images' activations, ``Net.activations``, four copies: activations,
    their gradients, a framework's workspace and the gathered batch) and an evaluation
    chunk's (the ``n_train`` training images, or ``eval_rows`` of them at a time, their
    layer outputs twice: the outputs and a framework's workspace, up to ``CHUNK_BYTES``)."""
    step = batch_size * net.activations(shape) * itemsize * 4
    rows = min(n_train, eval_rows(net, shape, itemsize))
    chunk = rows * layer_outputs(net, shape) * itemsize
    return max(step, 2 * chunk) / 2**20


def framework_seed(spec: TrainSpec) -> int:
    """One integer seed from ``(seed, trial)`` for a framework's own initializer and
    shuffling (the independent start); the same number for every framework."""
    return int(np.random.SeedSequence([spec.seed, spec.trial]).generate_state(1)[0] >> 1)


def generator(seed: int, trial: int, stream: str | None = None) -> np.random.Generator:
    """The NumPy Generator for ``(seed, trial)``.

    ``stream=None`` is the shared start. A backend running with ``start="independent"``
    that draws with NumPy passes its own name, which gives an independent stream, so
    no two frameworks share a start by accident.
    """
    key = [seed, trial] if stream is None else [seed, trial, zlib.crc32(stream.encode())]
    return np.random.default_rng(key)


class SharedStart:
    """The initial parameters and the per-epoch permutations of one ``(seed, trial)``,
    for the network ``net`` on images of ``input_shape``.

    >>> start = SharedStart(seed=0, trial=1)
    >>> start.params["W1"].shape, start.permutation(5).shape
    ((784, 64), (5,))

    The kernels are He-uniform, U(-sqrt(6/fan_in), +sqrt(6/fan_in)) (the study's equation
    (11); a conv kernel's fan_in is kh kw c_in), drawn in layer order; biases are zero
    (``nets.init``). Call ``permutation(n)`` once per epoch, in epoch order: each call
    draws the next one.
    """

    def __init__(
        self,
        seed: int,
        trial: int,
        stream: str | None = None,
        dtype=np.float32,
        net: nets.Net = MLP,
        input_shape: tuple[int, ...] = MNIST_SHAPE,
    ):
        self._rng = generator(seed, trial, stream)
        self.params = nets.init(net, input_shape, self._rng, dtype)
        self._net, self._input_shape = net, tuple(input_shape)
        self._masks = generator(seed, trial, f"{stream or 'shared'}/keep-masks")

    @classmethod
    def of(cls, spec: TrainSpec, stream: str | None = None) -> SharedStart:
        """The start of ``spec``'s ``(seed, trial)`` for its net and input shape."""
        return cls(spec.seed, spec.trial, stream, net=spec.net, input_shape=spec.input_shape)

    def permutation(self, n: int) -> np.ndarray:
        return self._rng.permutation(n)

    def keep_masks(self, n: int) -> KeepMasks:
        """The keep-masks of one epoch of ``n`` steps' rows: per dropout layer of the net
        (``Net.dropout_layers`` order), a boolean ``(n, *layer input shape)`` array, True
        with probability 1 - rate (``u >= rate``, u uniform float32 in [0, 1)). Row r
        masks the r-th row the epoch trains on (the permutation's r-th), so the step over
        rows s..e takes ``mask[s:e]``. Call once per epoch, in epoch order, after
        ``permutation``: an own stream of the start (``(seed, trial)`` and
        "keep-masks"), so the weights and permutations are those of the same run without
        dropout. Empty for a net without dropout. Drawn in blocks of rows (the same
        numbers as one draw), so no float array of the whole epoch is ever held."""
        shapes = self._net.shapes(self._input_shape)
        out = []
        for i in self._net.dropout_layers:
            rate, shape = self._net.layers[i].rate, shapes[i]
            mask = np.empty((n, *shape), bool)
            block = max(1, 2**22 // max(1, math.prod(shape)))
            for s in range(0, n, block):
                u = self._masks.random((min(block, n - s), *shape), dtype=np.float32)
                np.greater_equal(u, np.float32(rate), out=mask[s : s + block])
            out.append(mask)
        return out


def is_diverged(train_loss: float) -> bool:
    """The divergence rule: an epoch whose full-training-set mean loss is not finite.

    A diverged run stops after that epoch. Its history keeps the rows up to and
    including it (the last row's values may be NaN or inf), and its metrics carry
    ``diverged=True`` and ``diverged_epoch``.
    """
    return not math.isfinite(train_loss)


@dataclass
class RunResult:
    """What ``train`` returns: one dict per completed epoch, and the run's flat metrics.

    ``history`` rows have exactly the keys ``HISTORY_COLUMNS``; ``epoch`` is 1-based.
    ``metrics`` holds the timings (``training_time_s``, ``step_time_s``,
    ``eval_time_s``, ``shuffle_time_s``, ``first_epoch_s``, ``cpu_time_s``), the final
    values (``final_train_loss``, ``final_train_accuracy``, ``test_accuracy``),
    ``diverged``, ``diverged_epoch``, ``epochs_completed``, the spec's fields and the
    backend ``options`` actually used. ``mlpstudy.training.run_training`` adds
    ``import_time_s``, ``threads``, ``thread_settings`` and ``blas``.
    """

    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    #: The parameters after the last epoch (NumPy arrays, names ``Net.param_names``).
    params: Params | None = None

    def history_frame(self):
        """``history`` as a pandas DataFrame with columns ``HISTORY_COLUMNS``."""
        import pandas as pd

        return pd.DataFrame(self.history, columns=list(HISTORY_COLUMNS))


def spec_fields(spec: TrainSpec) -> dict[str, Any]:
    """The spec as metrics (``options`` is recorded separately, as used):
    ``learning_rate, batch_size, epochs, seed, trial, start, optimizer,
    optimizer_settings`` (a dict of every number used), ``threads``."""
    fields = asdict(spec)
    fields.pop("options")
    fields.update(
        net=spec.net.name,
        net_definition=spec.net.to_config(),
        input_shape=list(spec.input_shape),
    )
    return fields


class Backend(Protocol):
    """What a backend module provides, with these exact signatures (checked by a test).

    Every function takes and returns NumPy arrays; only ``train`` runs the framework's
    own training loop. A module is registered in ``mlpstudy.backends.REGISTRY``.
    """

    def set_threads(self, n: int) -> dict[str, int]:
        """Limit the framework's thread pools (and NumPy's BLAS) to ``n``; return what is
        in effect, by pool name. Called before the framework runs any op."""
        ...

    def start(self, spec: TrainSpec) -> SharedStart | None:
        """The run's initial parameters and epoch permutations: the shared ones for
        ``spec.start == "shared"``, else the backend's own draw, or None where the
        framework draws its own weights and batch order itself."""
        ...

    def gradients(
        self,
        net: nets.Net,
        params: Params,
        x: np.ndarray,
        y: np.ndarray,
        keep: KeepMasks | None = None,
    ) -> tuple[float, Params]:
        """Mean cross-entropy of the batch ``(x, y)`` for ``net`` at ``params`` and its
        gradients (of ``net.param_names``), computed in the dtype of ``params`` where the
        framework allows (float64 too). ``x`` is ``(N, *input_shape)``: NHWC images, or
        flat rows for a net that starts with a flatten or a dense layer. As in a training
        step: batch norms normalise with the batch's statistics, and dropouts apply
        ``keep`` (``KeepMasks``; None: they keep everything, unscaled). No penalty."""
        ...

    def evaluate(
        self, net: nets.Net, params: Params, x: np.ndarray, y: np.ndarray
    ) -> tuple[float, float]:
        """Mean cross-entropy and accuracy of ``net`` at ``params`` on ``(x, y)`` (``x``
        as for ``gradients``), in the dtype of ``params`` where the framework allows (the
        finite-difference checks use float64). As in evaluation: no dropout, batch norms
        with their running statistics from ``params``."""
        ...

    def train(
        self,
        spec: TrainSpec,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_test: np.ndarray,
        y_test: np.ndarray,
        on_epoch: EpochCallback | None = None,
        cores: LoopCores | None = None,
    ) -> RunResult:
        """Train as ``spec`` says (its optimizer, regularisation, start, options) with the
        timed loop of ``loop.run_epochs``, which gets ``cores`` (taken for the loop alone;
        None: no allocation) and the penalty (``spec.penalty``); the result's ``params``
        are the final weights as ``Params`` (running statistics included)."""
        ...
