"""Rendering a report given as a list of blocks to Markdown and to HTML, so that the two never
disagree (claims.md / .html, starts.md / .html).

A block is a tuple: ("h1" | "h2" | "h3" | "p" | "quote", text), ("ul", [items]) or
("table", [header], [[cells]]).
"""

from __future__ import annotations

import html

import numpy as np


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
