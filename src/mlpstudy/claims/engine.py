"""The verdict engine: parts, their tests, one verdict rule, and the claim's verdict.

A part is a test on a contrast computed once per independent replicate (the trial). Every
part has a **boundary** between what would make its claim true and what would make it
false, and both of its tests are one-sided tests against that boundary at alpha:

* direction: the contrast lies beyond ``sign * margin`` on the claimed side. A claim of a
  material effect ("markedly", "falls systematically", "higher variance", "smoother") has a
  margin, the size below which the effect does not matter; a claim of a bare sign has
  margin 0. Supported when the contrast is significantly beyond the boundary,
  contradicted when it is significantly short of it (on the other side of 0, or between 0
  and the margin);
* threshold: the same with a stated threshold ("markedly faster" = at least 1.5 times);
* equivalence: the contrast lies within +-margin ("no effect", "nearly identical").
  Supported when TOST shows it inside, contradicted when it lies significantly outside
  (the test in the direction of the estimate, doubled because that direction was chosen
  after looking).

So a true effect exactly at the boundary is supported at most alpha of the time and
contradicted at most alpha of the time, whatever the number of trials: no precision buys a
verdict there. The intervals shown are the two-sided 1 - 2 alpha (90 %) ones: a direction
part is supported exactly when its interval lies beyond the boundary, contradicted exactly
when it lies short of it.

**One verdict rule** (``decide_part``): contradicted if the (adjusted) contradiction
p-value is below alpha, else supported if the support p-value is, else inconclusive with
its power. A claim is supported when every part is (intersection-union: no adjustment),
contradicted when any part is (Holm across the parts' contradiction p-values),
inconclusive otherwise.

**Power** of an inconclusive part: if the true effect were what this run estimated, the
chance that a run with n trials reaches the verdict the estimate points to, and the trials
that give ``power_target``. Both rest on a spread estimated from few degrees of freedom,
so each is also given as a range over the 90 % interval of that spread (``Plan``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mlpstudy import stats
from mlpstudy.defaults import ACCURACY_MARGIN, ALPHA

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"

# claim 1: accuracy change per 10x learning rate below 0.5 pp counts as "no effect"
LR_SLOPE_MARGIN = 0.005
# claim 2: accuracy change per doubling of batch size below 0.5 pp counts as "no effect"
BATCH_SLOPE_MARGIN = 0.005
# claims 4-6: a training-time change below 5 % (per doubling of batch size, per 10x learning
# rate, or between backends) counts as "no effect"; the study's own NumPy spread, 14-17 s
# over 4 doublings of batch size, is about 5 % per doubling
TIME_MARGIN = 0.05
# claim 4: "tightly clustered (14-17 s)": the spread of NumPy's time over the grid within
# one trial, as a geometric standard deviation, below 10 % (the study's 14-17 s is about 6 %)
CLUSTER_MARGIN = 0.10
# claim 7: "markedly faster" = TensorFlow at least 1.5 times as fast at the largest batch size
MARKED_SPEEDUP = 1.5
# claim 8: "higher variance" = NumPy's standard deviation at least 1.5 times TensorFlow's
SD_RATIO_MARGIN = 1.5
# claim 9: "smoother, although not by much" = NumPy's loss curves at least 1.1 times as rough
# as TensorFlow's (roughness: the sd of log loss around its local trend, a ratio, so the
# margin scales with the curves' own noise); "converges slightly faster" = a mean log loss
# over the epochs at least 0.01 lower (1 % of the loss)
SMOOTHNESS_MARGIN = 1.1
CONVERGENCE_MARGIN = 0.01
# claim 9: the roughness is the residual of a local quadratic over 5 epochs
MIN_EPOCHS_SMOOTHNESS = 5
MIN_EPOCHS_SPEED = 2
POWER_TARGET = 0.8


@dataclass(frozen=True)
class Settings:
    alpha: float = ALPHA
    accuracy_margin: float = ACCURACY_MARGIN
    lr_slope_margin: float = LR_SLOPE_MARGIN
    batch_slope_margin: float = BATCH_SLOPE_MARGIN
    time_margin: float = TIME_MARGIN
    cluster_margin: float = CLUSTER_MARGIN
    marked_speedup: float = MARKED_SPEEDUP
    sd_ratio_margin: float = SD_RATIO_MARGIN
    smoothness_margin: float = SMOOTHNESS_MARGIN
    convergence_margin: float = CONVERGENCE_MARGIN
    min_epochs_smoothness: int = MIN_EPOCHS_SMOOTHNESS
    power_target: float = POWER_TARGET
    # False: no power for inconclusive parts (the verdicts are the same; Monte Carlo tests
    # of the verdicts alone run faster)
    plan_power: bool = True
    # 1 / N_test; None: inferred from the accuracies (stats.accuracy_step)
    accuracy_step: float | None = None
    # descriptive intervals (other backends, models); the tests' intervals are 1 - 2 alpha
    confidence: float = stats.CONFIDENCE

    @property
    def test_confidence(self) -> float:
        return 1 - 2 * self.alpha


DEFAULTS = Settings()


@dataclass
class Plan:
    """What an inconclusive part's estimate points to, and the power of reaching it:
    ``power(n)`` at the estimates; ``low(n)`` / ``high(n)`` at the ends of the 90 %
    interval of the spread (pessimistic / optimistic)."""

    verdict: str
    power: Callable
    low: Callable | None = None
    high: Callable | None = None


@dataclass
class Part:
    """One test inside a claim."""

    name: str
    kind: str  # direction | equivalence | threshold
    statistic: str  # what the contrast is, with its units
    n: int = 0
    unit: str = "trials"
    trials: int = 0  # trials behind the test (= n when the unit is the trial)
    estimate: float = np.nan
    ci: tuple[float, float] = (np.nan, np.nan)
    sd: float = np.nan  # spread of the per-unit contrast (floored)
    sign: int = 1
    margin: float | None = None
    threshold: float | None = None  # the boundary of a direction / threshold part
    p_support: float = np.nan
    p_contradict: float = np.nan
    p_contradict_adj: float = np.nan
    verdict: str = INCONCLUSIVE
    reason: str = ""
    ratio: bool = False  # contrast is a log ratio: also show exp(estimate)
    df: float = np.nan
    power: float = np.nan  # for an inconclusive part: at this run's trials
    power_range: tuple[float, float] = (np.nan, np.nan)
    power_for: str = ""  # the verdict the power is about
    trials_needed: int | None = None
    trials_range: tuple[int | None, int | None] = (None, None)
    plan: Plan | None = field(default=None, repr=False)
    details: dict = field(default_factory=dict)  # e.g. claim 8's variance components


@dataclass
class ClaimResult:
    id: int
    title: str
    section: str
    quote: str
    statistic: str
    rule: str
    figures: list[str]
    parts: list[Part] = field(default_factory=list)
    verdict: str = INCONCLUSIVE
    reason: str = ""
    numbers: dict = field(default_factory=dict)
    beside: list[Part] = field(default_factory=list)  # same tests on step time, not decisive
    notes: list[str] = field(default_factory=list)
    p_verdict: float = np.nan  # p-value behind the verdict (for the family across claims)
    start: str = "not recorded"  # the study's start mode: the setting of every verdict


# --------------------------------------------------------------------------- t-parts


def _prepare(part: Part, values, settings: Settings, floor: float) -> np.ndarray | None:
    x = stats._finite(values)
    part.n = int(x.size)
    if part.unit == "trials":
        part.trials = part.n
    if x.size:
        n, mean, sd = stats.summary(x, floor)
        part.estimate, part.sd, part.df = mean, sd, n - 1
        part.ci = stats.t_interval(x, settings.test_confidence, floor)
    if x.size < 2:
        part.reason = (
            f"{x.size} {part.unit} with a finite value; a test across {part.unit} needs "
            "at least 2" + (" (trials: 1 gives no variance)" if part.unit == "trials" else "")
        )
        return None
    if not part.sd > 0:
        part.reason = (
            f"all {x.size} values identical and the quantity has no known resolution: "
            "the t statistic is undefined"
        )
        return None
    return x


def threshold_part(part, values, threshold: float, settings: Settings, sign=1, floor=0.0):
    """Supported if the mean lies significantly beyond ``threshold`` on the side ``sign``
    (+1: above), contradicted if significantly short of it."""
    part.kind = part.kind or "threshold"
    part.threshold, part.sign = threshold, sign
    x = _prepare(part, values, settings, floor)
    if x is None:
        return part
    above = stats.one_sample_p(x, threshold, "greater", floor)
    below = stats.one_sample_p(x, threshold, "less", floor)
    part.p_support, part.p_contradict = (above, below) if sign > 0 else (below, above)
    part.plan = t_plan(part, settings, floor)
    return part


def direction_part(part, values, sign: int, settings: Settings, margin=None, floor=0.0) -> Part:
    """The claimed sign ``sign`` (+1 / -1), beyond ``margin`` for a material effect: a
    threshold part at ``sign * margin`` (at 0 for a bare sign)."""
    part.kind, part.margin = "direction", margin
    return threshold_part(part, values, sign * (margin or 0.0), settings, sign, floor)


def equivalence_part(part, values, margin: float, settings: Settings, floor=0.0) -> Part:
    part.kind, part.margin = "equivalence", margin
    x = _prepare(part, values, settings, floor)
    if x is None:
        return part
    part.p_support = stats.tost_p(x, margin, floor)
    part.p_contradict = stats.beyond_p(x, margin, floor)
    part.plan = t_plan(part, settings, floor)
    return part


def t_plan(part: Part, settings: Settings, floor: float = 0.0) -> Plan | None:
    """The verdict a t-part's estimate points to and its power as a function of n, at the
    estimated sd and at the ends of the sd's 90 % interval (chi-square on the part's df)."""
    e, sd, a = part.estimate, part.sd, settings.alpha
    if not (np.isfinite(e) and np.isfinite(sd) and sd > 0 and part.df >= 1):
        return None
    lo, hi = stats.sd_interval(sd, part.df, settings.test_confidence)
    lo = max(lo, floor)
    if part.kind == "equivalence":
        m = part.margin
        if abs(e) < m:
            verdict, fn = SUPPORTED, lambda n, s: stats.power_tost(e, s, n, m, a)
        else:
            verdict, fn = CONTRADICTED, lambda n, s: stats.power_one_sided(abs(e) - m, s, n, a / 2)
    else:
        d = part.sign * (e - part.threshold)
        verdict = SUPPORTED if d > 0 else CONTRADICTED
        fn = lambda n, s: stats.power_one_sided(abs(d), s, n, a)  # noqa: E731
    return Plan(verdict, lambda n: fn(n, sd), lambda n: fn(n, hi), lambda n: fn(n, lo))


def inconclusive_part(name: str, reason: str, statistic: str = "") -> Part:
    return Part(name=name, kind="-", statistic=statistic, reason=reason)


# --------------------------------------------------------------------------- verdicts


def _at(fn, n: int) -> float:
    with np.errstate(all="ignore"):
        return float(np.asarray(fn(np.array([n])), dtype=float).ravel()[0])


def fill_power(part: Part, settings: Settings) -> None:
    """Power now and trials needed, each with its range, for an inconclusive part."""
    plan = part.plan
    if plan is None or part.trials < 2 or not settings.plan_power:
        return
    target = settings.power_target
    part.power_for = plan.verdict
    part.power = _at(plan.power, part.trials)
    part.trials_needed = stats.trials_needed(plan.power, target)
    if plan.low is not None and plan.high is not None:
        part.power_range = (_at(plan.low, part.trials), _at(plan.high, part.trials))
        part.trials_range = (
            stats.trials_needed(plan.high, target),
            stats.trials_needed(plan.low, target),
        )


def verdict_of(p_support: float, p_contradict: float, alpha: float) -> str:
    """The one verdict rule."""
    if p_contradict < alpha:
        return CONTRADICTED
    if p_support < alpha:
        return SUPPORTED
    return INCONCLUSIVE


def decide_part(part: Part, settings: Settings, p_contradict_adj: float | None = None) -> Part:
    """Give one part its verdict (``p_contradict_adj``: its adjusted contradiction p-value,
    default its own); an inconclusive part gets its reason and its power."""
    if p_contradict_adj is not None:
        part.p_contradict_adj = p_contradict_adj
    elif not np.isfinite(part.p_contradict_adj):
        part.p_contradict_adj = part.p_contradict
    part.verdict = verdict_of(part.p_support, part.p_contradict_adj, settings.alpha)
    if part.verdict == INCONCLUSIVE:
        if not part.reason:
            part.reason = f"neither test reaches alpha = {settings.alpha}"
        fill_power(part, settings)
    return part


def decide(result: ClaimResult, settings: Settings, adjust: bool = True) -> ClaimResult:
    """Holm-adjust the parts' contradiction p-values, give each part and the claim a verdict
    (``adjust=False``: the parts' p-values are already adjusted, e.g. across cells)."""
    parts = result.parts
    adjusted = stats.holm([p.p_contradict for p in parts]) if adjust and parts else None
    for i, p in enumerate(parts):
        decide_part(p, settings, None if adjusted is None else float(adjusted[i]))
    for p in result.beside:  # not adjusted: shown beside the verdict, not part of it
        decide_part(p, settings, p.p_contradict)
    verdicts = [p.verdict for p in parts]
    if not parts:
        result.verdict = INCONCLUSIVE
        result.reason = result.reason or "nothing to test"
    elif CONTRADICTED in verdicts:
        result.verdict = CONTRADICTED
        bad = [p for p in parts if p.verdict == CONTRADICTED]
        result.reason = "contradicted by: " + ", ".join(p.name for p in bad)
        result.p_verdict = min(p.p_contradict_adj for p in bad)
    elif all(v == SUPPORTED for v in verdicts):
        result.verdict = SUPPORTED
        result.reason = "every part supported"
        result.p_verdict = max(p.p_support for p in parts)
    else:
        result.verdict = INCONCLUSIVE
        result.reason = "; ".join(
            f"{p.name}: {p.reason}" for p in parts if p.verdict == INCONCLUSIVE
        )
    return result


def family(results: list[ClaimResult], alpha: float) -> list[bool | None]:
    """Whether each decided verdict survives Holm across the claims (the nine as one family);
    None for an inconclusive claim."""
    adj = stats.holm([r.p_verdict for r in results])
    return [None if not np.isfinite(p) else bool(p < alpha) for p in adj]
