"""The regularisations of the ``regularization`` axis, their settings and conventions,
defined once.

``SETTINGS`` is the JSON-schema fragment of each setting's numbers, defaults included
(the config schema's ``regularization_settings`` is checked against it, ``TrainSpec``
resolves with it); ``apply`` gives the network a regularisation trains (dropout and batch
norm are layers: ``mlpstudy.nets``); ``penalty`` is the number an ``l2`` run adds to its
loss. The conventions, the same in every backend:

- ``none``: the network as it is defined (a definition's own dropout layers included).
- ``l2``: coupled weight decay: ``lambda / 2 * sum(W**2)`` over the kernels (``W1, W2,
  ...``; not biases, not batch norms' gamma and beta) added to the training loss, so
  every kernel's gradient gains ``lambda W`` and the optimizer sees it (Adam's moments
  too). A run's history reports both: ``train_loss`` the data loss (mean cross-entropy,
  comparable across settings) and ``train_objective`` the loss with the penalty.
- ``decoupled``: decoupled weight decay (Loshchilov & Hutter's AdamW; Keras 3's
  ``weight_decay``, ``torch.optim.AdamW``, optax's ``add_decayed_weights`` after the
  optimizer's scaling): each step, every kernel ``W <- W - lr * weight_decay * W`` with
  the weights the gradient was taken at, beside the optimizer's own update (which sees
  no decay): ``W <- W - lr wd W + update(g)``. Keras and PyTorch decay before applying
  the update, optax adds the decay to it; with the decay taken from the same W these are
  one formula. Kernels only, as ``l2``. With plain SGD it is ``l2`` with ``lambda =
  weight_decay`` (a test checks it); with momentum or Adam it is not.
- ``dropout``: inverted dropout (``nets.Dropout``) where the definition puts it; a
  network without one gets it after every hidden dense layer, or, with none (a CNN),
  before its output layer (Keras' ``mnist_convnet`` placement; ``nets``' ``cnn-dropout``),
  at ``rate``. With the shared start every backend applies the same keep-masks
  (``base.SharedStart.keep_masks``); with independent starts each framework its own
  dropout and generator.
- ``batchnorm``: a batch norm (``nets.BatchNorm``, ``epsilon`` and ``momentum`` from the
  settings, Keras' conventions: module docstring of ``nets``) after every hidden dense
  and conv layer, before its activation: the layer turns linear and the batch norm gets
  its activation. The layer keeps its bias (every framework's default; the batch norm
  makes its gradient zero).

Every real-valued setting is used as the float32 number nearest to it (as optimizer
settings are, ``optimizers.resolve``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from mlpstudy import nets
from mlpstudy.backends.optimizers import resolve_settings

#: The study's setting, the config's default: no regularisation.
DEFAULT = "none"

#: name -> JSON-schema fragment of its settings (an object), each setting with its default.
SETTINGS: dict[str, dict[str, Any]] = {
    "none": {"type": "object", "additionalProperties": False, "properties": {}},
    "l2": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "lambda": {
                "type": "number",
                "minimum": 0,
                "default": 5e-4,
                "description": "lambda of the penalty lambda/2 * sum(W**2) over the kernels",
            },
        },
    },
    "decoupled": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "weight_decay": {
                "type": "number",
                "minimum": 0,
                "default": 5e-4,
                "description": "wd of W <- W - lr * wd * W each step, kernels only",
            },
        },
    },
    "dropout": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "rate": {
                "type": "number",
                "minimum": 0,
                "exclusiveMaximum": 1,
                "default": 0.5,
                "description": "probability that a number is dropped, in [0, 1)",
            },
        },
    },
    "batchnorm": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "epsilon": {
                "type": "number",
                "exclusiveMinimum": 0,
                "default": 1e-3,
                "description": "added to the variance (Keras' default; PyTorch's is 1e-5)",
            },
            "momentum": {
                "type": "number",
                "minimum": 0,
                "exclusiveMaximum": 1,
                "default": 0.99,
                "description": "weight of the old running statistics (Keras' convention; "
                "PyTorch's momentum is 1 minus this)",
            },
        },
    },
}
#: Each regularisation as a study's name says it (``runs.label``).
TITLES: dict[str, str] = {
    "none": "no regularization",
    "l2": "l2 penalty",
    "decoupled": "decoupled weight decay",
    "dropout": "dropout",
    "batchnorm": "batch norm",
}
#: The regularisations of the axis, in the config's order.
REGULARIZATIONS: tuple[str, ...] = tuple(SETTINGS)
#: name -> {setting: default}.
DEFAULTS: dict[str, dict[str, Any]] = {
    name: {key: prop["default"] for key, prop in schema["properties"].items()}
    for name, schema in SETTINGS.items()
}


def resolve(kind: str, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``settings`` over ``kind``'s defaults, checked (a ValueError names the field
    ``regularization_settings.<kind>.<setting>`` and what is wrong), every number as the
    float32 number nearest to it (idempotent)."""
    if kind not in SETTINGS:
        raise ValueError(
            f"regularization must be one of {', '.join(REGULARIZATIONS)}, got {kind!r}"
        )
    return resolve_settings(
        SETTINGS[kind]["properties"],
        settings,
        f"regularization_settings.{kind}",
        lambda key: f"regularization_settings.{kind}.{key}",
    )


def apply(net: nets.Net, kind: str, settings: Mapping[str, Any] | None = None) -> nets.Net:
    """The network a run with regularisation ``kind`` trains (module docstring): ``net``
    itself for ``none``, ``l2`` and ``decoupled``; with dropout or batch norms inserted for
    ``dropout`` and ``batchnorm``. Idempotent: a net that already has its dropouts, or a
    batch norm after every hidden layer, is returned as it is. The name stays ``net``'s."""
    settings = resolve(kind, settings)
    layers = list(net.layers)
    hidden = net.param_layers[:-1]
    if kind == "dropout" and not net.dropout_layers:
        dense = [i for i in hidden if isinstance(layers[i], nets.Dense)]
        places = [i + 1 for i in dense] or [net.param_layers[-1]]
        for i in reversed(places):
            layers.insert(i, nets.Dropout(settings["rate"]))
    elif kind == "batchnorm":
        norm = nets.BatchNorm(settings["epsilon"], settings["momentum"])
        for i in reversed(hidden):
            if i + 1 < len(layers) and isinstance(layers[i + 1], nets.BatchNorm):
                continue
            layer = layers[i]
            layers[i] = dataclasses.replace(layer, activation="linear")
            layers.insert(i + 1, dataclasses.replace(norm, activation=layer.activation))
    return net if layers == list(net.layers) else nets.Net(net.name, tuple(layers))


def penalty(kind: str, settings: Mapping[str, Any], net: nets.Net, params) -> float:
    """What ``kind`` adds to the training loss at ``params``: ``lambda / 2 * sum(W**2)``
    over the kernels for ``l2`` (summed in float64), 0 for every other."""
    if kind != "l2":
        return 0.0
    lam = resolve(kind, settings)["lambda"]
    total = sum(float(np.sum(np.square(params[k], dtype=np.float64))) for k in net.kernel_names)
    return 0.5 * lam * total
