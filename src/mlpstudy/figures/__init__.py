"""The study's figures: pure table transforms (:mod:`.transforms`), one look
(:mod:`.style`), one plotting function per figure (:mod:`.plots`), the one list of
figures (:mod:`.registry`) and the overview across studies (:mod:`.overview`)."""

from .registry import FIGURES, FigureInfo, draw, figure_targets
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
    "FigureInfo",
    "draw",
    "figure_targets",
    "heatmap_matrix",
    "loss_curves",
    "read_histories",
    "read_runs",
    "summarise",
    "t_interval",
]
