"""``results/starts.md`` (+ .html): shared against independent starts, for the studies that
differ only by ``start`` (same dataset, optimizer and threads).

For each such pair of studies:

* the verdicts of all nine claims under each start mode, side by side (the table the
  README shows), and claims 3, 8 and 9 part by part (the claims about the two backends'
  agreement, spread and loss curves are the ones a shared start changes the meaning of);
* the attribution test: do the implementations' accuracy differences come from their starts?
  The per-run difference d = accuracy NumPy - accuracy TensorFlow (same cell, same trial)
  spreads across trials under both modes; if the starts cause it, it spreads more under
  independent starts. Its variance under each mode comes from the same trial-effect model
  as claim 8 (``spread.spread_ratio``), the ratio is tested one-sided (independent > shared),
  and 1 - var(shared) / var(independent) is the share of the differences the start explains.
  The statement "the differences come from the starts, not from the implementations" is
  supported when that spread is significantly more than ``sd_ratio_margin`` times larger
  with independent starts (the same material-direction rule as claim 8) and the shared
  start gives equivalent accuracy in every cell (claim 3 supported); contradicted when the
  spread is significantly less than that or claim 3 is contradicted under the shared
  start; inconclusive otherwise;
* what the README may say, as sentences chosen by those verdicts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from mlpstudy import aggregate, claims, claims_report, stats
from mlpstudy.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    NUMPY,
    SUPPORTED,
    TENSORFLOW,
    Part,
    Settings,
)

STARTS = ("shared", "independent")
GROUP = tuple(a for a in stats.STUDY_AXES if a != "start")  # what a pair shares
TITLE = "Shared against independent starts"
DETAIL = (3, 8, 9)  # the claims shown part by part


@dataclasses.dataclass
class StartPair:
    group: dict  # dataset, optimizer, threads
    claims: dict  # start -> {claim id: ClaimResult}, all nine
    spread: Part  # spread of the per-run difference: independent vs shared
    mean_diff: dict  # start -> Part: grid-wide mean difference within the margin
    verdict: str = INCONCLUSIVE
    reason: str = ""
    sentences: list[str] = dataclasses.field(default_factory=list)


def _difference(runs: pd.DataFrame, step: float) -> np.ndarray:
    """[cell, trial] of accuracy NumPy - TensorFlow, in percentage points."""
    a = claims.grid(runs, NUMPY, "test_accuracy").values
    b = claims.grid(runs, TENSORFLOW, "test_accuracy").values
    d = 100 * (a - b)
    return d.reshape(d.shape[0], -1).T


def _spread_part(shared: pd.DataFrame, indep: pd.DataFrame, settings: Settings) -> Part:
    step = max(claims.resolution(shared, settings), claims.resolution(indep, settings))
    floor = 100 * np.sqrt(2) * step
    d_sh, d_in = _difference(shared, step), _difference(indep, step)
    part = Part(
        name="accuracy difference NumPy - TensorFlow: spread, independent vs shared",
        kind="direction",
        statistic="log(sd independent / sd shared) of the per-run difference across trials",
    )
    if d_sh.shape != d_in.shape:
        part.reason = f"the two studies' grids differ ({d_sh.shape} vs {d_in.shape} cells x trials)"
        return part
    return claims.spread_part(
        d_in, d_sh, part.name, part.statistic, settings, floors=(floor, floor)
    )


def _mean_part(runs: pd.DataFrame, settings: Settings) -> Part:
    step = claims.resolution(runs, settings)
    d = _difference(runs, step).T / 100  # [trial, cell], fraction
    per_trial = claims.nanmean(d, axis=1)
    part = Part(name="grid-wide mean difference", kind="", statistic="accuracy NumPy - TensorFlow")
    return claims.equivalence_part(
        part, per_trial, settings.accuracy_margin, settings, floor=np.sqrt(2) * step
    )


def compare_pair(shared, indep, settings: Settings) -> StartPair:
    """``shared`` / ``indep``: (runs, histories) of the two studies."""
    res = {}
    for start, (runs, hist) in (("shared", shared), ("independent", indep)):
        runs = stats.check_runs(runs)
        s = dataclasses.replace(settings, accuracy_step=claims.resolution(runs, settings))
        res[start] = {r.id: r for r in claims.evaluate_claims(runs, hist, settings=s)}
    sh, ind = stats.check_runs(shared[0]), stats.check_runs(indep[0])
    spread = claims.decide_part(_spread_part(sh, ind, settings), settings)
    group = {a: str(sh[a].iloc[0]) for a in GROUP if a in sh.columns}
    pair = StartPair(
        group,
        res,
        spread,
        {"shared": _mean_part(sh, settings), "independent": _mean_part(ind, settings)},
    )
    for part in pair.mean_diff.values():
        claims.decide_part(part, settings)
    c3 = res["shared"][3].verdict
    if spread.verdict == SUPPORTED and c3 == SUPPORTED:
        pair.verdict, pair.reason = (
            SUPPORTED,
            (
                "the difference spreads more with independent starts, and with a shared start "
                "the accuracies are equivalent in every cell"
            ),
        )
    elif spread.verdict == CONTRADICTED or c3 == CONTRADICTED:
        pair.verdict = CONTRADICTED
        pair.reason = (
            "the difference does not spread more with independent starts"
            if spread.verdict == CONTRADICTED
            else "even with a shared start some cell differs beyond the margin (claim 3)"
        )
    else:
        pair.verdict = INCONCLUSIVE
        pair.reason = "; ".join(
            x
            for x in (
                f"spread: {spread.reason}" if spread.verdict == INCONCLUSIVE else "",
                f"claim 3 under the shared start: {res['shared'][3].reason}"
                if c3 == INCONCLUSIVE
                else "",
            )
            if x
        )
    pair.sentences = sentences(pair, settings)
    return pair


def sentences(pair: StartPair, settings: Settings) -> list[str]:
    """What the README may say about starts, chosen by the verdicts."""
    out = []
    sp = pair.spread
    if pair.verdict == SUPPORTED:
        sd_in, sd_sh = (np.sqrt(sp.details[k]) for k in ("var1", "var2"))
        low = 1 - np.exp(-2 * sp.ci[0])
        out.append(
            "With a shared start the two implementations reach equivalent accuracy in every "
            f"cell (within +-{settings.accuracy_margin * 100:g} pp); with independent starts "
            f"their accuracies in the same cell and trial differ with a standard deviation of "
            f"{sd_in:.2g} pp, against {sd_sh:.2g} pp with the shared start"
            + (
                " (identical accuracies: that is one test image per backend)"
                if sp.details.get("floored2")
                else ""
            )
            + f": the start explains "
            f"{_share(1 - (sd_sh / sd_in) ** 2)} of those differences (at least "
            f"{_share(low)}, one-sided {1 - settings.alpha:.0%}). The differences between the "
            "implementations' accuracies come from their starts, not from the "
            "implementations."
        )
    elif pair.verdict == CONTRADICTED:
        out.append(
            "Different starts do not explain the implementations' accuracy differences "
            f"in this run: {pair.reason}."
        )
    else:
        need = f" ({claims_report.power_text(sp, settings)})" if np.isfinite(sp.power) else ""
        out.append(
            "This run cannot tell whether the implementations' accuracy differences come "
            f"from their starts: {pair.reason}{need}."
        )
    v8 = {s: r[8].parts[0] for s, r in pair.claims.items()}
    ind, sh = v8["independent"].verdict, v8["shared"].verdict
    if ind == SUPPORTED and sh != SUPPORTED:
        out.append(
            "NumPy's higher accuracy variance appears with independent starts and not with "
            "a shared start: it comes from the starts, not from the implementation."
        )
    elif ind == SUPPORTED and sh == SUPPORTED:
        out.append(
            "NumPy's accuracy varies more than TensorFlow's even from the same start: that "
            "variance comes from the implementation."
        )
    elif ind == CONTRADICTED:
        out.append(
            "With independent starts, as in the study, NumPy's accuracy does not vary "
            f"{settings.sd_ratio_margin} times as much as TensorFlow's or more: the study's "
            "higher NumPy variance is not reproduced."
        )
    else:
        p = v8["independent"]
        need = f" ({claims_report.power_text(p, settings)})" if np.isfinite(p.power) else ""
        out.append(
            "Whether NumPy's accuracy varies more with independent starts is not decided at "
            f"this run's trials{need}."
        )
    return out


def _share(x: float) -> str:
    return ">99.9%" if x > 0.999 else f"{x:.1%}"


def _parts_row(label, parts: dict) -> list[str]:
    row = [label]
    for start in STARTS:
        p = parts.get(start)
        row.append(f"{p.verdict}: {claims_report.estimate(p)}" if p is not None else "n/a")
    return row


def blocks(pairs: list[StartPair], lone: list[str], settings: Settings) -> list[tuple]:
    b: list[tuple] = [
        ("h1", TITLE),
        (
            "p",
            "For every pair of studies that differ only by start: the nine claims' verdicts "
            "under each start mode (claims 3, 8 and 9 part by part), and whether the "
            "implementations' accuracy differences come from their starts (the spread "
            "across trials of the per-run difference NumPy - "
            "TensorFlow, independent against shared start, from a model with a random "
            "trial effect; one-sided F test). The sentences at the end of each section are "
            "what the README may say, chosen by these verdicts. Method: docs/statistics.md.",
        ),
    ]
    level = f"{settings.test_confidence:.0%}"
    for pair in pairs:
        name = ", ".join(f"{k}={v}" for k, v in pair.group.items()) or "the study"
        b.append(("h2", name))
        b.append(("h3", "The nine claims under each start"))
        b.append(verdict_table(pair))
        b.append(("p", VERDICT_NOTE))
        rows = []
        for i in DETAIL:
            rows.append(
                [f"claim {i}: {pair.claims['shared'][i].title}"]
                + [pair.claims[s][i].verdict.upper() for s in STARTS]
            )
            n_parts = len(pair.claims["shared"][i].parts)
            for k in range(n_parts):
                parts = {
                    s: pair.claims[s][i].parts[k]
                    for s in STARTS
                    if k < len(pair.claims[s][i].parts)
                }
                rows.append(_parts_row(f"  {parts['shared'].name}", parts))
        b.append(
            ("table", ["claim / part", f"shared [{level} CI]", f"independent [{level} CI]"], rows)
        )
        b.append(("h3", "Do the accuracy differences come from the starts?"))
        b.append(("p", f"Verdict: {pair.verdict.upper()} ({pair.reason})."))
        b.append(claims_report.parts_table([pair.spread], settings))
        b.append(
            (
                "p",
                "The grid-wide mean difference under each start (TOST within "
                f"+-{settings.accuracy_margin}):",
            )
        )
        b.append(
            claims_report.parts_table(
                [
                    dataclasses.replace(pair.mean_diff[s], name=f"{s}: {pair.mean_diff[s].name}")
                    for s in STARTS
                ],
                settings,
            )
        )
        b.append(("h3", "What the README may say"))
        b.append(("ul", pair.sentences))
    if lone:
        b.append(("h2", "Studies without a counterpart"))
        b.append(("ul", lone))
    if not pairs and not lone:
        b.append(("p", "No study in this run."))
    return b


VERDICT_NOTE = (
    "The study's own setting is the independent start (each backend its own initial weights "
    "and batch order). With a shared start claims 3, 8 and 9 ask another question: whether "
    "the two implementations compute the same thing from the same start."
)


def verdict_table(pair: StartPair) -> tuple:
    """The nine claims, one row each, per start the verdict, the p-value behind it and the
    parts behind it with their estimates and 90 % intervals (``claims_report.why``)."""
    head = ["#", "claim", "section", "shared start", "independent start (the study's)"]
    rows = []
    for cid, r in pair.claims["shared"].items():
        cells = []
        for s in STARTS:
            x = pair.claims[s][cid]
            p = f", p {claims_report.num(x.p_verdict)}" if np.isfinite(x.p_verdict) else ""
            cells.append(f"{x.verdict.upper()}{p} ({claims_report.why(x)})")
        rows.append([str(cid), r.title, r.section, *cells])
    return ("table", head, rows)


def _read(table: str, histories: str | None):
    runs = stats.load_runs(table)
    hist = aggregate.read_histories(histories) if histories and Path(histories).exists() else None
    return runs, hist


def _key(runs: pd.DataFrame, path: str) -> tuple[tuple, str]:
    """(the study's group, its start), from the table or else from the path's fields."""
    fields = dict(p.split("=", 1) for p in Path(path).parts if "=" in p)
    group = tuple(str(runs[a].iloc[0]) if a in runs.columns else fields.get(a, "") for a in GROUP)
    starts = claims.start_modes(runs) or [fields.get("start", "")]
    return group, starts[0]


def compare_starts(tables, histories=None, settings: Settings | None = None):
    """Pair the studies by (dataset, optimizer, threads); returns (pairs, lone studies)."""
    settings = settings or Settings()
    histories = list(histories or [None] * len(tables))
    studies: dict[tuple, dict] = {}
    for table, hist in zip(tables, histories, strict=True):
        runs, h = _read(str(table), None if hist is None else str(hist))
        group, start = _key(runs, str(table))
        studies.setdefault(group, {})[start] = (runs, h)
    pairs, lone = [], []
    for group, by_start in sorted(studies.items()):
        if all(s in by_start for s in STARTS):
            pairs.append(compare_pair(by_start["shared"], by_start["independent"], settings))
        else:
            name = ", ".join(f"{a}={v}" for a, v in zip(GROUP, group, strict=True) if v)
            lone.append(f"{name}: only start {', '.join(sorted(by_start))} in this run")
    return pairs, lone


def write_starts(tables, histories, markdown_path, html_path, **overrides) -> list[StartPair]:
    """The rule ``starts``: every study's runs.csv (+ histories) -> starts.md / .html."""
    settings = dataclasses.replace(Settings(), **overrides)
    pairs, lone = compare_starts(tables, histories, settings)
    bl = blocks(pairs, lone, settings)
    for path, text in (
        (markdown_path, claims_report.to_markdown(bl)),
        (html_path, claims_report.to_html(bl, TITLE)),
    ):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    return pairs


def main(argv: list[str] | None = None) -> None:
    """Print the verdict table of every pair of studies among the given runs.csv files (the
    histories.parquet beside each is read when present): the README's verdict table.

    .venv/bin/python -m mlpstudy.starts \\
        results/studies/dataset=mnist/optimizer=sgd/start=*/threads=1/runs.csv
    """
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__.split("\n")[0])
    ap.add_argument("tables", nargs="+")
    args = ap.parse_args(argv)
    hist = [Path(t).with_name("histories.parquet") for t in args.tables]
    pairs, lone = compare_starts(args.tables, [h if h.exists() else None for h in hist])
    for pair in pairs:
        name = ", ".join(f"{k}={v}" for k, v in pair.group.items())
        print(claims_report.to_markdown([("p", name), verdict_table(pair), ("p", VERDICT_NOTE)]))
    for text in lone:
        print(text)


if __name__ == "__main__":
    main()
