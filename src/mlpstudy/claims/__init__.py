"""Test the study's claims on one study's runs: ``{STUDY}/claims.md`` and ``claims.html``.

Every claim becomes one or more *parts*; a part is a test on a contrast computed once per
independent replicate. The replicate is the **trial**: trial k of every cell and backend
shares its seed (and, with `start: shared`, its initial weights and batch order), so the
cells of one trial are not independent of each other, but trials are. A per-trial contrast
(say, the slope of accuracy against log10 learning rate, averaged over batch sizes) gives T
independent numbers, and its t-test has T - 1 degrees of freedom. Claim 8 (spread across
trials) compares variances with a model that has a random trial effect shared by the cells
of a trial (``spread.spread_ratio``): each backend's degrees of freedom fall to T - 1 when
its trial effect dominates, so 25 cells of 3 trials never count as 25 replicates.

The package, one job per module:

* ``engine``: settings, parts, their tests against one boundary, the one verdict rule
  (``decide_part``), a claim's verdict (``decide``), power and its range;
* ``grids``: a run table as arrays [trial, learning rate, batch size], slopes, the
  accuracy's resolution, the start mode, the contended runs;
* ``parts``: parts on [cell, trial] layouts (spread across trials, per-cell equivalence);
* ``text``: the claims' quotations; ``study``: claims 1-7; ``noise``: claims 8 and 9;
* ``others``: every other backend against the reference (NumPy); ``conditions``: the
  conditions of the data; ``render``: Markdown and HTML from one list of blocks.

Every verdict is reached under the study's start mode (``ClaimResult.start``): with a
shared start claims 3, 8 and 9 ask whether the implementations compute the same thing
from the same start, not what the study (independent starts) asked.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from mlpstudy import stats
from mlpstudy.claims.engine import (
    CONTRADICTED,
    DEFAULTS,
    INCONCLUSIVE,
    SD_RATIO_MARGIN,
    SMOOTHNESS_MARGIN,
    SUPPORTED,
    ClaimResult,
    Part,
    Plan,
    Settings,
    decide,
    decide_part,
    direction_part,
    equivalence_part,
    family,
    inconclusive_part,
    threshold_part,
    verdict_of,
)
from mlpstudy.claims.grids import (
    NUMPY,
    STUDY_BACKENDS,
    TENSORFLOW,
    Grid,
    axes,
    grid,
    logit_accuracy,
    nanmean,
    resolution,
    start_modes,
    start_of,
)
from mlpstudy.claims.noise import (
    LOSS_RESOLUTION,
    claim_numpy_higher_variance,
    claim_tensorflow_smoother,
    curve_features,
    roughness,
)
from mlpstudy.claims.others import OtherBackend, other_backends
from mlpstudy.claims.parts import cell_equivalence, cells_power, shrunk_means, spread_part
from mlpstudy.claims.study import (
    claim_accuracy_vs_batch_size,
    claim_accuracy_vs_learning_rate,
    claim_equal_accuracy,
    claim_numpy_faster_small_batches,
    claim_numpy_time_insensitive,
    claim_tensorflow_faster_large_batches,
    claim_tensorflow_time_vs_batch,
    speed_at,
)

__all__ = [
    "CONTRADICTED",
    "DEFAULTS",
    "INCONCLUSIVE",
    "LOSS_RESOLUTION",
    "NUMPY",
    "SD_RATIO_MARGIN",
    "SMOOTHNESS_MARGIN",
    "STUDY_BACKENDS",
    "SUPPORTED",
    "TENSORFLOW",
    "ClaimResult",
    "Grid",
    "OtherBackend",
    "Part",
    "Plan",
    "Settings",
    "axes",
    "cell_equivalence",
    "cells_power",
    "claim_accuracy_vs_batch_size",
    "claim_accuracy_vs_learning_rate",
    "claim_equal_accuracy",
    "claim_numpy_faster_small_batches",
    "claim_numpy_higher_variance",
    "claim_numpy_time_insensitive",
    "claim_tensorflow_faster_large_batches",
    "claim_tensorflow_smoother",
    "claim_tensorflow_time_vs_batch",
    "curve_features",
    "decide",
    "decide_part",
    "direction_part",
    "equivalence_part",
    "evaluate_claims",
    "family",
    "grid",
    "inconclusive_part",
    "logit_accuracy",
    "nanmean",
    "other_backends",
    "resolution",
    "roughness",
    "shrunk_means",
    "speed_at",
    "spread_part",
    "start_modes",
    "start_of",
    "threshold_part",
    "verdict_of",
]


def evaluate_claims(
    runs: pd.DataFrame,
    histories: pd.DataFrame | None = None,
    comparison: pd.DataFrame | None = None,
    settings: Settings | None = None,
    **overrides,
) -> list[ClaimResult]:
    """All claims, in order. ``overrides`` replace fields of ``settings`` (e.g. alpha=0.01).

    ``comparison`` (comparison.csv), if given, adds what the per-cell tests say to claims 6
    and 7."""
    settings = dataclasses.replace(settings or Settings(), **overrides)
    runs = stats.check_runs(runs)
    if settings.accuracy_step is None:  # inferred once
        settings = dataclasses.replace(settings, accuracy_step=resolution(runs, settings))
    return [
        claim_accuracy_vs_learning_rate(runs, settings),
        claim_accuracy_vs_batch_size(runs, settings),
        claim_equal_accuracy(runs, settings),
        claim_numpy_time_insensitive(runs, settings),
        claim_tensorflow_time_vs_batch(runs, settings),
        claim_numpy_faster_small_batches(runs, comparison, settings),
        claim_tensorflow_faster_large_batches(runs, comparison, settings),
        claim_numpy_higher_variance(runs, settings),
        claim_tensorflow_smoother(histories, settings, runs),
    ]
