"""``{STUDY}/claims.md`` and ``claims.html``: the claims' verdicts, the conditions of the data,
the other backends against NumPy and the whole-grid models, rendered from one list of blocks
so that the Markdown and the HTML never disagree (``render_markdown``, ``render_html``; also
used for ``results/starts.md`` by ``mlpstudy.starts``).

A block is a tuple: ("h1" | "h2" | "h3" | "p" | "quote", text), ("ul", [items]) or
("table", [header], [[cells]]).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from mlpstudy import aggregate, claims, gridmodels, stats
from mlpstudy.claims import INCONCLUSIVE, ClaimResult, Part, Settings
from mlpstudy.claims import grids as G
from mlpstudy.claims.conditions import conditions_blocks
from mlpstudy.claims.render import num, to_html, to_markdown

__all__ = ["num", "to_html", "to_markdown"]  # rendering, also for mlpstudy.starts

TITLE = "Claims of the study, tested on this run"


def estimate(p: Part) -> str:
    if not np.isfinite(p.estimate):
        return "n/a"
    text = f"{num(p.estimate)} [{num(p.ci[0])}, {num(p.ci[1])}]"
    if p.ratio:
        text += f" (x{np.exp(p.estimate):.3g} [{np.exp(p.ci[0]):.3g}, {np.exp(p.ci[1]):.3g}])"
    return text


def trials_text(n: int | None) -> str:
    return str(n) if n else f">{stats.MAX_TRIALS}"


def needed_text(p: Part) -> str:
    """Trials needed, with its range over the spread's interval: "46 (14-433)"."""
    lo, hi = p.trials_range
    text = trials_text(p.trials_needed)
    if lo is not None or hi is not None:
        text += f" ({trials_text(lo)}-{trials_text(hi)})"
    return text


def power_now_text(p: Part) -> str:
    lo, hi = p.power_range
    text = f"{p.power:.0%}"
    if np.isfinite(lo) and np.isfinite(hi):
        text += f" ({min(lo, hi):.0%}-{max(lo, hi):.0%})"
    return text


def short_estimate(p: Part) -> str:
    """A part's estimate and 90 % interval in a few characters (a ratio as x...)."""
    if not np.isfinite(p.estimate):
        return "n/a"
    if p.ratio:
        e, lo, hi = np.exp([p.estimate, *p.ci])
        return f"x{e:.3g} [{lo:.3g}, {hi:.3g}]"
    return f"{num(p.estimate)} [{num(p.ci[0])}, {num(p.ci[1])}]"


def why(r: ClaimResult) -> str:
    """The parts behind a claim's verdict, each with its estimate: every part if supported,
    the contradicting ones if contradicted, the undecided ones (with the trials they need)
    if inconclusive."""
    parts = [p for p in r.parts if r.verdict == "supported" or p.verdict == r.verdict]
    out = []
    for p in parts:
        text = f"{p.name}: {short_estimate(p)}"
        if p.verdict == INCONCLUSIVE and np.isfinite(p.power):
            text += f", {p.power_for} needs {needed_text(p)} trials"
        elif p.verdict == INCONCLUSIVE and p.reason and not np.isfinite(p.estimate):
            text = f"{p.name}: {p.reason}"
        out.append(text)
    return "; ".join(out)


def power_text(p: Part, settings: Settings) -> str:
    if p.verdict != INCONCLUSIVE or not np.isfinite(p.power):
        return ""
    return (
        f"{power_now_text(p)} to be {p.power_for} at {p.trials} trials; "
        f"{settings.power_target:.0%} needs {needed_text(p)} trials"
        + ("" if p.trials_needed else " (the estimate sits at the boundary)")
    )


def boundary(p: Part) -> str:
    """The line between support and contradiction: +-margin, or the threshold."""
    if p.kind == "equivalence" and p.margin is not None:
        return f"+-{num(p.margin)}" + (f" (x{np.exp(p.margin):.3g})" if p.ratio else "")
    if p.threshold is None:
        return ""
    return num(p.threshold) + (f" (x{np.exp(p.threshold):.3g})" if p.ratio else "")


def parts_table(parts: list[Part], settings: Settings, beside: bool = False) -> tuple:
    level = f"{settings.test_confidence:.0%}"
    head = ["part", "kind", "boundary", "n", f"estimate [{level} CI]", "p support"]
    head += ["p contradict", "would be"] if beside else ["p contradict (Holm)", "verdict"]
    head += [] if beside else [f"power; trials for {settings.power_target:.0%}"]
    head += ["note"]
    rows = []
    for p in parts:
        n = f"{p.n} {p.unit}" + (
            f" (df {p.df:.3g})"
            if p.unit == "trials" and p.df != p.n - 1 and np.isfinite(p.df)
            else ""
        )
        row = [p.name, p.kind, boundary(p), n, estimate(p), num(p.p_support)]
        row += [num(p.p_contradict if beside else p.p_contradict_adj), p.verdict]
        row += [] if beside else [power_text(p, settings)]
        row += [p.reason if p.verdict == INCONCLUSIVE else ""]
        rows.append(row)
    return ("table", head, rows)


def _numbers(numbers: dict) -> tuple:
    items = []
    for k, v in numbers.items():
        if isinstance(v, dict):
            v = ", ".join(f"{kk}: {num(vv)}" for kk, vv in v.items())
        items.append(f"{k}: {num(v)}")
    return ("ul", items)


def study_title(runs: pd.DataFrame) -> str:
    axes = [
        f"{a}={runs[a].iloc[0]}"
        for a in stats.STUDY_AXES
        if a in runs.columns and runs[a].notna().any()
    ]
    return f"{TITLE}: " + ", ".join(axes) if axes else TITLE


def how_blocks(settings: Settings) -> list[tuple]:
    b = [("h2", "How verdicts are decided")]
    b.append(("p", claims.__doc__.split("\n\n")[1].replace("\n", " ")))
    b.append(
        (
            "ul",
            [
                "direction (a claimed sign; for a material effect, beyond a margin): "
                "supported if the effect lies significantly beyond sign x margin on the "
                "claimed side, contradicted if significantly short of it (for a bare sign "
                "the boundary is 0). Both tests are against the same boundary, so a true "
                "effect exactly there is supported and contradicted each at most alpha of "
                "the time, however many trials there are.",
                "equivalence: supported if TOST shows the effect within +-margin; "
                "contradicted if the effect lies significantly outside +-margin.",
                "threshold: supported / contradicted by the one-sided tests either side.",
                f"Every test is one-sided at alpha = {settings.alpha}: the intervals shown "
                f"are the two-sided {settings.test_confidence:.0%} ones, the level the "
                "tests use.",
                "A claim is supported if every part is, contradicted if any part is "
                "(contradiction p-values Holm-adjusted across the claim's parts), "
                "inconclusive otherwise.",
                "Resolution: test accuracy moves in steps of 1 / N_test; no accuracy is "
                "taken to spread less than one step, so identical values give a finite "
                "test, not p = 0.",
                "Power (inconclusive parts): if the true effect and spread were as "
                "estimated here, the chance that a run with this many trials reaches the "
                "verdict the estimate points to, and the trials that give "
                f"{settings.power_target:.0%}; in brackets the range over the 90 % "
                "interval of the spread (with 3 trials the spread is known to within a "
                "factor 0.58-4.4, so the trials needed to within a factor of about 20).",
            ],
        )
    )
    b.append(
        (
            "table",
            ["setting", "value"],
            [[k, num(v)] for k, v in dataclasses.asdict(settings).items()],
        )
    )
    return b


def claim_blocks(r: ClaimResult, settings: Settings) -> list[tuple]:
    b = [("h2", f"Claim {r.id}: {r.title} — {r.verdict.upper()} (start: {r.start})")]
    b.append(("quote", f"{r.quote} — study, section {r.section}"))
    b.append(
        (
            "ul",
            [
                f"Verdict: {r.verdict} ({r.reason})",
                f"Statistic: {r.statistic}",
                f"Rule: {r.rule}",
                "Figures (in this study's folder): " + ", ".join(r.figures),
            ],
        )
    )
    for note in r.notes:
        b.append(("p", note))
    b.append(parts_table(r.parts, settings))
    if r.beside:
        b.append(
            (
                "p",
                "Beside the verdict, the same tests on step time (the optimisation steps "
                "alone, without the per-epoch evaluation that training time includes); not "
                "part of the verdict:",
            )
        )
        b.append(parts_table(r.beside, settings, beside=True))
    if r.numbers:
        b.append(_numbers(r.numbers))
    return b


def family_text(results: list[ClaimResult], settings: Settings) -> str:
    stands = claims.family(results, settings.alpha)
    decided = [r for r in results if np.isfinite(r.p_verdict)]
    lost = [str(r.id) for r, s in zip(results, stands, strict=True) if s is False]
    return (
        f"The family: each claim is decided on its own at alpha = {settings.alpha} (a "
        f"claim's parts are one family: Holm for contradiction, intersection-union for "
        f"support). Across the {len(results)} claims no adjustment is made, so with every "
        f"claim false in the direction tested about {len(results)} x {settings.alpha} "
        f"wrong verdicts could be expected at most. Taking the {len(decided)} decided claims "
        f"as one family (Holm over their verdicts' p-values), "
        + (
            f"the verdicts of claim(s) {', '.join(lost)} would not stand."
            if lost
            else "every verdict stands."
        )
    )


def summary_blocks(results: list[ClaimResult], settings: Settings) -> list[tuple]:
    stands = claims.family(results, settings.alpha)
    rows = [
        [
            str(r.id),
            r.title,
            r.section,
            r.start,
            r.verdict.upper(),
            num(r.p_verdict),
            "-" if s is None else ("yes" if s else "no"),
        ]
        for r, s in zip(results, stands, strict=True)
    ]
    head = ["#", "claim", "section", "start", "verdict", "p of the verdict"]
    head.append("stands under Holm (9 claims)")
    return [("table", head, rows), ("p", family_text(results, settings)), *start_blocks(results)]


def start_blocks(results: list[ClaimResult]) -> list[tuple]:
    """What the start column means, when a verdict was reached under a shared start."""
    if not any(r.start == "shared" for r in results):
        return []
    return [
        (
            "p",
            "Every verdict above was reached with a shared start (both backends from the "
            "same initial weights and batch order in each trial). Claims 3, 8 and 9 then "
            "test whether the two implementations compute the same thing from the same "
            "start, not the study's setting: the study's backends each drew their own "
            "start (start: independent; results/starts.md sets the two side by side).",
        )
    ]


def power_blocks(results: list[ClaimResult], settings: Settings) -> list[tuple]:
    rows = [
        [f"{r.id}", p.name, p.power_for, power_now_text(p), needed_text(p)]
        for r in results
        for p in r.parts
        if p.verdict == INCONCLUSIVE and np.isfinite(p.power)
    ]
    if not rows:
        return []
    return [
        ("h2", "How many trials it would take"),
        (
            "p",
            f"Every inconclusive part with an estimate: the verdict its estimate points to, "
            f"the chance of reaching it with this run's trials, and the trials that give "
            f"{settings.power_target:.0%} if the effect and the spread are as estimated "
            f"(>{stats.MAX_TRIALS}: more than that). In brackets: the range over the 90 % "
            "interval of the spread, which few trials leave wide; plan with the upper end.",
        ),
        (
            "table",
            ["claim", "part", "points to", "power now (range)", "trials needed (range)"],
            rows,
        ),
    ]


def _ci(v: dict | None) -> str:
    if not v:
        return "n/a"
    return f"{v['ratio']:.3g} [{v['ci'][0]:.3g}, {v['ci'][1]:.3g}] (p {num(v['p'])})"


def other_blocks(others: list[claims.OtherBackend], settings: Settings) -> list[tuple]:
    if not others:
        return []
    level = f"{settings.confidence:.0%}"
    b = [
        ("h2", "Every other backend compared with NumPy"),
        (
            "p",
            "Not the study's claims: each backend of this run other than NumPy against "
            "NumPy. Time: per trial, the mean over learning rates of log(time backend / "
            f"time NumPy) at each batch size; the ratio with its {level} t interval across "
            "trials and a two-sided t-test. Accuracy: as claim 3, TOST within "
            f"+-{settings.accuracy_margin} in every cell.",
        ),
    ]
    for o in others:
        b.append(("h3", f"{o.backend} vs numpy"))
        head = ["batch size", f"training time ratio [{level} CI]", f"step time ratio [{level} CI]"]
        rows = [
            [str(r["batch_size"]), _ci(r.get("training_time_s")), _ci(r.get("step_time_s"))]
            for r in o.time
        ]
        b.append(("table", head, rows))
        if o.accuracy is not None:
            b.append(parts_table([o.accuracy], settings))
        b.append(_numbers(o.accuracy_numbers))
    return b


def _doc_blocks(doc: str) -> list[tuple]:
    """A module docstring's paragraphs after the first line: "* " lists as lists."""
    out = []
    for par in doc.replace("``", "`").split("\n\n")[1:]:
        if par.startswith("* "):
            out.append(("ul", [i.replace("\n", " ") for i in par[2:].split("\n* ")]))
        elif par.strip():
            out.append(("p", par.replace("\n", " ").strip()))
    return out


def model_blocks(models: list[gridmodels.GridModel], settings: Settings) -> list[tuple]:
    if not models:
        return []
    level = f"{settings.confidence:.0%}"
    b = [
        ("h2", "Whole-grid models"),
        *_doc_blocks(gridmodels.__doc__),
    ]
    for m in models:
        b.append(("h3", m.quantity))
        info = [f"model: {m.formula or 'n/a'}", f"fit: {m.method}, {m.n_runs} runs"]
        if np.isfinite(m.trial_share):
            info.append(f"share of the residual spread that the trials share: {m.trial_share:.0%}")
        info += [f"note: {n}" for n in m.notes]
        b.append(("ul", info))
        if m.effects:
            rows = [
                [e.backend, e.what, f"{num(e.estimate)} [{num(e.low)}, {num(e.high)}]"]
                for e in m.effects
            ]
            b.append(("table", ["backend", "effect", f"estimate [{level} CI]"], rows))
    return b


def blocks(
    results: list[ClaimResult],
    settings: Settings,
    runs: pd.DataFrame | None = None,
    options: dict | None = None,
    others: list | None = None,
    models: list | None = None,
    title: str = TITLE,
) -> list[tuple]:
    b: list[tuple] = [("h1", title)]
    b.append(
        (
            "p",
            "Each claim of the study is tested on this study's runs with the rule stated "
            "under it, fixed before the data were seen. Verdicts: supported, contradicted, "
            "inconclusive (the data cannot tell; the reason and the trials it would take "
            "are given).",
        )
    )
    b += summary_blocks(results, settings)
    if runs is not None:
        b += conditions_blocks(runs, options)
    b += how_blocks(settings)
    for r in results:
        b += claim_blocks(r, settings)
    b += power_blocks(results, settings)
    b += other_blocks(others or [], settings)
    b += model_blocks(models or [], settings)
    return b


def render_markdown(results, settings: Settings | None = None, **context) -> str:
    return to_markdown(blocks(results, settings or Settings(), **context))


def render_html(results, settings: Settings | None = None, **context) -> str:
    title = context.get("title", TITLE)
    return to_html(blocks(results, settings or Settings(), **context), title)


def write_claims(
    table_path,
    histories_path,
    comparison_path,
    markdown_path,
    html_path,
    options: dict | None = None,
    **overrides,
) -> list[ClaimResult]:
    """Read a study's runs, histories and comparison; write its claims.md and claims.html.

    ``options``: the backend options of the config, by backend (recorded in the report)."""
    runs = stats.load_runs(table_path)
    histories = aggregate.read_histories(histories_path) if histories_path else None
    comparison = pd.read_csv(comparison_path) if comparison_path else None
    settings = dataclasses.replace(Settings(), **overrides)
    if settings.accuracy_step is None:
        settings = dataclasses.replace(settings, accuracy_step=G.resolution(runs, settings))
    results = claims.evaluate_claims(runs, histories, comparison, settings)
    context = dict(
        runs=runs,
        options=options,
        others=claims.other_backends(runs, settings),
        models=gridmodels.grid_models(runs, settings.confidence, settings.accuracy_step),
        title=study_title(runs),
    )
    for path, text in (
        (markdown_path, render_markdown(results, settings, **context)),
        (html_path, render_html(results, settings, **context)),
    ):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    return results
