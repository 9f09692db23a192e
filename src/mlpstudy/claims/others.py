"""Every backend other than the reference (NumPy) compared with it: a section of claims.md
that is not one of the study's claims."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlpstudy import stats
from mlpstudy.claims import grids as G
from mlpstudy.claims.engine import DEFAULTS, Part, Settings, decide_part
from mlpstudy.claims.parts import cell_equivalence
from mlpstudy.claims.study import speed_at
from mlpstudy.defaults import REFERENCE


@dataclass
class OtherBackend:
    """A backend other than the reference compared with it (section of claims.md)."""

    backend: str
    time: list[dict]  # per batch size: ratio backend / reference with interval, p
    accuracy: Part | None
    accuracy_numbers: dict


def other_backends(runs: pd.DataFrame, settings: Settings = DEFAULTS) -> list[OtherBackend]:
    """Every backend but the reference against it: time ratio per batch size (per trial:
    mean over learning rates of log(time backend / time reference); t interval across
    trials at ``confidence``, two-sided t-test), and per-cell accuracy equivalence (as
    claim 3)."""
    runs = stats.check_runs(runs)
    if REFERENCE not in set(runs["backend"]):
        return []
    batches = G.axes(runs)[2]
    out = []
    for b in G.backends(runs):
        if b == REFERENCE:
            continue
        rows = []
        for j, bs in enumerate(batches):
            row = {"batch_size": int(bs)}
            for metric in stats.TIME_METRICS:
                if not G.has(runs, metric):
                    continue
                c = speed_at(runs, b, REFERENCE, j, metric)
                n, mean, _ = stats.summary(c)
                lo, hi = stats.t_interval(c, settings.confidence)
                row[metric] = dict(
                    n=n,
                    ratio=np.exp(mean),
                    ci=(np.exp(lo), np.exp(hi)),
                    p=stats.one_sample_p(c, 0.0),
                )
            rows.append(row)
        acc, numbers = cell_equivalence(runs, b, REFERENCE, settings)
        out.append(OtherBackend(b, rows, decide_part(acc, settings), numbers))
    return out
