"""Simulated studies with known truth, in the real table formats ({STUDY}/runs.csv and
histories.parquet), for the statistics' tests.

A world is a grid of learning rates x batch sizes x trials for each backend. Accuracy is a
smooth surface plus a backend offset, a **trial effect** shared by every cell of a trial, a
**trial-by-cell interaction** (a per-trial slope on log10 lr and on log2 batch, which does
not cancel from the slopes the claims test), and cell noise, rounded to whole test images
(1 / ``n_test``). With ``start="shared"`` the backends' trial effects and trial slopes are
correlated (``shared_corr``: the same start moves both), with ``"independent"`` they are
drawn independently. Time is a per-backend surface times log-normal trial, trial-slope and
run noise; step time is the time without the per-epoch evaluation. Loss curves fall at a
backend's rate and bend with ``curvature``, with jitter around that curve. ``identical``
copies NumPy's accuracy and loss curve to every other backend (a shared start with
implementations that compute the same thing).
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
    acc_trial_slope_sd: float = 0.0  # per-trial slope per decade of lr and per doubling
    time: float = 15.0  # seconds at the smallest batch size
    time_batch_exp: float = 0.0  # time ~ (batch / smallest) ** exp
    time_lr_exp: float = 0.0  # time ~ (lr / smallest) ** exp
    time_trial_sd: float = 0.0  # log-normal, shared by the cells of a trial
    time_trial_slope_sd: float = 0.0  # per-trial slope of log time (per decade, per doubling)
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
    shared_corr: float = 0.9  # correlation of the backends' trial effects with a shared start
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
    Lc, Bc = L - L.mean(), B - B.mean()
    corr = w.shared_corr if w.start == "shared" else 0.0
    common = rng.normal(0, 1, (6, w.trials))  # the start's part of every trial effect

    def trial_effects(k: int) -> np.ndarray:
        """[3, trial] standard-normal trial effects (level, lr slope, batch slope) of one
        quantity: k = 0 accuracy, correlated across backends by a shared start; k = 1 time,
        whose trial effects come from the machine, not the start (independent)."""
        own = rng.normal(0, 1, (3, w.trials))
        c = corr if k == 0 else 0.0
        return c * common[3 * k : 3 * k + 3] + np.sqrt(1 - c**2) * own

    acc, curves = {}, {}
    runs, hist = [], []
    for name, p in w.backends.items():
        if w.identical and name != first:
            acc[name], curves[name] = acc[first], curves[first]
        else:
            z = trial_effects(0)[:, None, None, :]
            u = z[0] * p.acc_trial_sd + (z[1] * Lc + z[2] * Bc) * p.acc_trial_slope_sd
            a = surface + p.acc_offset + u + rng.normal(0, 1, shape) * p.acc_cell_sd
            acc[name] = np.round(np.clip(a, 0, 1) * w.n_test) / w.n_test
            z = rng.normal(0, 1, (*shape, e.size))
            curves[name] = np.log(2.3) - p.rate * e + p.curvature * e**2 / w.epochs + p.jitter * z
        z = trial_effects(1)[:, None, None, :]
        v = z[0] * p.time_trial_sd + (z[1] * Lc + z[2] * Bc) * p.time_trial_slope_sd
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
                            backend=name,
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
                                backend=name,
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
    a 3 x 3 grid with 3 trials; much of it is per trial (a level and a slope per trial), so
    that the slopes and the spread of the two backends cannot be told apart either. The
    noise is itself a spread of NumPy's time over the grid: "tightly clustered" (claim 4)
    is false here."""
    kw = dict(
        acc_trial_sd=0.05,
        acc_cell_sd=0.06,
        acc_trial_slope_sd=0.01,
        time_trial_sd=0.5,
        time_trial_slope_sd=0.1,
        time_sd=0.3,
        rate=0.2,
        jitter=0.2,
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
    66-97 % with a per-trial effect half of the spread around the cell means and a
    per-run sd of 0.78 pp (with independent starts the per-cell differences then spread
    about 1.1 pp, what the audit's power figures for claim 3 imply), NumPy 2.4-10x faster
    than TensorFlow, a third of NumPy's time in evaluation. With ``start="shared"`` the two
    backends compute the same accuracy and curve."""
    return World(
        acc_base=0.80,
        acc_lr=0.075,
        acc_batch=-0.03,
        acc_batch_lr=0.012,
        identical=start == "shared",
        start=start,
        backends={
            "numpy": Backend(
                acc_trial_sd=0.0055,
                acc_cell_sd=0.0055,
                time=5.0,
                time_batch_exp=-0.08,
                time_trial_sd=0.03,
                time_sd=0.06,
                eval_share=0.3,
                rate=0.25,
                jitter=0.01,
            ),
            "tensorflow": Backend(
                acc_trial_sd=0.0055,
                acc_cell_sd=0.0055,
                time=40.0,
                time_batch_exp=-0.5,
                time_trial_sd=0.03,
                time_sd=0.06,
                eval_share=0.1,
                rate=0.25,
                jitter=0.01,
            ),
        },
        **over,
    )


def audit(n: int = 300) -> None:
    """The numbers of the issue's audit, recomputed by the statistics on simulated data of
    the audited run's shape, beside what the former rules give on the same data:
    ``.venv/bin/python tests/stat_worlds.py``."""
    import dataclasses

    from scipy import stats as sps

    from mlpstudy import claims, comparison, stats

    def runs_of(w):
        return stats.check_runs(simulate(dataclasses.replace(w, histories=False))[0])

    def cells_as_units(runs):  # the former claim-8 rule: a one-sided t-test across cells
        sd = {
            b: np.std(claims.grid(runs, b, "test_accuracy").values, axis=0, ddof=1)
            for b in claims.STUDY_BACKENDS
        }
        ratio = np.log((sd["numpy"] + 1e-4) / (sd["tensorflow"] + 1e-4)).ravel()
        return stats.one_sample_p(ratio, 0.0, "greater") < 0.05

    # 1. claim 8 under a true null: equal spread, independent starts, trial effect
    for share in (0.5, 0.0):
        kw = dict(acc_trial_sd=0.01 * share**0.5, acc_cell_sd=0.01 * (1 - share) ** 0.5)
        hits = old = 0
        for seed in range(n):
            w = World(backends=both(**kw), seed=seed, start="independent", histories=False)
            runs = runs_of(w)
            hits += claims.claim_numpy_higher_variance(runs).parts[0].verdict == "supported"
            old += cells_as_units(runs)
        print(
            f"claim 8 (a), equal spread, trial share {share:.0%}: supported in {hits}/{n} = "
            f"{hits / n:.1%} (the former cell-as-unit rule: {old / n:.1%})"
        )
    # 2. the shared start (identical backends) and the independent start
    for start in ("shared", "independent"):
        runs, hist = simulate(realistic_world(start))
        res = {r.id: r for r in claims.evaluate_claims(runs, hist)}
        for cid in (3, 8, 9):
            for p in res[cid].parts:
                ci = np.exp(p.ci) if p.ratio else p.ci
                power = (
                    f", power {p.power:.0%}, trials for 80 %: {p.trials_needed}"
                    if p.verdict == "inconclusive" and p.power == p.power
                    else ""
                )
                print(
                    f"{start}: claim {cid} {p.name}: {p.verdict}, estimate {p.estimate:.3g} "
                    f"[{ci[0]:.3g}, {ci[1]:.3g}]{' (as a ratio)' if p.ratio else ''}, "
                    f"p support {p.p_support:.2g}, p contradict {p.p_contradict_adj:.2g}{power}"
                )
        cmp = comparison.compare_cells(runs)
        t = cmp[cmp.metric == "training_time_s"]
        raw = []  # the former per-cell test: paired t-test on seconds
        for _, cell in runs.groupby(["learning_rate", "batch_size"]):
            a = cell[cell.backend == "numpy"].sort_values("trial")["training_time_s"]
            b = cell[cell.backend == "tensorflow"].sort_values("trial")["training_time_s"]
            raw.append(sps.ttest_rel(a.to_numpy(), b.to_numpy()).pvalue)
        print(
            f"{start}: time ratio numpy / tensorflow per cell {t.ratio.min():.2g}-"
            f"{t.ratio.max():.2g}; significant after Holm: {int(t.significant.sum())} of "
            f"{len(t)} cells on the log scale, {int((stats.holm(raw) < 0.05).sum())} on raw "
            f"seconds (|t| > {t.t_critical.iloc[0]:.3g} needed)"
        )
    # 3. claim 3's power with independent starts, by trials
    part = claims.claim_equal_accuracy(runs_of(realistic_world("independent"))).parts[0]
    verdict, fn = part.plan.verdict, part.plan.power
    ns = np.array([3, 5, 10, 20, 30])
    power = dict(zip(ns.tolist(), np.round(fn(ns), 2).tolist()))
    print(
        f"claim 3, independent starts: power to be {verdict} by trials {power}; 80 % needs "
        f"{part.trials_needed} (range {part.trials_range[0]}-{part.trials_range[1]})"
    )


def audit20(n: int = 400) -> None:
    """The numbers of issue 20's audit (verdicts that precision could buy), recomputed with
    the present rules beside the former ones: ``.venv/bin/python tests/stat_worlds.py 20``."""
    import dataclasses

    from scipy import stats as sps

    from mlpstudy import claims, stats

    s = dataclasses.replace(claims.DEFAULTS, plan_power=False)
    rng = np.random.default_rng(0)
    # 1. a material direction part at half its margin and at its margin, 3 and 30 trials
    for frac in (0.5, 1.0):
        for t in (3, 30):
            x = 0.01 * frac + rng.normal(0, 0.004, (n, t))
            now = old = 0
            for row in x:
                p = claims.direction_part(claims.Part("x", "", ""), row, +1, s, 0.01)
                now += claims.verdict_of(p.p_support, p.p_contradict, 0.05) == "supported"
                old += stats.one_sample_p(row, 0.0, "greater") < 0.05  # support against 0
            print(
                f"direction part, true effect {frac:g} x margin, {t} trials: supported "
                f"{now / n:.1%} (former rule, support against 0: {old / n:.1%})"
            )
    # 2. claim 8, NumPy's spread at the cell level, TensorFlow's 95 % a trial effect
    for ratio in (1.0, 1.2, 1.5):
        tf = Backend(acc_trial_sd=0.01 * np.sqrt(0.95), acc_cell_sd=0.01 * np.sqrt(0.05))
        hits = dict(supported=0, contradicted=0)
        for seed in range(n // 2):
            w = World(
                backends={"numpy": Backend(acc_cell_sd=0.01 * ratio), "tensorflow": tf},
                seed=seed,
                start="independent",
                histories=False,
            )
            runs = stats.check_runs(simulate(w)[0])
            v = claims.claim_numpy_higher_variance(runs, s).parts[0].verdict
            hits[v] = hits.get(v, 0) + 1
        print(
            f"claim 8 (a), sd ratio {ratio:g}, trial shares 0 % / 95 %: supported "
            f"{hits['supported'] / (n // 2):.1%}, contradicted "
            f"{hits['contradicted'] / (n // 2):.1%} of {n // 2} worlds"
        )
    # 3. claim 9's two worlds
    for label, np_b, tf_b in (
        (
            "rises in most runs vs never",
            Backend(rate=0.01, jitter=0.008),
            Backend(rate=0.01, jitter=0.0005),
        ),
        (
            "falls 0.25 / epoch, jitter 0.05",
            Backend(rate=0.25, jitter=0.05),
            Backend(rate=0.25, jitter=0.002),
        ),
    ):
        runs, hist = simulate(World(backends={"numpy": np_b, "tensorflow": tf_b}))
        r = claims.claim_tensorflow_smoother(hist, claims.DEFAULTS, stats.check_runs(runs))
        p = r.parts[0]
        print(
            f"claim 9, {label}: {p.verdict}, roughness ratio {np.exp(p.estimate):.3g} "
            f"[{np.exp(p.ci[0]):.3g}, {np.exp(p.ci[1]):.3g}]; "
            f"{r.numbers['runs whose loss ever rises, numpy']} NumPy runs rise"
        )
    # 4. claim 3's plan with 12 cells at +1.5 pp and 13 at -1.5 pp
    means = np.r_[np.full(12, 0.015), np.full(13, -0.015)]
    plan = claims.parts.cells_plan(means, np.full(25, 0.004), 0.01, 0.05, 3, 0.9)
    print(
        f"claim 3, 12 cells at +1.5 pp and 13 at -1.5 pp: points to {plan.verdict}, power at "
        f"10 trials {plan.power(np.array([10]))[0]:.2f}"
    )
    # 5. trials needed over 30 repeat 3-trial runs of one truth
    points, ranges = [], []
    d, sd = 0.016, 0.006
    for row in 0.016 + rng.normal(0, sd, (30, 3)):
        p = claims.direction_part(claims.Part("x", "", ""), row, +1, claims.DEFAULTS, 0.01)
        claims.decide_part(p, claims.DEFAULTS)
        if p.verdict == "inconclusive" and p.power_for == "supported":
            points.append(p.trials_needed or np.inf)
            ranges.append(p.trials_range)
    true_n = stats.trials_needed(lambda k: stats.power_one_sided(d - 0.01, sd, k, 0.05), 0.8)
    covered = np.mean([(lo or 0) <= true_n <= (hi or np.inf) for lo, hi in ranges])
    print(
        f"trials needed, {len(points)} of 30 repeat runs inconclusive: point figure "
        f"{min(points)}-{max(points)} (median {np.median(points):g}), truth {true_n}; the "
        f"range covers the truth in {covered:.0%}"
    )
    _ = sps


if __name__ == "__main__":
    import sys

    audit20() if sys.argv[1:] == ["20"] else audit()
