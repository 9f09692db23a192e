"""``{STUDY}/claims.md`` and ``claims.html``: the claims' verdicts, the conditions of the data,
the other backends against NumPy and the whole-grid models, rendered from one list of blocks
so that the Markdown and the HTML never disagree (``render_markdown``, ``render_html``; also
used for ``results/starts.md`` by ``mlpstudy.starts``).

A block is a tuple: ("h1" | "h2" | "h3" | "p" | "quote", text), ("ul", [items]) or
("table", [header], [[cells]]).
"""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path

import numpy as np
import pandas as pd

from mlpstudy import claims, gridmodels, stats
from mlpstudy.claims import INCONCLUSIVE, ClaimResult, Part, Settings

TITLE = "Claims of the study, tested on this run"


def num(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        if not np.isfinite(x):
            return "n/a" if np.isnan(x) else ("inf" if x > 0 else "-inf")
        return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"
    return str(x)


def estimate(p: Part) -> str:
    if not np.isfinite(p.estimate):
        return "n/a"
    text = f"{num(p.estimate)} [{num(p.ci[0])}, {num(p.ci[1])}]"
    if p.ratio:
        text += f" (x{np.exp(p.estimate):.3g} [{np.exp(p.ci[0]):.3g}, {np.exp(p.ci[1]):.3g}])"
    return text


def power_text(p: Part, settings: Settings) -> str:
    if p.verdict != INCONCLUSIVE or not np.isfinite(p.power):
        return ""
    need = (
        f"{p.trials_needed} trials"
        if p.trials_needed
        else f"more than {stats.MAX_TRIALS} trials (the estimate sits at the boundary)"
    )
    return (
        f"{p.power:.0%} to be {p.power_for} at {p.trials} trials; "
        f"{settings.power_target:.0%} needs {need}"
    )


def parts_table(parts: list[Part], settings: Settings, beside: bool = False) -> tuple:
    level = f"{settings.test_confidence:.0%}"
    head = ["part", "kind", "n", f"estimate [{level} CI]", "p support"]
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
        row = [p.name, p.kind, n, estimate(p), num(p.p_support)]
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
                "direction: supported if the one-sided test in the claimed direction gives "
                "p < alpha; contradicted if the opposite one-sided test does, or (where a "
                "margin is given) TOST shows the effect lies within +-margin.",
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
                f"{settings.power_target:.0%}.",
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
    b = [("h2", f"Claim {r.id}: {r.title} — {r.verdict.upper()}")]
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
            r.verdict.upper(),
            num(r.p_verdict),
            "-" if s is None else ("yes" if s else "no"),
        ]
        for r, s in zip(results, stands, strict=True)
    ]
    head = ["#", "claim", "section", "verdict", "p of the verdict", "stands under Holm (9 claims)"]
    return [("table", head, rows), ("p", family_text(results, settings))]


def power_blocks(results: list[ClaimResult], settings: Settings) -> list[tuple]:
    rows = [
        [f"{r.id}", p.name, p.power_for, f"{p.power:.0%}", num(p.trials_needed or None)]
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
            f"(n/a: more than {stats.MAX_TRIALS}).",
        ),
        ("table", ["claim", "part", "points to", "power now", "trials needed"], rows),
    ]


def conditions_blocks(runs: pd.DataFrame, options: dict | None) -> list[tuple]:
    return [
        ("h2", "Conditions of the data"),
        ("table", ["what", "value"], [list(r) for r in conditions(runs, options)]),
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


# --------------------------------------------------------------------------- conditions


def conditions(runs: pd.DataFrame, options: dict | None = None) -> list[tuple[str, str]]:
    """The conditions of the data the claims judge, as (what, value) rows."""
    rows: list[tuple[str, str]] = []

    def values(col):
        if col not in runs.columns:
            return None
        v = runs[col].dropna()
        return sorted(map(str, v.unique())) if len(v) else None

    for col, label in (("dataset", "dataset"), ("optimizer", "optimizer")):
        v = values(col)
        rows.append((label, ", ".join(v) if v else "not recorded"))
    starts = claims.start_modes(runs)
    rows.append(("start modes", ", ".join(starts) if starts else "not recorded"))
    v = values("threads")
    rows.append(("threads per run", ", ".join(v) if v else "not recorded"))
    _, lrs, batches = claims.axes(runs)
    rows.append(
        (
            "grid",
            f"backends {', '.join(claims._backends(runs))}; {lrs.size} learning rates x "
            f"{batches.size} batch sizes x {runs['trial'].nunique()} trials; "
            + (
                f"{int(runs['epochs'].max())} epochs"
                if claims._has(runs, "epochs")
                else "epochs n/a"
            ),
        )
    )
    for b in claims._backends(runs):
        opts = (options or {}).get(b)
        if opts:
            rows.append((f"options of {b}", ", ".join(f"{k}={v}" for k, v in opts.items())))
    modes = values("timing_mode")
    if modes is None:
        rows.append(("timing mode", "not recorded"))
    else:
        counts = runs["timing_mode"].value_counts()
        text = ", ".join(f"{k} ({n} runs)" for k, n in counts.items())
        if "throughput" in counts.index:
            text += (
                "; some runs were timed in throughput mode (several runs sharing the "
                "machine): the time claims (4-8) rest on contended timings"
            )
        rows.append(("timing mode", text))
    for col, label, fmt in (
        ("wall_cpu_ratio", "wall / CPU time of the training loop", "{:.3g}"),
        ("steal_s", "CPU time stolen by the hypervisor [s]", "{:.3g}"),
        ("overlapping_runs", "other runs overlapping a run", "{:.0f}"),
    ):
        if claims._has(runs, col):
            rows.append((label, _spread_text(runs, col, fmt)))
        else:
            rows.append((label, "not recorded"))
    machine = []
    for col in ("cpu_model", "hostname", "slurm_node"):
        v = values(col)
        if v:
            machine.append(f"{col}: {', '.join(v)}")
    rows.append(("machine", "; ".join(machine) if machine else "not recorded"))
    return rows


def _spread_text(runs: pd.DataFrame, col: str, fmt: str) -> str:
    parts = []
    for b, sub in runs.groupby("model"):
        x = pd.to_numeric(sub[col], errors="coerce").dropna()
        if len(x):
            parts.append(
                f"{b}: median {fmt.format(x.median())}, range {fmt.format(x.min())}-"
                f"{fmt.format(x.max())}"
            )
    return "; ".join(parts) if parts else "not recorded"


# --------------------------------------------------------------------------- rendering


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(bl: list[tuple]) -> str:
    out = []
    for kind, *rest in bl:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + f" {rest[0]}\n")
        elif kind == "p":
            out.append(f"{rest[0]}\n")
        elif kind == "quote":
            out.append(f"> {rest[0]}\n")
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in rest[0]) + "\n")
        elif kind == "table":
            head, rows = rest
            lines = ["| " + " | ".join(map(_md_cell, head)) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
            out.append("\n".join(lines) + "\n")
    return "\n".join(out)


STYLE = (
    "body{font-family:sans-serif;max-width:75em;margin:auto}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
    ".SUPPORTED,.supported{background:#dfd}.CONTRADICTED,.contradicted{background:#fdd}"
    ".INCONCLUSIVE,.inconclusive{background:#eee}"
    "blockquote{border-left:3px solid #999;margin-left:0;padding-left:1em}"
)


def to_html(bl: list[tuple], title: str) -> str:
    e = html.escape
    body = []
    for kind, *rest in bl:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{e(rest[0])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{e(rest[0])}</p>")
        elif kind == "quote":
            body.append(f"<blockquote>{e(rest[0])}</blockquote>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in rest[0]) + "</ul>")
        elif kind == "table":
            head, rows = rest
            th = "".join(f"<th>{e(h)}</th>" for h in head)
            trs = "".join(
                "<tr>" + "".join(f'<td class="{e(str(c))}">{e(str(c))}</td>' for c in row) + "</tr>"
                for row in rows
            )
            body.append(f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>")
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


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
    histories = pd.read_parquet(histories_path) if histories_path else None
    comparison = pd.read_csv(comparison_path) if comparison_path else None
    settings = dataclasses.replace(Settings(), **overrides)
    if settings.accuracy_step is None:
        settings = dataclasses.replace(settings, accuracy_step=claims._step(runs, settings))
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
