"""Any network of ``mlpstudy.nets`` in PyTorch, written as a PyTorch user writes it.

An ``nn.Sequential`` of ``nn.Conv2d``, ``nn.MaxPool2d``, ``nn.Flatten``, ``nn.Linear``
and ``nn.ReLU`` (the study's MLP: ``nn.Sequential(nn.Linear(784, 64), nn.ReLU(),
nn.Linear(64, 10))``) outputs logits and ``nn.CrossEntropyLoss`` takes them: the net's
softmax output layer sits inside the loss (log-softmax + negative log-likelihood, the
numerically stable form). The loop is PyTorch's usual one: index the epoch's
permutation for the mini-batch, ``zero_grad``, forward, ``loss.backward()``,
``optimizer.step()``. No ``DataLoader``: the data are two
tensors in memory, and its per-sample fetch and collate (or a batch sampler's extra
indexing layer) only add Python work per step; measured on 60000 rows at batch 32,
see ``benchmarks/bench_backends.py``.

PyTorch stores its weights in its own layout (``nn.Linear``: (out, in); ``nn.Conv2d``:
OIHW) and takes images as NCHW: the shared start goes in through ``nets.to_torch`` (the
rows of a dense layer after a flatten reordered to NCHW's flatten order), the data are
transposed once per run, and ``RunResult.params`` comes back in the canonical layout.

Option ``compile`` (default false): ``torch.compile`` of the loss of a batch (model +
criterion; AOTAutograd compiles its backward too, Inductor generates C++ kernels with
the system's compiler). The optimizer's step stays eager: it is one foreach update of
four tensors. Compilation happens in the first epoch (``first_epoch_s`` carries it),
once for the full batch and once for a short last batch (``dynamic=False``); Dynamo's
own timer gives the compile time apart, as ``metrics["compile_s"]``.

Optimizers: ``torch.optim.SGD(lr)``; ``SGD(lr, momentum, nesterov)``, whose buffer
``b = m b + g``, ``w -= lr b`` equals Keras' ``v = m v - lr g``, ``w += v`` with
``v = -lr b`` for a constant learning rate; ``Adam(lr, betas, eps)``. PyTorch adds
``eps`` to sqrt(v_hat) (Kingma & Ba's Algorithm 1); Keras, whose number the config's
``epsilon`` is, adds it to sqrt(v) before the bias correction, which is PyTorch's form
with ``eps_t = epsilon / sqrt(1 - beta_2^t)``. So the param group's ``eps`` is set to
``eps_t`` before each step (as a scheduler sets ``lr``), and all backends run the same
Adam. PyTorch's default eps (1e-8) is not used.

Regularisation (``mlpstudy.regularization``: the conventions), with PyTorch's own
mechanisms where they compute exactly that:

- ``l2``: ``torch.optim``'s ``weight_decay`` (coupled: ``g + lambda W``, before
  momentum's buffer and Adam's moments) in a param group of the kernels alone; biases
  and batch norms' weights are a group without it.
- ``decoupled``: ``torch.optim.AdamW`` for Adam (``W *= 1 - lr wd`` before Adam's update,
  at the weights the gradient was taken at), the kernels' group only; PyTorch has no
  SGDW, so for SGD and momentum the kernels are scaled by ``1 - lr wd`` by hand right
  before ``optimizer.step()``, the same place.
- ``dropout``: with the shared start, ``SharedDropout`` multiplies by the step's
  keep-mask and 1 / (1 - rate) (the epoch's masks, ``SharedStart.keep_masks``, turned
  to NCHW, and a vector's columns after a flatten of a map to NCHW's flatten order,
  once per epoch); with an independent start, ``nn.Dropout`` and PyTorch's generator,
  seeded by ``framework_seed``.
- ``batchnorm``: ``KerasBatchNorm``, ``F.batch_norm`` with the net's epsilon (PyTorch's
  default is 1e-5) on the batch's statistics in training and the running ones in
  evaluation; the running statistics are updated after each step by hand, as
  ``momentum old + (1 - momentum) batch`` with the batch's biased variance, because
  ``nn.BatchNorm`` weighs the new batch by its ``momentum`` (ours is 1 minus it) and
  keeps the unbiased variance. Under autocast its statistics are float32.

Implements ``base.Backend``, like every other backend module.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

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


def set_threads(n: int) -> dict[str, int]:
    """Set PyTorch's intra-/inter-op pools (and NumPy's BLAS) to ``n``; return them.

    The inter-op pool can be sized only before PyTorch first uses it; after that its
    size stays, and the returned dict says which sizes are in effect.
    """
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # the inter-op pool has started: its size is fixed
        pass
    threadpool_limits(limits=n)  # NumPy's BLAS, in case anything here uses it
    return {
        "torch_intra_op": torch.get_num_threads(),
        "torch_inter_op": torch.get_num_interop_threads(),
    }


def start(spec: TrainSpec) -> SharedStart | None:
    """The shared start, or None: PyTorch then draws its own weights and batch order
    from a ``torch.Generator`` seeded by ``(seed, trial)`` (see ``build_model``)."""
    return SharedStart.of(spec) if spec.start == "shared" else None


class SharedDropout(nn.Module):
    """Inverted dropout by a given keep-mask: ``x * keep / (1 - rate)`` in training, the
    identity in evaluation or without a mask (``forward``'s ``keep``, one per step)."""

    def __init__(self, rate: float):
        super().__init__()
        self.scale = 1.0 / (1.0 - rate)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        if not self.training or keep is None:
            return x
        return x * keep * self.scale


class KerasBatchNorm(nn.Module):
    """Batch norm in Keras' conventions (``nets.BatchNorm``): normalise by the batch's
    mean and biased variance in training, by the running ones in evaluation; the running
    statistics move only by ``update_statistics`` (after a step), as ``momentum old +
    (1 - momentum) batch`` with the batch's biased variance."""

    def __init__(self, channels: int, epsilon: float, momentum: float):
        super().__init__()
        self.eps, self.momentum = float(epsilon), float(momentum)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.batch = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            stats = self.running_mean, self.running_var
            return nn.functional.batch_norm(x, *stats, self.weight, self.bias, False, 0.0, self.eps)
        with torch.no_grad():  # the batch's statistics, kept for update_statistics
            dims = [d for d in range(x.dim()) if d != 1]
            x32 = x if x.dtype == torch.float64 else x.float()  # bfloat16: float32 sums
            self.batch = (x32.mean(dims), x32.var(dims, unbiased=False))
        return nn.functional.batch_norm(x, None, None, self.weight, self.bias, True, 0.0,
                                        self.eps)  # fmt: skip

    @torch.no_grad()
    def update_statistics(self) -> None:
        mean, var = self.batch
        self.running_mean.mul_(self.momentum).add_(
            mean.to(self.running_mean), alpha=1 - self.momentum
        )
        self.running_var.mul_(self.momentum).add_(var.to(self.running_var), alpha=1 - self.momentum)


def build_model(
    net: nets.Net,
    input_shape: tuple[int, ...],
    params: Params | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    shared_dropout: bool = True,
) -> nn.Sequential:
    """``net`` as an ``nn.Sequential`` in ``dtype`` for inputs of ``input_shape`` (an
    (H, W, C) image arrives as NCHW, ``to_nchw``); ``params`` (canonical layout,
    converted by ``nets.to_torch``) are its weights if given. The output layer emits
    logits: its softmax is in ``nn.CrossEntropyLoss``. A ``same`` conv gets TensorFlow's
    padding explicitly (``nn.ZeroPad2d``, the odd pixel bottom/right); a flatten of a
    flat input builds no module. A dropout is ``SharedDropout`` (the given keep-masks:
    ``forward``) or, with ``shared_dropout=False``, ``nn.Dropout``; a batch norm
    ``KerasBatchNorm`` (then its ReLU, if it has one).

    Without ``params``: He-uniform kernels by ``nn.init.kaiming_uniform_`` (bound
    sqrt(6 / fan_in), the study's equation (11); PyTorch's own default for ``nn.Linear``
    is a narrower uniform with nonzero biases) and zero biases.
    """
    shapes = net.shapes(input_shape)
    modules, weighted, norms = [], [], []
    for layer, shape in zip(net.layers, shapes, strict=False):
        if isinstance(layer, nets.Flatten):
            if len(shape) > 1:
                modules.append(nn.Flatten())
            continue
        if isinstance(layer, nets.MaxPool2D):
            modules.append(nn.MaxPool2d(layer.pool, layer.stride))
            continue
        if isinstance(layer, nets.Dropout):
            modules.append(SharedDropout(layer.rate) if shared_dropout else nn.Dropout(layer.rate))
            continue
        if isinstance(layer, nets.BatchNorm):
            norms.append(KerasBatchNorm(shape[-1], layer.epsilon, layer.momentum))
            modules.append(norms[-1])
            if layer.activation == "relu":
                modules.append(nn.ReLU())
            continue
        if isinstance(layer, nets.Conv2D):
            (top, bottom), (left, right) = layer.pads(shape)
            if top or bottom or left or right:
                modules.append(nn.ZeroPad2d((left, right, top, bottom)))
            weighted.append(nn.Conv2d(shape[2], layer.filters, layer.kernel, layer.stride))
        else:
            weighted.append(nn.Linear(shape[0], layer.units))
        modules.append(weighted[-1])
        if layer.activation == "relu":
            modules.append(nn.ReLU())
    model = nn.Sequential(*modules).to(dtype)
    model.weighted = weighted  # the parameterised modules, in the net's order
    model.norms = norms  # the batch norms, in the net's order
    converted = None if params is None else nets.to_torch(net, input_shape, params)
    with torch.no_grad():
        for k, module in enumerate(weighted, start=1):
            if converted is None:
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu", generator=generator)
                nn.init.zeros_(module.bias)
            else:
                module.weight.copy_(torch.from_numpy(converted[f"W{k}"]))
                module.bias.copy_(torch.from_numpy(converted[f"b{k}"]))
        for k, module in enumerate(norms, start=1):  # else as built: 1, 0, 0, 1
            if converted is not None:
                for tensor, name in zip(_norm_tensors(module), ("gamma", "beta", "mean", "var")):
                    if f"{name}{k}" in converted:
                        tensor.copy_(torch.from_numpy(converted[f"{name}{k}"]))
    return model


def _norm_tensors(module: KerasBatchNorm) -> tuple[torch.Tensor, ...]:
    """gamma, beta, running mean, running variance: the canonical names' order."""
    return module.weight, module.bias, module.running_mean, module.running_var


def forward(model: nn.Sequential, x: torch.Tensor, keep: list | None = None) -> torch.Tensor:
    """The model's logits, each ``SharedDropout`` given its keep-mask from ``keep`` (in
    order; None: none)."""
    masks = iter(keep or ())
    for module in model:
        x = module(x, next(masks, None)) if isinstance(module, SharedDropout) else module(x)
    return x


def torch_masks(net: nets.Net, input_shape, keep: KeepMasks) -> list[torch.Tensor]:
    """Keep-masks (canonical: NHWC maps, vectors in (h, w, c) flatten order) in PyTorch's
    layout: NCHW maps, and a vector after a flatten of a map in (c, h, w) order."""
    shapes, out = net.shapes(input_shape), []
    for i, mask in zip(net.dropout_layers, keep):
        mask = np.asarray(mask)
        if mask.ndim == 4:
            mask = mask.transpose(0, 3, 1, 2)
        else:
            j = i - 1
            while j >= 0 and isinstance(net.layers[j], nets.SHAPE_KEEPING):
                j -= 1
            if j >= 0 and isinstance(net.layers[j], nets.Flatten) and len(shapes[j]) == 3:
                h, w, c = shapes[j]
                mask = mask.reshape(len(mask), h, w, c).transpose(0, 3, 1, 2)
                mask = mask.reshape(len(mask), -1)
        out.append(torch.from_numpy(np.ascontiguousarray(mask)))
    return out


def to_nchw(x: np.ndarray) -> np.ndarray:
    """NHWC images as PyTorch's NCHW (contiguous); flat rows as they are."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x


def optimizer(spec: TrainSpec, model: nn.Module) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer of ``spec`` with the config's numbers (Adam's eps is
    set per step by ``_keras_epsilon``): one param group, or, with a weight decay, the
    kernels' group with it (``l2``: ``weight_decay``; ``decoupled`` Adam: ``AdamW``) and
    the other weights' without."""
    lr, settings = spec.learning_rate, spec.optimizer_settings
    kernels = [module.weight for module in model.weighted]
    others = [p for p in model.parameters() if all(p is not k for k in kernels)]
    decay = spec.l2 or (spec.weight_decay if spec.optimizer == "adam" else 0.0)
    groups = (
        [{"params": kernels, "weight_decay": decay}, {"params": others, "weight_decay": 0.0}]
        if decay
        else [{"params": list(model.parameters())}]
    )
    if spec.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    if spec.optimizer == "momentum":
        return torch.optim.SGD(
            groups, lr=lr, momentum=settings["momentum"], nesterov=settings["nesterov"]
        )
    if spec.optimizer == "adam":
        adam = torch.optim.AdamW if spec.weight_decay else torch.optim.Adam
        return adam(
            groups,
            lr=lr,
            betas=(settings["beta_1"], settings["beta_2"]),
            eps=settings["epsilon"],
        )
    raise ValueError(f"unknown optimizer {spec.optimizer!r}")


def _hand_decay(spec: TrainSpec, model: nn.Module):
    """What runs right before ``opt.step()`` for ``decoupled`` SGD and momentum (PyTorch
    has no SGDW): the kernels scaled by 1 - lr wd; for everything else nothing."""
    if not spec.weight_decay or spec.optimizer == "adam":
        return lambda: None
    kernels = [module.weight for module in model.weighted]
    factor = 1.0 - spec.learning_rate * spec.weight_decay

    @torch.no_grad()
    def decay():
        torch._foreach_mul_(kernels, factor)

    return decay


def gradients(
    net: nets.Net, params: Params, x: np.ndarray, y: np.ndarray, keep: KeepMasks | None = None
) -> tuple[float, Params]:
    """Mean cross-entropy of the batch ``(x, y)`` for ``net`` and its gradients, by
    autograd, in training mode (batch norms on the batch's statistics, dropouts applying
    ``keep``). Works in the dtype of ``params`` (float64 for finite-difference checks)."""
    dtype, shape = _dtype(params), x.shape[1:]
    model = build_model(net, shape, params, dtype=dtype)
    masks = None if keep is None else torch_masks(net, shape, keep)
    logits = forward(model, torch.as_tensor(to_nchw(np.asarray(x)), dtype=dtype), masks)
    loss = nn.CrossEntropyLoss()(logits, _labels(y))
    loss.backward()
    return loss.item(), _params(net, shape, model, grad=True)


def evaluate(net: nets.Net, params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``net`` at ``params`` on ``(x, y)`` (in their
    dtype)."""
    dtype, shape = _dtype(params), x.shape[1:]
    model = build_model(net, shape, params, dtype=dtype)
    rows = eval_rows(net, shape, dtype.itemsize)
    return _scores(model, torch.as_tensor(to_nchw(np.asarray(x)), dtype=dtype), _labels(y), rows)


def train(
    spec: TrainSpec,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    on_epoch: EpochCallback | None = None,
    cores: LoopCores | None = None,
) -> RunResult:
    """Train the network with ``spec``'s optimizer; return a ``RunResult``."""
    options = info("torch").resolve_options(spec.options)
    run_start = start(spec)
    generator = None
    if run_start is None:
        generator = torch.Generator().manual_seed(framework_seed(spec))
        torch.manual_seed(framework_seed(spec))  # nn.Dropout draws from the default one
    dtype, net = spec.param_dtype, spec.net
    shape = model_input(net, spec.input_shape)
    model = build_model(
        net,
        shape,
        run_start.params if run_start is not None else None,
        generator,
        _dtype(dtype),
        shared_dropout=run_start is not None,
    )
    opt = optimizer(spec, model)
    hand_decay = _hand_decay(spec, model)
    scaler = grad_scaler(spec)
    criterion = nn.CrossEntropyLoss()
    n, batch = len(x_train), spec.batch_size
    # Tensors once per run (from_numpy shares NumPy's memory when it is in ``dtype`` and
    # needs no transpose to NCHW).
    x_train, x_test = (
        torch.from_numpy(to_nchw(np.asarray(x, dtype).reshape(len(x), *shape)))
        for x in (x_train, x_test)
    )
    y_train, y_test = _labels(y_train), _labels(y_test)
    rows = eval_rows(net, shape, dtype.itemsize)

    def batch_loss(xb, yb, keep):
        with autocast(spec):
            return criterion(forward(model, xb, keep), yb)

    if options["compile"]:
        batch_loss = torch.compile(batch_loss, dynamic=False)
    keras_epsilon = _keras_epsilon(spec, opt)
    shared_masks = run_start is not None and bool(net.dropout_layers)

    def shuffle(epoch):
        if run_start is None:
            return torch.randperm(n, generator=generator), None
        order = torch.from_numpy(run_start.permutation(n))
        masks = run_start.keep_masks(n)  # every epoch, as every backend draws them
        return order, torch_masks(net, shape, masks) if shared_masks else None

    def train_epoch(data):
        order, masks = data
        model.train()
        for s in range(0, n, batch):
            idx = order[s : s + batch]
            keep = None if masks is None else [mask[s : s + batch] for mask in masks]
            opt.zero_grad()
            loss = batch_loss(x_train[idx], y_train[idx], keep)
            scaler.scale(loss).backward()
            keras_epsilon()
            hand_decay()
            scaler.step(opt)  # opt.step() itself unless float16 (then on unscaled grads)
            scaler.update()
            for norm in model.norms:
                norm.update_statistics()

    def evaluate_epoch():
        with autocast(spec):  # the model as it trains: bfloat16 compute under bfloat16
            loss, accuracy = _scores(model, x_train, y_train, rows)
            return loss, accuracy, _scores(model, x_test, y_test, rows)[1]

    def penalty():  # a sum of squares: the same in PyTorch's layout
        return spec.penalty({f"W{k}": m.weight.detach().numpy()
                             for k, m in enumerate(model.weighted, 1)})  # fmt: skip

    compiled_before = _compile_s()
    result = run_epochs(spec, shuffle, train_epoch, evaluate_epoch, on_epoch, options, cores,
                        penalty if spec.l2 else None)  # fmt: skip
    result.metrics["compile_s"] = _compile_s() - compiled_before
    result.params = _params(net, shape, model)
    return result


def autocast(spec: TrainSpec):
    """The context of a forward pass and its loss: ``torch.autocast("cpu",
    dtype=torch.bfloat16)`` for ``precision="bfloat16"`` (``torch.float16`` for
    ``"float16"``; PyTorch's mixed precision: the float32 weights stay,
    ``nn.Linear``/``nn.Conv2d`` run on bfloat16 copies of their inputs and weights,
    ``cross_entropy`` in float32; the backward pass follows the casts), else one that
    changes nothing."""
    dtype = getattr(torch, spec.compute) if spec.compute else torch.bfloat16
    return torch.autocast("cpu", dtype=dtype, enabled=spec.compute is not None)


def grad_scaler(spec: TrainSpec) -> torch.amp.GradScaler:
    """PyTorch's dynamic loss scaling for float16 (``torch.amp.GradScaler("cpu")``: the
    loss times the scale, halved after a step with inf/NaN gradients, which it skips,
    doubled after 2000 clean ones), disabled (a pass-through) for every other precision.
    The initial scale is Keras' 2^15 (its ``LossScaleOptimizer``; PyTorch's default is
    2^16, which overflowed float16 in cnn-small's first backward pass here and skipped
    that step: 7.5e-2 off the float32 run after an epoch, 7e-5 at 2^15); the halving,
    doubling and 2000 steps are both frameworks' defaults."""
    return torch.amp.GradScaler("cpu", init_scale=2.0**15, enabled=spec.precision == "float16")


def _keras_epsilon(spec: TrainSpec, opt: torch.optim.Optimizer):
    """A callable to run before each ``opt.step()``: for Adam it sets the param group's
    eps to ``epsilon / sqrt(1 - beta_2^t)`` (Keras' epsilon in PyTorch's formula, see
    the module docstring); for the other optimizers it does nothing."""
    if spec.optimizer != "adam":
        return lambda: None
    groups = opt.param_groups
    epsilon, beta_2 = spec.optimizer_settings["epsilon"], spec.optimizer_settings["beta_2"]
    steps = iter(range(1, 2**62))

    def set_eps():
        eps = epsilon / math.sqrt(1 - beta_2 ** next(steps))
        for group in groups:
            group["eps"] = eps

    return set_eps


def _compile_s() -> float:
    """Seconds ``torch.compile`` has spent compiling in this process so far (forward and
    backward graphs: Dynamo's own timer, ``torch._dynamo.utils``; 0 if never imported)."""
    dynamo_utils = sys.modules.get("torch._dynamo.utils")
    if dynamo_utils is None:
        return 0.0
    return dynamo_utils.calculate_time_spent().get("total_wall_time", 0.0)


@torch.inference_mode()
def _scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rows: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on the whole of ``(x, y)``, ``rows`` at a time."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for s in range(0, len(x), rows):
        logits = model(x[s : s + rows])
        yb = y[s : s + rows]
        loss_sum += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(dim=1) == yb).sum())
    return loss_sum / len(x), correct / len(x)


def _params(net: nets.Net, input_shape, model: nn.Sequential, grad: bool = False) -> Params:
    """The model's parameters (or their gradients) as NumPy arrays in the canonical
    layout (``nets.from_torch``)."""
    out = {}
    for k, module in enumerate(model.weighted, start=1):
        w, b = (module.weight.grad, module.bias.grad) if grad else (module.weight, module.bias)
        out[f"W{k}"], out[f"b{k}"] = w.detach().numpy(), b.detach().numpy()
    for k, module in enumerate(model.norms, start=1):
        tensors = _norm_tensors(module)[:2] if grad else _norm_tensors(module)
        if grad:
            tensors = tuple(t.grad for t in tensors)
        for tensor, name in zip(tensors, ("gamma", "beta", "mean", "var")):
            out[f"{name}{k}"] = tensor.detach().numpy().copy()
    return nets.from_torch(net, input_shape, out)


def _dtype(of: Params | np.dtype) -> torch.dtype:
    """torch's dtype for a NumPy dtype, or for the dtype of ``params``."""
    dtype = np.dtype(of) if not isinstance(of, dict) else np.asarray(of["W1"]).dtype
    return torch.float64 if dtype == np.float64 else torch.float32


def _labels(y) -> torch.Tensor:
    """Class labels as the int64 tensor ``CrossEntropyLoss`` takes."""
    return torch.as_tensor(np.asarray(y), dtype=torch.int64)
