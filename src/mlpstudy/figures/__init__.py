"""The study's figures: pure table transforms (:mod:`.transforms`), one look
(:mod:`.style`) and one plotting function per figure (:mod:`.plots`)."""

from .plots import FIGURES, PER_BACKEND, draw
from .transforms import (
    heatmap_matrix,
    loss_curves,
    read_histories,
    read_runs,
    summarise,
    t_interval,
)

__all__ = [
    "FIGURES",
    "PER_BACKEND",
    "draw",
    "heatmap_matrix",
    "loss_curves",
    "read_histories",
    "read_runs",
    "summarise",
    "t_interval",
]
