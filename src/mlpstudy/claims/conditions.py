"""The conditions of the data the claims judge (a section of claims.md): dataset, optimizer,
start mode, threads, grid, backend options, contended runs, timing mode and the machine."""

from __future__ import annotations

import pandas as pd

from mlpstudy.claims import grids as G


def conditions_blocks(runs: pd.DataFrame, options: dict | None) -> list[tuple]:
    return [
        ("h2", "Conditions of the data"),
        ("table", ["what", "value"], [list(r) for r in conditions(runs, options)]),
    ]


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
    starts = G.start_modes(runs)
    rows.append(("start modes", ", ".join(starts) if starts else "not recorded"))
    v = values("threads")
    rows.append(("threads per run", ", ".join(v) if v else "not recorded"))
    n = G.contended_count(runs)
    rows.append(
        (
            "contended runs (times left out)",
            "not recorded" if n is None else f"{n} of {len(runs)}" if n else "none",
        )
    )
    _, lrs, batches = G.axes(runs)
    rows.append(
        (
            "grid",
            f"backends {', '.join(G.backends(runs))}; {lrs.size} learning rates x "
            f"{batches.size} batch sizes x {runs['trial'].nunique()} trials; "
            + (f"{int(runs['epochs'].max())} epochs" if G.has(runs, "epochs") else "epochs n/a"),
        )
    )
    for b in G.backends(runs):
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
        if G.has(runs, col):
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
    for b, sub in runs.groupby("backend"):
        x = pd.to_numeric(sub[col], errors="coerce").dropna()
        if len(x):
            parts.append(
                f"{b}: median {fmt.format(x.median())}, range {fmt.format(x.min())}-"
                f"{fmt.format(x.max())}"
            )
    return "; ".join(parts) if parts else "not recorded"
