"""The networks of the study, each defined once as a list of layers.

A network is a value (``Net``: a name and a tuple of layers), like an optimizer: its
parameter names and shapes, its shared start, its FLOPs per image and its checks against
a dataset's image shape all derive from the layers, so nothing else knows a layer size.

The layer vocabulary (frozen dataclasses, one per ``kind``)::

    Dense(units, activation="relu")                 relu | linear | softmax
    Conv2D(filters, kernel, stride=1, padding="valid", activation="relu")
                                                    valid | same; relu | linear
    MaxPool2D(pool, stride=None)                    stride None: the pool size; no padding
    Flatten()
    Dropout(rate=0.5)                               inverted dropout, training only
    BatchNorm(epsilon=1e-3, momentum=0.99, activation="linear")
                                                    per channel (a map's last axis) or unit

``Dropout`` zeroes each input with probability ``rate`` in training and scales the kept
ones by 1 / (1 - rate) (inverted dropout); in evaluation it is the identity.
``BatchNorm`` normalises each channel (unit) over the batch (and a map's pixels):
y = act(gamma (x - mu) / sqrt(var + epsilon) + beta), with mu and var = the biased
variance (divided by the count, not count - 1) of the batch in training, and the
running statistics in evaluation; after each training step
``running = momentum running + (1 - momentum) batch`` for both (Keras' convention:
``momentum`` weighs the old statistics; the same biased variance in the running
variance, which PyTorch would keep unbiased). Its activation is its own, so that it
sits between a linear dense or conv layer and that layer's activation
(``mlpstudy.regularization`` inserts it so).

``kernel``, ``stride`` and ``pool`` are a positive integer or a pair ``[height, width]``
(stored as a pair). The output layer is dense with softmax (the loss fuses the two);
softmax is allowed nowhere else.

Config form (``net_definitions`` in the config; ``Net.from_config`` reads it,
``Net.to_config`` writes it, ``layer_schema`` is its JSON schema): a list of mappings,
each with a ``type`` (the layer's kind) and its fields, defaults as above::

    net_definitions:
      lenet-ish:
        - {type: conv2d, filters: 6, kernel: 5, padding: same}
        - {type: maxpool2d, pool: 2}
        - {type: flatten}
        - {type: dense, units: 120}
        - {type: dense, units: 10, activation: softmax}

Shapes are per image, without the batch: ``(H, W, C)`` for a map (NHWC, Keras' and JAX's
layout), ``(n,)`` for a vector. A flatten turns a map into a vector in (h, w, c) order
(NHWC's); on a vector it changes nothing.

Parameters are named by parameterised layer, counting from 1: ``W1, b1, W2, b2, ...``
(so ``mlp`` has exactly the study's ``W1, b1, W2, b2``); a batch norm's by batch norm,
counting from 1: ``gamma1, beta1`` (trained) and ``mean1, var1`` (its running statistics,
not trained: ``Net.state_names``), in layer order beside the kernels (``Net.weight_names``:
what Keras' ``get_weights()`` lists), in one canonical layout, Keras'
(``model.get_weights()``): a dense kernel is ``(n_in, units)``, a conv kernel HWIO
``(kh, kw, c_in, filters)``, a bias ``(units,)``/``(filters,)``. JAX uses it as it is;
``to_torch``/``from_torch`` convert to and from PyTorch's (OIHW conv kernels, ``(out, in)``
dense kernels, and the rows of the first dense layer after a flatten of a map permuted
from NHWC's flatten order (h, w, c) to NCHW's (c, h, w)). Layouts are converted, never
redrawn.

Padding ``same`` follows TensorFlow's convention everywhere (``same_padding``): output
size ceil(size / stride), total padding max((out - 1) stride + kernel - size, 0), of which
the top/left get total // 2 and the bottom/right the rest (the odd pixel); PyTorch needs
it as explicit padding. ``valid`` takes every window that fits: floor((size - kernel) /
stride) + 1.

FLOPs (``Net.flops``), per image: 2 per multiply-add of the dense and conv products only
(bias adds, activations, pooling, softmax and the loss are O(outputs) and not counted;
a conv counts every output position, padded ones included). Forward: each layer's
product. Backward: the gradient of every kernel (as many multiply-adds as its forward
product) plus the gradient of every parameterised layer's input (as many again), except
the first parameterised layer's, whose input needs no gradient.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np

Shape = tuple[int, ...]

_POSITIVE = {"type": "integer", "minimum": 1, "description": "a positive integer"}
_SIZE = {
    "oneOf": [
        {"type": "integer", "minimum": 1},
        {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 2},
    ],
    "description": "a positive integer or a pair [height, width] of them",
}


_RATE = {
    "type": "number",
    "minimum": 0,
    "exclusiveMaximum": 1,
    "description": "a number in [0, 1)",
}
_EPSILON = {"type": "number", "exclusiveMinimum": 0, "description": "a number > 0"}


def _choice(values: tuple[str, ...]) -> dict[str, Any]:
    return {"enum": list(values), "description": "one of " + ", ".join(values)}


def _valid(value, schema: dict) -> bool:
    """Whether ``value`` fits ``schema`` (the few JSON-schema words the fields use), so
    building a layer needs no schema library."""
    if "oneOf" in schema:
        return sum(_valid(value, s) for s in schema["oneOf"]) == 1
    if "enum" in schema:
        return isinstance(value, str) and value in schema["enum"]
    if schema["type"] == "null":
        return value is None
    if schema["type"] == "integer":
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and value >= schema.get("minimum", value)
        )
    if schema["type"] == "number":
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value >= schema.get("minimum", value)
            and value > schema.get("exclusiveMinimum", value - 1)
            and value < schema.get("exclusiveMaximum", value + 1)
        )
    return (  # array
        isinstance(value, (list, tuple))
        and schema["minItems"] <= len(value) <= schema["maxItems"]
        and all(_valid(v, schema["items"]) for v in value)
    )


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _hw(pair: tuple[int, int]) -> str:
    return f"{pair[0]}x{pair[1]}"


def fmt_shape(shape: Shape) -> str:
    """``28x28x1 map`` or ``vector of 784``: a shape as the error messages name it."""
    return f"{'x'.join(map(str, shape))} map" if len(shape) == 3 else f"vector of {shape[0]}"


class _Misfit(ValueError):
    """A layer that does not fit its input (the message names the shapes)."""


class _Layer:
    """What every layer kind shares: field checks in ``__post_init__``, the config form."""

    kind: ClassVar[str]

    def __post_init__(self):
        for f in dataclasses.fields(self):
            schema, value = f.metadata["schema"], getattr(self, f.name)
            if not _valid(value, schema):
                raise ValueError(
                    f"{self.kind} field {f.name!r}: must be {schema['description']}, got {value!r}"
                )
            if schema is _SIZE:
                object.__setattr__(self, f.name, _pair(value))

    @property
    def has_params(self) -> bool:
        """Whether it has a kernel and a bias (dense, conv2d)."""
        return isinstance(self, (Dense, Conv2D))

    def to_config(self) -> dict[str, Any]:
        """The config form: ``{type: kind, field: value, ...}``, square pairs as one int."""
        out: dict[str, Any] = {"type": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = value[0] if value[0] == value[1] else list(value)
            out[f.name] = value
        return out

    # Per image: the output shape, parameter shapes (kernel, bias) and multiply-adds.
    def out_shape(self, shape: Shape) -> Shape:
        raise NotImplementedError

    def param_shapes(self, shape: Shape) -> tuple[Shape, ...]:
        return ()

    def macs(self, shape: Shape) -> int:
        return 0


@dataclass(frozen=True)
class Dense(_Layer):
    """``y = act(x W + b)`` on a vector of ``n_in``; W is ``(n_in, units)``."""

    kind: ClassVar[str] = "dense"
    units: int = field(metadata={"schema": _POSITIVE})
    activation: str = field(
        default="relu", metadata={"schema": _choice(("relu", "linear", "softmax"))}
    )

    def describe(self) -> str:
        return f"dense {self.units}, {self.activation}"

    def out_shape(self, shape):
        if len(shape) != 1:
            raise _Misfit(
                f"dense layer on an unflattened {fmt_shape(shape)} (put a flatten before it)"
            )
        return (self.units,)

    def param_shapes(self, shape):
        return ((shape[0], self.units), (self.units,))

    def macs(self, shape):
        return shape[0] * self.units


@dataclass(frozen=True)
class Conv2D(_Layer):
    """``y[n,i,j,o] = act(b[o] + sum_{u,v,c} xp[n, i s_h + u, j s_w + v, c] W[u,v,c,o])``
    on an ``(H, W, C)`` map, ``xp`` the input padded as ``padding`` says; W is HWIO."""

    kind: ClassVar[str] = "conv2d"
    filters: int = field(metadata={"schema": _POSITIVE})
    kernel: tuple[int, int] = field(metadata={"schema": _SIZE})
    stride: tuple[int, int] = field(default=1, metadata={"schema": _SIZE})
    padding: str = field(default="valid", metadata={"schema": _choice(("valid", "same"))})
    activation: str = field(default="relu", metadata={"schema": _choice(("relu", "linear"))})

    def describe(self) -> str:
        return (
            f"conv2d {self.filters} filters {_hw(self.kernel)}, stride {_hw(self.stride)}, "
            f"{self.padding}, {self.activation}"
        )

    def pads(self, shape: Shape) -> tuple[tuple[int, int], tuple[int, int]]:
        """((top, bottom), (left, right)) zero rows/columns added to an ``(H, W, C)`` input."""
        if self.padding == "valid":
            return (0, 0), (0, 0)
        return (
            same_padding(shape[0], self.kernel[0], self.stride[0]),
            same_padding(shape[1], self.kernel[1], self.stride[1]),
        )

    def out_shape(self, shape):
        if len(shape) != 3:
            raise _Misfit(
                f"conv2d on a {fmt_shape(shape)} (after a flatten or dense layer); "
                "it needs an HxWxC map"
            )
        if self.padding == "valid" and (self.kernel[0] > shape[0] or self.kernel[1] > shape[1]):
            raise _Misfit(f"kernel {_hw(self.kernel)} larger than its input {fmt_shape(shape)}")
        return (
            output_size(shape[0], self.kernel[0], self.stride[0], self.padding),
            output_size(shape[1], self.kernel[1], self.stride[1], self.padding),
            self.filters,
        )

    def param_shapes(self, shape):
        return ((*self.kernel, shape[2], self.filters), (self.filters,))

    def macs(self, shape):
        h, w, _ = self.out_shape(shape)
        return h * w * self.filters * self.kernel[0] * self.kernel[1] * shape[2]


@dataclass(frozen=True)
class MaxPool2D(_Layer):
    """``y[n,i,j,c] = max_{u<p_h, v<p_w} x[n, i s_h + u, j s_w + v, c]`` (valid windows)."""

    kind: ClassVar[str] = "maxpool2d"
    pool: tuple[int, int] = field(metadata={"schema": _SIZE})
    stride: tuple[int, int] | None = field(
        default=None,
        metadata={
            "schema": {
                "oneOf": [_SIZE, {"type": "null"}],
                "description": f"{_SIZE['description']}, or null for the pool size",
            }
        },
    )

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "stride", _pair(self.pool if self.stride is None else self.stride))

    def describe(self) -> str:
        return f"maxpool2d {_hw(self.pool)}, stride {_hw(self.stride)}"

    def out_shape(self, shape):
        if len(shape) != 3:
            raise _Misfit(f"maxpool2d on a {fmt_shape(shape)}; it needs an HxWxC map")
        if self.pool[0] > shape[0] or self.pool[1] > shape[1]:
            raise _Misfit(f"pool {_hw(self.pool)} larger than its input {fmt_shape(shape)}")
        return (
            output_size(shape[0], self.pool[0], self.stride[0], "valid"),
            output_size(shape[1], self.pool[1], self.stride[1], "valid"),
            shape[2],
        )


@dataclass(frozen=True)
class Flatten(_Layer):
    """``(H, W, C) -> (H W C,)`` in (h, w, c) order; a vector passes unchanged."""

    kind: ClassVar[str] = "flatten"

    def describe(self) -> str:
        return "flatten"

    def out_shape(self, shape):
        return (math.prod(shape),)


@dataclass(frozen=True)
class Dropout(_Layer):
    """Training: ``y = x * keep / (1 - rate)``, ``keep ~ Bernoulli(1 - rate)`` per number;
    evaluation: ``y = x`` (inverted dropout)."""

    kind: ClassVar[str] = "dropout"
    rate: float = field(default=0.5, metadata={"schema": _RATE})

    def describe(self) -> str:
        return f"dropout {self.rate:g}"

    def out_shape(self, shape):
        return tuple(shape)


@dataclass(frozen=True)
class BatchNorm(_Layer):
    """``y = act(gamma (x - mu) / sqrt(var + epsilon) + beta)`` per channel (the last
    axis); mu, var the batch's (biased) in training, the running ones in evaluation
    (module docstring)."""

    kind: ClassVar[str] = "batchnorm"
    epsilon: float = field(default=1e-3, metadata={"schema": _EPSILON})
    momentum: float = field(default=0.99, metadata={"schema": _RATE})
    activation: str = field(default="linear", metadata={"schema": _choice(("relu", "linear"))})

    def describe(self) -> str:
        return f"batchnorm eps {self.epsilon:g}, momentum {self.momentum:g}, {self.activation}"

    def out_shape(self, shape):
        return tuple(shape)

    def param_shapes(self, shape):
        """gamma, beta, running mean, running variance: one number per channel each."""
        return ((shape[-1],),) * 4


Layer = Dense | Conv2D | MaxPool2D | Flatten | Dropout | BatchNorm
#: kind (the config's ``type``) -> layer class.
KINDS: dict[str, type] = {
    cls.kind: cls for cls in (Dense, Conv2D, MaxPool2D, Flatten, Dropout, BatchNorm)
}
#: Layers that keep their input's shape and sit between others (a flatten before a
#: dropout still decides the order of the next dense layer's rows).
SHAPE_KEEPING = (Dropout, BatchNorm)


def output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """Output rows (or columns) of a window sliding over ``size``: ceil(size / stride) for
    ``same``, floor((size - kernel) / stride) + 1 for ``valid`` (TensorFlow's)."""
    return -(-size // stride) if padding == "same" else (size - kernel) // stride + 1


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) zero rows of ``same`` padding, TensorFlow's convention:
    total = max((ceil(size / stride) - 1) stride + kernel - size, 0), before = total // 2,
    after = the rest (the odd row at the bottom/right)."""
    total = max((output_size(size, kernel, stride, "same") - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def layer_from_config(entry: Mapping) -> Layer:
    """One layer from its config form ``{type: kind, field: value, ...}`` (module docstring)."""
    if not isinstance(entry, Mapping) or "type" not in entry:
        raise ValueError(f"must be a mapping with a 'type' ({', '.join(KINDS)}), got {entry!r}")
    kind = entry["type"]
    if kind not in KINDS:
        raise ValueError(f"unknown type {kind!r}; known: {', '.join(KINDS)}")
    fields = {f.name: f for f in dataclasses.fields(KINDS[kind])}
    unknown = sorted(set(entry) - {"type", *fields})
    if unknown:
        known = ", ".join(fields) or "none"
        raise ValueError(f"{kind}: unknown key(s) {', '.join(map(repr, unknown))}; known: {known}")
    missing = [
        name for name, f in fields.items() if name not in entry and f.default is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"{kind}: missing {', '.join(map(repr, missing))}")
    return KINDS[kind](**{k: v for k, v in entry.items() if k != "type"})


def layer_schema() -> dict[str, Any]:
    """The JSON schema of one layer in config form, derived from the layer classes' fields
    (for the config schema's ``net_definitions``)."""
    branches = []
    for kind, cls in KINDS.items():
        props: dict[str, Any] = {"type": {}}
        for f in dataclasses.fields(cls):
            props[f.name] = dict(f.metadata["schema"])
            if f.default is not dataclasses.MISSING:
                props[f.name]["default"] = f.default
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        then = {"properties": props, "required": required, "additionalProperties": False}
        branches.append({"if": {"properties": {"type": {"const": kind}}}, "then": then})
    return {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": list(KINDS)}},
        "allOf": branches,
    }


def definitions_schema() -> dict[str, Any]:
    """The JSON schema of the config's ``net_definitions``: name -> list of layers."""
    return {
        "type": "object",
        "default": {},
        "additionalProperties": {"type": "array", "minItems": 1, "items": layer_schema()},
    }


class Flops(NamedTuple):
    """FLOPs per image (convention: module docstring)."""

    forward: int
    backward: int


@dataclass(frozen=True)
class Net:
    """A network: its name (the config's ``nets`` value) and its layers, input to output."""

    name: str
    layers: tuple[Layer, ...]

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers or not all(isinstance(layer, _Layer) for layer in self.layers):
            raise ValueError(f"network {self.name!r}: needs a non-empty sequence of layers")

    @classmethod
    def from_config(cls, name: str, definition) -> Net:
        """The network ``name`` from its config form (a list of layer mappings); a
        ValueError names the network and the index of every bad layer."""
        if isinstance(definition, (str, Mapping)) or not definition:
            raise ValueError(f"network {name!r}: must be a non-empty list of layers")
        layers, errors = [], []
        for i, entry in enumerate(definition):
            try:
                layers.append(layer_from_config(entry))
            except ValueError as error:
                errors.append(f"network {name!r}, layer {i}: {error}")
        if errors:
            raise ValueError("\n".join(errors))
        return cls(name, tuple(layers))

    def to_config(self) -> list[dict[str, Any]]:
        return [layer.to_config() for layer in self.layers]

    def _where(self, i: int) -> str:
        return f"network {self.name!r}, layer {i} ({self.layers[i].describe()})"

    def problems(self, input_shape: Shape, n_classes: int | None = None) -> list[str]:
        """Every reason the network does not fit images of ``input_shape`` and
        ``n_classes`` classes, each naming the network, the layer's index and kind, and
        the shapes (empty when it fits). After a layer that does not fit its input, the
        later layers' shapes are unknown: only where softmax is and the output layer are
        still checked."""
        out = []
        shape = tuple(input_shape)
        if not (len(shape) in (1, 3) and all(isinstance(n, int) and n >= 1 for n in shape)):
            return [f"network {self.name!r}: input shape {input_shape!r} is not (H, W, C) or (n,)"]
        for i, layer in enumerate(self.layers):
            try:
                new = layer.out_shape(shape)
            except _Misfit as error:
                out.append(f"{self._where(i)}: {error}")
                break
            shape = new
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers[:-1]):
            if getattr(layer, "activation", None) == "softmax":
                out.append(f"{self._where(i)}: softmax is only for the output layer")
        output = self.layers[last]
        if not (isinstance(output, Dense) and output.activation == "softmax"):
            out.append(f"{self._where(last)}: the output layer must be dense with softmax")
        elif n_classes is not None and output.units != n_classes:
            out.append(
                f"{self._where(last)}: {output.units} outputs for {n_classes} classes "
                f"(input {fmt_shape(tuple(input_shape))})"
            )
        return out

    def check(self, input_shape: Shape, n_classes: int | None = None) -> list[Shape]:
        """``shapes(input_shape)`` after checking the network fits (``problems``); a
        ValueError lists every problem."""
        problems = self.problems(input_shape, n_classes)
        if problems:
            raise ValueError("\n".join(problems))
        return self.shapes(input_shape)

    def shapes(self, input_shape: Shape) -> list[Shape]:
        """The input shape, then each layer's output shape: ``len(layers) + 1`` shapes,
        layer i maps ``shapes[i]`` to ``shapes[i + 1]``. A ValueError names a misfit."""
        out = [tuple(input_shape)]
        for i, layer in enumerate(self.layers):
            try:
                out.append(layer.out_shape(out[-1]))
            except _Misfit as error:
                raise ValueError(f"{self._where(i)}: {error}") from None
        return out

    @property
    def n_classes(self) -> int:
        """The output layer's units."""
        return self.layers[-1].units

    @property
    def param_layers(self) -> tuple[int, ...]:
        """Indices of the layers with a kernel and a bias (dense, conv2d), in order."""
        return tuple(i for i, layer in enumerate(self.layers) if layer.has_params)

    @property
    def norm_layers(self) -> tuple[int, ...]:
        """Indices of the batch norms, in order."""
        return tuple(i for i, layer in enumerate(self.layers) if isinstance(layer, BatchNorm))

    @property
    def dropout_layers(self) -> tuple[int, ...]:
        """Indices of the dropouts, in order (the order of a step's keep-masks)."""
        return tuple(i for i, layer in enumerate(self.layers) if isinstance(layer, Dropout))

    def layer_weights(self) -> dict[int, tuple[str, ...]]:
        """Layer index -> the names of its weights, for the layers that have any:
        ``(W{k}, b{k})`` for the k-th dense/conv2d, ``(gamma{k}, beta{k}, mean{k},
        var{k})`` for the k-th batch norm."""
        out, kernels, norms = {}, 0, 0
        for i, layer in enumerate(self.layers):
            if layer.has_params:
                kernels += 1
                out[i] = (f"W{kernels}", f"b{kernels}")
            elif isinstance(layer, BatchNorm):
                norms += 1
                out[i] = tuple(f"{p}{norms}" for p in ("gamma", "beta", "mean", "var"))
        return out

    @property
    def weight_names(self) -> tuple[str, ...]:
        """Every weight in layer order, trained or not (Keras' ``get_weights()`` order):
        ``W1, b1, gamma1, beta1, mean1, var1, W2, b2, ...``."""
        return tuple(name for names in self.layer_weights().values() for name in names)

    @property
    def param_names(self) -> tuple[str, ...]:
        """The trained weights in layer order (Keras' ``trainable_weights``): ``W1, b1,
        W2, b2, ...`` (``mlp``: the study's ``W1, b1, W2, b2``), batch norms' ``gamma{k},
        beta{k}`` where they are."""
        return tuple(n for n in self.weight_names if not n.startswith(("mean", "var")))

    @property
    def state_names(self) -> tuple[str, ...]:
        """The weights no gradient updates: each batch norm's running ``mean{k}, var{k}``."""
        return tuple(n for n in self.weight_names if n.startswith(("mean", "var")))

    @property
    def kernel_names(self) -> tuple[str, ...]:
        """``W1, W2, ...``: what weight decay decays (not biases, not batch norms')."""
        return tuple(n for n in self.weight_names if n[0] == "W")

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        """name -> shape of every weight (``weight_names`` order), in the canonical
        (Keras) layout."""
        shapes = self.shapes(input_shape)
        out = {}
        for i, names in self.layer_weights().items():
            out.update(zip(names, self.layers[i].param_shapes(shapes[i]), strict=True))
        return out

    def n_params(self, input_shape: Shape) -> int:
        """Trained numbers (``param_names``; a batch norm's running statistics not)."""
        shapes = self.param_shapes(input_shape)
        return sum(math.prod(shapes[name]) for name in self.param_names)

    def flops(self, input_shape: Shape) -> Flops:
        """FLOPs per image, forward and backward (convention: module docstring)."""
        shapes = self.shapes(input_shape)
        macs = [self.layers[i].macs(shapes[i]) for i in self.param_layers]
        return Flops(forward=2 * sum(macs), backward=2 * sum(macs) + 2 * sum(macs[1:]))

    def activations(self, input_shape: Shape) -> int:
        """Numbers per image a training step keeps for its backward pass: every layer's
        output, and each conv's window matrix (im2col: its output pixels times kh kw C)."""
        shapes = self.shapes(input_shape)
        windows = sum(
            math.prod(shapes[i + 1][:2]) * math.prod(layer.kernel) * shapes[i][2]
            for i, layer in enumerate(self.layers)
            if isinstance(layer, Conv2D)
        )
        return sum(math.prod(s) for s in shapes[1:]) + windows

    def flattened_maps(self, input_shape: Shape) -> dict[int, Shape]:
        """Parameterised layer number k (W{k}) -> the ``(H, W, C)`` map a flatten right
        before it flattened: the dense layers whose rows each framework orders its own
        way (NHWC: (h, w, c); NCHW: (c, h, w))."""
        shapes = self.shapes(input_shape)
        out = {}
        for k, i in enumerate(self.param_layers, 1):
            j = i - 1  # past the dropouts and batch norms between the flatten and the layer
            while j >= 0 and isinstance(self.layers[j], SHAPE_KEEPING):
                j -= 1
            if j >= 0 and isinstance(self.layers[j], Flatten) and len(shapes[j]) == 3:
                out[k] = shapes[j]
        return out


def he_uniform(rng: np.random.Generator, shape: Shape, dtype=np.float32) -> np.ndarray:
    """W ~ U(-sqrt(6/fan_in), +sqrt(6/fan_in)), the study's equation (11), with fan_in the
    product of all but the last axis (a dense kernel's n_in; a conv kernel's kh kw c_in,
    as Keras' HeUniform)."""
    limit = math.sqrt(6.0 / math.prod(shape[:-1]))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


#: The start of a batch norm's weights (every framework's): gamma 1, beta 0, running
#: mean 0, running variance 1.
_NORM_START = {"gamma": 1.0, "beta": 0.0, "mean": 0.0, "var": 1.0}


def init(net: Net, input_shape: Shape, rng: np.random.Generator, dtype=np.float32):
    """The shared start's weights (``weight_names``): He-uniform kernels drawn from
    ``rng`` in layer order (W1, then W2, ...), zero biases, batch norms' as every
    framework starts them (``_NORM_START``), canonical layout. For ``mlp`` these are the
    same generator calls as the study's draw, so the same numbers."""
    out = {}
    for name, shape in net.param_shapes(input_shape).items():
        if name[0] == "W":
            out[name] = he_uniform(rng, shape, dtype)
        else:
            fill = _NORM_START.get(name.rstrip("0123456789"), 0.0)
            out[name] = np.full(shape, fill, dtype)
    return out


def _rows_to_nchw(w: np.ndarray, hwc: Shape) -> np.ndarray:
    """A dense kernel's rows from (h, w, c) flatten order to (c, h, w)."""
    return w.reshape(*hwc, -1).transpose(2, 0, 1, 3).reshape(w.shape)


def _rows_to_nhwc(w: np.ndarray, hwc: Shape) -> np.ndarray:
    """A dense kernel's rows from (c, h, w) flatten order to (h, w, c)."""
    h, w_, c = hwc
    return w.reshape(c, h, w_, -1).transpose(1, 2, 0, 3).reshape(w.shape)


def to_torch(net: Net, input_shape: Shape, params: Mapping[str, np.ndarray]):
    """``params`` (canonical layout) in PyTorch's: conv kernels OIHW (``nn.Conv2d.weight``),
    dense kernels ``(out, in)`` (``nn.Linear.weight``) with the rows of a dense layer right
    after a flatten in NCHW's flatten order; biases as they are. New contiguous arrays."""
    maps = net.flattened_maps(input_shape)
    out = {}
    for k, i in enumerate(net.param_layers, 1):
        w = np.asarray(params[f"W{k}"])
        if isinstance(net.layers[i], Conv2D):
            w = w.transpose(3, 2, 0, 1)
        else:
            w = (_rows_to_nchw(w, maps[k]) if k in maps else w).T
        out[f"W{k}"] = np.ascontiguousarray(w)
        out[f"b{k}"] = np.array(params[f"b{k}"])
    return _with_norms(net, params, out)


def _with_norms(net: Net, params, out: dict) -> dict:
    """``out`` with the batch norms' weights of ``params`` (one number per channel, the
    same in every layout), in ``weight_names`` order; those ``params`` lacks are left out
    (gradients have no running statistics)."""
    for i in net.norm_layers:
        for name in net.layer_weights()[i]:
            if name in params:
                out[name] = np.array(params[name])
    return {name: out[name] for name in net.weight_names if name in out}


def from_torch(net: Net, input_shape: Shape, params: Mapping[str, np.ndarray]):
    """The inverse of ``to_torch``: PyTorch's layout back to the canonical one."""
    maps = net.flattened_maps(input_shape)
    out = {}
    for k, i in enumerate(net.param_layers, 1):
        w = np.asarray(params[f"W{k}"])
        if isinstance(net.layers[i], Conv2D):
            w = w.transpose(2, 3, 1, 0)
        else:
            w = _rows_to_nhwc(w.T, maps[k]) if k in maps else w.T
        out[f"W{k}"] = np.ascontiguousarray(w)
        out[f"b{k}"] = np.array(params[f"b{k}"])
    return _with_norms(net, params, out)


def _mlp(name: str, *hidden: int) -> Net:
    return Net(name, (Flatten(), *(Dense(n) for n in hidden), Dense(10, "softmax")))


def _cnn(name: str, f1: int, f2: int, *before_output: Layer) -> Net:
    return Net(
        name,
        (
            Conv2D(f1, 3),
            MaxPool2D(2),
            Conv2D(f2, 3),
            MaxPool2D(2),
            Flatten(),
            *before_output,
            Dense(10, "softmax"),
        ),
    )


#: The study's network, the config's default ``nets``: what a run without a net trained.
DEFAULT = "mlp"

#: The built-in networks (the config's ``net_definitions`` add more; see ``networks``).
#: ``mlp`` is the study's 784-64-10; ``cnn`` is Keras' ``mnist_convnet`` example without its
#: dropout (34,826 parameters on 28x28x1); ``cnn-dropout`` with it (Keras' placement: rate
#: 0.5 before the output layer); ``cnn-small`` the same shape, 8 and 16 filters.
CATALOG: dict[str, Net] = {
    net.name: net
    for net in (
        _mlp("mlp", 64),
        _mlp("mlp-wide", 1024),
        _mlp("mlp-deep", 256, 256, 256),
        _cnn("cnn", 32, 64),
        _cnn("cnn-dropout", 32, 64, Dropout(0.5)),
        _cnn("cnn-small", 8, 16),
    )
}


def networks(definitions: Mapping[str, Any] | None = None) -> dict[str, Net]:
    """The catalog plus the config's ``net_definitions`` (name -> config form); a
    ValueError names every bad definition and every name the catalog already has."""
    out, errors = dict(CATALOG), []
    for name, definition in (definitions or {}).items():
        if name in CATALOG:
            errors.append(f"network {name!r}: already in the catalog ({', '.join(CATALOG)})")
            continue
        try:
            out[name] = Net.from_config(name, definition)
        except ValueError as error:
            errors.append(str(error))
    if errors:
        raise ValueError("\n".join(errors))
    return out


def get(name: str, definitions: Mapping[str, Any] | None = None) -> Net:
    """The network ``name`` (catalog or ``definitions``); unknown names list the known."""
    nets = networks(definitions)
    if name not in nets:
        raise KeyError(f"unknown network {name!r}; known: {', '.join(nets)}")
    return nets[name]
