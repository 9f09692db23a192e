"""The study's figures: pure table transforms (:mod:`.transforms`), one look
(:mod:`.style`), one plotting function per figure (:mod:`.plots`), the one list of
figures (:mod:`.registry`), the report's organisation (:mod:`.report`) and the overview
across studies (:mod:`.overview`).

Importing the package or :mod:`.registry` / :mod:`.report` is light (the workflow does
it at parse time); the transforms are imported on first use.
"""

from .registry import FIGURES, FigureInfo, draw, figure_path, figure_targets

_TRANSFORMS = (
    "heatmap_matrix",
    "loss_curves",
    "read_histories",
    "read_runs",
    "summarise",
    "t_interval",
)

__all__ = ["FIGURES", "FigureInfo", "draw", "figure_path", "figure_targets", *_TRANSFORMS]


def __getattr__(name: str):
    if name in _TRANSFORMS:
        from . import transforms

        return getattr(transforms, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
