"""Simulated studies with known truth, in the real table formats ({STUDY}/runs.csv and
histories.parquet), for the statistics' tests.

A world is a grid of learning rates x batch sizes x trials for each backend. Accuracy is a
smooth surface plus a backend offset, a **trial effect** shared by every cell of a trial, and
cell noise, rounded to whole test images (1 / ``n_test``). Time is a per-backend surface
times log-normal trial and run noise; step time is the time without the per-epoch
evaluation. Loss curves fall at a backend's rate and bend with ``curvature``, with jitter
that makes them rise now and then. ``identical`` copies NumPy's accuracy and loss curve to
every other backend (a shared start with implementations that compute the same thing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

LRS = [0.001, 0.003, 0.01, 0.03, 0.1]
BATCHES = [32, 64, 128, 256, 512]
SMALL = dict(lrs=[0.01, 0.03, 0.1], batches=[32, 128, 512])


@dataclass
class Backend:
    acc_offset: float = 0.0
    acc_trial_sd: float = 0.0  # trial effect, shared by the cells of a trial
    acc_cell_sd: float = 0.002
    time: float = 15.0  # seconds at the smallest batch size
    time_batch_exp: float = 0.0  # time ~ (batch / smallest) ** exp
    time_lr_exp: float = 0.0  # time ~ (lr / smallest) ** exp
    time_trial_sd: float = 0.0  # log-normal, shared by the cells of a trial
    time_sd: float = 0.01
    eval_share: float = 0.3
    rate: float = 0.3  # log loss per epoch
    jitter: float = 0.005  # sd of the log loss around its curve
    curvature: float = 0.0  # log loss falls as rate * e - curvature * e**2 / epochs


@dataclass
class World:
    lrs: list = field(default_factory=lambda: list(LRS))
    batches: list = field(default_factory=lambda: list(BATCHES))
    trials: int = 3
    epochs: int = 10
    n_test: int = 10_000
    seed: int = 0
    backends: dict = field(default_factory=lambda: {"numpy": Backend(), "tensorflow": Backend()})
    acc_base: float = 0.85
    acc_lr: float = 0.04  # per decade of learning rate
    acc_batch: float = -0.012  # per doubling of batch size ...
    acc_batch_lr: float = 0.005  # ... less steep by this per decade of learning rate
    identical: bool = False
    start: str = "shared"
    diverge: dict = field(default_factory=dict)  # (backend, lr, batch, trial) -> epoch
    extra: dict = field(default_factory=dict)  # constant extra columns of the run table
    histories: bool = True  # False: no loss curves (faster, for tests of the run table only)


def simulate(w: World) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(w.seed)
    lrs, bs = np.asarray(w.lrs, float), np.asarray(w.batches, float)
    L = np.log10(lrs / lrs[0])[:, None, None]  # [lr, batch, trial]
    B = np.log2(bs / bs[0])[None, :, None]
    shape = (lrs.size, bs.size, w.trials)
    surface = w.acc_base + w.acc_lr * L + (w.acc_batch + w.acc_batch_lr * L) * B
    e = np.arange(1, w.epochs + 1)
    first = next(iter(w.backends))
    acc, curves = {}, {}
    runs, hist = [], []
    for name, p in w.backends.items():
        if w.identical and name != first:
            acc[name], curves[name] = acc[first], curves[first]
        else:
            u = rng.normal(0, 1, w.trials)[None, None, :] * p.acc_trial_sd
            a = surface + p.acc_offset + u + rng.normal(0, 1, shape) * p.acc_cell_sd
            acc[name] = np.round(np.clip(a, 0, 1) * w.n_test) / w.n_test
            z = rng.normal(0, 1, (*shape, e.size))
            curves[name] = np.log(2.3) - p.rate * e + p.curvature * e**2 / w.epochs + p.jitter * z
        v = rng.normal(0, 1, w.trials)[None, None, :] * p.time_trial_sd
        t = p.time * (bs / bs[0])[None, :, None] ** p.time_batch_exp
        t = t * (lrs / lrs[0])[:, None, None] ** p.time_lr_exp
        t = t * np.exp(v + rng.normal(0, 1, shape) * p.time_sd)
        for i, lr in enumerate(w.lrs):
            for j, b in enumerate(w.batches):
                for k in range(w.trials):
                    stop = w.diverge.get((name, lr, b, k))
                    loss = np.exp(curves[name][i, j, k])
                    if stop:
                        loss = loss[:stop].copy()
                        loss[-1] = np.nan
                    runs.append(
                        dict(
                            model=name,
                            learning_rate=lr,
                            batch_size=b,
                            trial=k,
                            training_time_s=t[i, j, k],
                            test_accuracy=0.1 if stop else acc[name][i, j, k],
                            dataset="mnist",
                            optimizer="sgd",
                            start=w.start,
                            final_train_loss=loss[-1],
                            epochs=w.epochs,
                            seed=k,
                            step_time_s=t[i, j, k] * (1 - p.eval_share),
                            eval_time_s=t[i, j, k] * p.eval_share,
                            threads=1,
                            diverged=bool(stop),
                            diverged_epoch=stop,
                            **w.extra,
                        )
                    )
                    if not w.histories:
                        continue
                    hist.append(
                        pd.DataFrame(
                            dict(
                                model=name,
                                learning_rate=lr,
                                batch_size=b,
                                trial=k,
                                epoch=np.arange(1, loss.size + 1),
                                train_loss=loss,
                                train_accuracy=np.nan,
                                test_accuracy=np.nan,
                                epoch_s=1.0,
                            )
                        )
                    )
    return pd.DataFrame(runs), (pd.concat(hist, ignore_index=True) if hist else None)


def both(**kw) -> dict:
    """The same Backend parameters for NumPy and TensorFlow."""
    return {"numpy": Backend(**kw), "tensorflow": Backend(**kw)}


def for_world(**over) -> World:
    """Every claim of the study built in, strongly enough to be decided with 3 trials."""
    return World(
        backends={
            "numpy": Backend(acc_cell_sd=0.0015, time=15, time_sd=0.04, jitter=0.15, rate=0.30),
            "tensorflow": Backend(
                acc_cell_sd=0.0004,
                time=40,
                time_batch_exp=-0.8,
                time_sd=0.008,
                jitter=0.003,
                rate=0.40,
            ),
        },
        **over,
    )


def against_world(**over) -> World:
    """Every claim reversed."""
    return World(
        acc_base=0.93,
        acc_lr=-0.04,
        acc_batch=0.012,
        acc_batch_lr=-0.005,
        backends={
            "numpy": Backend(
                acc_cell_sd=0.0004,
                time=20,
                time_batch_exp=-1.0,
                time_lr_exp=0.1,
                time_sd=0.008,
                jitter=0.003,
                rate=0.40,
            ),
            "tensorflow": Backend(
                acc_offset=-0.05,
                acc_cell_sd=0.0015,
                time=10,
                time_batch_exp=0.3,
                time_lr_exp=0.1,
                time_sd=0.04,
                jitter=0.15,
                rate=0.30,
            ),
        },
        **over,
    )


def noise_world(**over) -> World:
    """No structure, and noise too large for any effect or equivalence to be established on
    a 3 x 3 grid with 3 trials; most of it is a per-trial effect, so that the spread of the
    two backends cannot be told apart either. The noise is itself a spread of NumPy's time
    over the grid: "tightly clustered" (claim 4) is false here."""
    kw = dict(
        acc_trial_sd=0.05, acc_cell_sd=0.03, time_trial_sd=0.5, time_sd=0.3, rate=0.2, jitter=0.2
    )
    return World(
        acc_base=0.85,
        acc_lr=0.0,
        acc_batch=0.0,
        acc_batch_lr=0.0,
        backends=both(**kw),
        **{**SMALL, **over},
    )


def realistic_world(start: str = "shared", **over) -> World:
    """The shape of the audited default run (5 x 5 grid, 3 trials, 10 epochs): accuracy
    66-97 % with a per-trial effect near half of the spread around the cell means, NumPy
    2.4-10x faster than TensorFlow, a quarter to a third of NumPy's time in evaluation.
    With ``start="shared"`` the two backends compute the same accuracy and curve."""
    return World(
        acc_base=0.80,
        acc_lr=0.075,
        acc_batch=-0.03,
        acc_batch_lr=0.012,
        identical=start == "shared",
        start=start,
        backends={
            "numpy": Backend(
                acc_trial_sd=0.004,
                acc_cell_sd=0.004,
                time=5.0,
                time_batch_exp=-0.08,
                time_trial_sd=0.02,
                time_sd=0.03,
                eval_share=0.3,
                rate=0.25,
                jitter=0.01,
            ),
            "tensorflow": Backend(
                acc_trial_sd=0.004,
                acc_cell_sd=0.004,
                time=40.0,
                time_batch_exp=-0.5,
                time_trial_sd=0.02,
                time_sd=0.03,
                eval_share=0.1,
                rate=0.25,
                jitter=0.01,
            ),
        },
        **over,
    )
