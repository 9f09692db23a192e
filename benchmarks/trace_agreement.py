"""Why Keras' Adam left the other backends, step by step (issue 17; docs/backends.md).

    .venv/bin/python benchmarks/trace_agreement.py               # the step trace (~1 min)
    .venv/bin/python benchmarks/trace_agreement.py --pairs       # every backend, 2 epochs (~4 min)

The trace follows one epoch of Adam (lr 0.01, batch 128) on the real MNIST from the shared
start, with the config's unrounded beta_2 = 0.999, and prints the largest parameter
difference (relative to each array's largest entry) from an exact float64 Adam on NumPy's
float64 gradients, for: Keras itself; Keras' gradients fed to the exact Adam; the exact
Adam with Keras' rounding (bias corrections from float32(beta) ** t); and Keras against
that rounding twin. ``--pairs`` trains every backend in float32 and float64 with each
optimizer (the resolved, float32-exact settings) and prints the largest pairwise
differences that tests/test_agreement_mnist.py's tolerances come from.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
STEPS = (1, 5, 20, 50, 100, 200, 400, 413, 414, 420, 469)


def mnist(directory: Path):
    from mlpstudy import dataset, idx

    x, y = idx.read_pair(
        directory / "train-images-idx3-ubyte.gz", directory / "train-labels-idx1-ubyte.gz"
    )
    xt, yt = idx.read_pair(
        directory / "t10k-images-idx3-ubyte.gz", directory / "t10k-labels-idx1-ubyte.gz"
    )
    return dataset.to_features(x), y.astype(np.int64), dataset.to_features(xt), yt.astype(np.int64)


class ExactAdam:
    """Keras' Adam formula in float64; ``keras_rounding``: bias corrections from
    float32(beta) ** t, as Keras computes them for a float32 model."""

    def __init__(self, params, lr=0.01, b1=0.9, b2=0.999, eps=1e-7, keras_rounding=False):
        self.p = {k: v.astype(np.float64) for k, v in params.items()}
        self.m = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.lr, self.b1, self.b2, self.eps, self.t = lr, b1, b2, eps, 0
        self.powers = (float(np.float32(b1)), float(np.float32(b2))) if keras_rounding else (b1, b2)

    def step(self, grads):
        self.t += 1
        p1, p2 = self.powers
        a = self.lr * np.sqrt(1 - p2**self.t) / (1 - p1**self.t)
        for k, g in grads.items():
            g = np.asarray(g, np.float64)
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g**2
            self.p[k] -= a * self.m[k] / (np.sqrt(self.v[k]) + self.eps)


def trace(data) -> None:
    import keras
    import tensorflow as tf

    from mlpstudy.backends import numpy_mlp as N
    from mlpstudy.backends import tensorflow_mlp as T
    from mlpstudy.backends.base import MLP, SharedStart

    T.set_threads(1)
    x, y = data[0], data[1]
    start = SharedStart(0, 0)
    order = start.permutation(len(x))
    model = T.build_model(MLP, (784,), start.params)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01, 0.9, 0.999, 1e-7),
        loss="sparse_categorical_crossentropy",
    )
    probe = T.build_model(MLP, (784,), start.params)

    @tf.function
    def keras_grads(xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(yb, probe(xb, training=True))
            )
        return tape.gradient(loss, probe.trainable_weights)

    reference, fed, twin = (
        ExactAdam(start.params),
        ExactAdam(start.params),
        ExactAdam(start.params, keras_rounding=True),
    )

    def rel(a, b):
        return max(
            float(np.abs(np.asarray(a[k], np.float64) - b[k]).max() / np.abs(b[k]).max())
            for k in MLP.param_names
        )

    print("step  keras-vs-ref  keras-grads+exact-adam-vs-ref  rounding-twin-vs-ref  "
          "keras-vs-rounding-twin")  # fmt: skip
    for t in range(1, max(STEPS) + 1):
        rows = order[(t - 1) * 128 : t * 128]
        xb, yb = x[rows], y[rows]
        model.train_on_batch(xb, yb)
        probe.set_weights([fed.p[k].astype(np.float32) for k in MLP.param_names])
        fed.step(
            dict(
                zip(
                    MLP.param_names,
                    [g.numpy() for g in keras_grads(tf.constant(xb), tf.constant(yb))],
                )
            )
        )
        for adam in (reference, twin):
            adam.step(N.gradients(MLP, adam.p, xb.astype(np.float64), yb)[1])
        if t in STEPS:
            keras_p = dict(zip(MLP.param_names, model.get_weights()))
            cells = (rel(keras_p, reference.p), rel(fed.p, reference.p), rel(twin.p, reference.p),
                     rel(keras_p, twin.p))  # fmt: skip
            print(f"{t:4d}  {cells[0]:12.1e}  {cells[1]:29.1e}  {cells[2]:20.1e}  {cells[3]:22.1e}")


def pairs(data) -> None:
    from mlpstudy.backends import BACKENDS, get_backend
    from mlpstudy.backends.base import TrainSpec

    cases = {
        "sgd": ("sgd", {}, 0.1),
        "momentum": ("momentum", {}, 0.01),
        "adam": ("adam", {}, 0.01),
    }
    for dtype, epochs in (("float32", 2), ("float64", 1)):
        for case, (optimizer, settings, lr) in cases.items():
            runs = {}
            for name in BACKENDS:
                module = get_backend(name)
                module.set_threads(1)
                spec = TrainSpec(
                    lr,
                    128,
                    epochs,
                    0,
                    0,
                    optimizer=optimizer,
                    optimizer_settings=settings,
                    options={"dtype": dtype},
                )
                runs[name] = module.train(spec, *data).history
            loss = images = 0.0
            for a, b in itertools.combinations(BACKENDS, 2):
                for ra, rb in zip(runs[a], runs[b], strict=True):
                    loss = max(loss, abs(ra["train_loss"] / rb["train_loss"] - 1))
                    images = max(
                        images,
                        abs(round(ra["test_accuracy"] * 1e4) - round(rb["test_accuracy"] * 1e4)),
                    )
            last = runs["numpy"][-1]["train_loss"]
            print(f"{dtype} {case:8s} {epochs} epoch(s): largest pairwise loss difference "
                  f"{loss:.1e} (relative), test accuracy {int(images)} image(s); "
                  f"numpy loss {last:.6f}", flush=True)  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", action="store_true", help="every backend, pairwise")
    parser.add_argument(
        "--mnist", type=Path, default=MNIST, help="directory of the four MNIST .gz files"
    )
    args = parser.parse_args(argv)
    data = mnist(args.mnist)
    (pairs if args.pairs else trace)(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
