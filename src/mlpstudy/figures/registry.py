"""The study's figures, one entry each: the only list of them.

Everything else derives from :data:`FIGURES`: the wildcard constraints of the two
Snakemake rules (one per kind: ``figure_backend`` draws ``{figure}_{backend}.png`` from one
backend's table, ``figure`` draws ``{figure}.png`` from the study's combined tables), the
targets of a study (:func:`figure_targets`), the report's subcategory and labels, and
:func:`draw`. A figure's caption is its block in ``workflow/report/figure.rst`` (long prose
kept as data; Snakemake does not format wildcards in a caption's path, so one caption file
serves both rules and picks the block by ``snakemake.wildcards.figure``); a test checks
that every entry has one and that it starts with the entry's ``title``.

Adding a figure: a drawing function in :mod:`.plots`, one entry below, one caption block.

The workflow imports this module when it parses the Snakefile (every snakemake call and
every cluster job does), so it imports nothing heavy: the drawing functions are named
here and imported from :mod:`.plots` (matplotlib, pandas, SciPy) only by :func:`draw`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mlpstudy.backends import REGISTRY as BACKENDS

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class FigureInfo:
    """One figure of a study."""

    #: The file's stem (``{figure}`` wildcard), without the backend.
    name: str
    #: The drawing function's name in :mod:`.plots`:
    #: ``plot_x(table, out_path[, backend=...]) -> Figure``, the table the one ``reads`` names.
    function: str
    #: Drawn once per backend (``{name}_{backend}.png`` from that backend's tables only)
    #: or once per study with every backend (``{name}.png``).
    per_backend: bool
    #: Which table it draws: the run table or the per-epoch histories (the rules' input
    #: names are the same words).
    reads: Literal["runs", "histories"]
    #: What the figure is, in a few words: the report's ``figure`` label and the first
    #: words of its caption.
    title: str
    #: The study's figure numbers this figure reproduces; the report's subcategory.
    subcategory: str

    def drawer(self):
        """The drawing function (imports :mod:`.plots`)."""
        return getattr(importlib.import_module(f"{__package__}.plots"), self.function)


_ENTRIES = (
    FigureInfo(
        "speed_accuracy",
        "plot_speed_accuracy",
        per_backend=True,
        reads="runs",
        title="Speed vs accuracy",
        subcategory="1-2 Speed vs accuracy",
    ),
    FigureInfo(
        "accuracy_vs_batch_size",
        "plot_accuracy_vs_batch_size",
        per_backend=False,
        reads="runs",
        title="Test accuracy vs batch size",
        subcategory="3-4 Accuracy vs hyperparameters",
    ),
    FigureInfo(
        "accuracy_vs_learning_rate",
        "plot_accuracy_vs_learning_rate",
        per_backend=False,
        reads="runs",
        title="Test accuracy vs learning rate",
        subcategory="3-4 Accuracy vs hyperparameters",
    ),
    FigureInfo(
        "time_vs_batch_size",
        "plot_time_vs_batch_size",
        per_backend=False,
        reads="runs",
        title="Training time vs batch size",
        subcategory="5-6 Training time vs hyperparameters",
    ),
    FigureInfo(
        "time_vs_learning_rate",
        "plot_time_vs_learning_rate",
        per_backend=False,
        reads="runs",
        title="Training time vs learning rate",
        subcategory="5-6 Training time vs hyperparameters",
    ),
    FigureInfo(
        "accuracy_heatmap",
        "plot_accuracy_heatmap",
        per_backend=True,
        reads="runs",
        title="Test accuracy heatmap",
        subcategory="7-10 Heatmaps",
    ),
    FigureInfo(
        "time_heatmap",
        "plot_time_heatmap",
        per_backend=True,
        reads="runs",
        title="Training time heatmap",
        subcategory="7-10 Heatmaps",
    ),
    FigureInfo(
        "loss_curves",
        "plot_loss_curves",
        per_backend=False,
        reads="histories",
        title="Training loss curves",
        subcategory="11 Loss curves",
    ),
)

#: name -> entry, in the study's order.
FIGURES: dict[str, FigureInfo] = {entry.name: entry for entry in _ENTRIES}


def info(figure: str) -> FigureInfo:
    """The entry of ``figure``; a ValueError lists the known ones."""
    if figure not in FIGURES:
        raise ValueError(f"unknown figure {figure!r}; known: {', '.join(FIGURES)}")
    return FIGURES[figure]


def names(per_backend: bool) -> list[str]:
    """The figures of one kind, in the study's order."""
    return [f.name for f in FIGURES.values() if f.per_backend == per_backend]


def constraint(per_backend: bool) -> str:
    """The ``{figure}`` wildcard's regular expression for the rule of one kind."""
    return "|".join(names(per_backend))


def figure_path(study_dir: str | os.PathLike, figure: str, backend: str | None = None) -> str:
    """The file of one figure of one study: ``{study_dir}/figures/{figure}[_{backend}].png``.

    ``backend`` is required for a per-backend figure and refused for the others, so a path
    built here always names a figure some rule makes.
    """
    entry = info(figure)
    if entry.per_backend != (backend is not None):
        need = "needs a backend" if entry.per_backend else "shows every backend, no backend"
        raise ValueError(f"figure {figure!r} {need}")
    stem = f"{figure}_{backend}" if backend is not None else figure
    return f"{os.fspath(study_dir).rstrip('/')}/figures/{stem}.png"


def figure_targets(study_dir: str | os.PathLike, backends: Iterable[str]) -> list[str]:
    """Every figure of one study: each per-backend figure for each backend, in the
    registry's order, then the figures that show every backend."""
    backends = list(backends)
    return [
        figure_path(study_dir, name, backend)
        for name in names(per_backend=True)
        for backend in backends
    ] + [figure_path(study_dir, name) for name in names(per_backend=False)]


def report_labels(figure: str, backend: str | None = None) -> dict[str, str]:
    """The labels of one figure in the HTML report's table of its subcategory."""
    return {
        "figure": info(figure).title,
        "backend": (BACKENDS[backend].label if backend in BACKENDS else backend)
        if backend
        else "all",
    }


def draw(figure: str, source, out_path, backend: str | None = None) -> Figure:
    """Draw ``figure`` from ``source`` (the table its entry ``reads``) into ``out_path``.

    ``backend`` is required by the per-backend figures and refused by the others.
    """
    entry = info(figure)
    if entry.per_backend:
        if backend is None:
            raise ValueError(f"figure {figure!r} is drawn per backend: give backend=")
        return entry.drawer()(source, out_path, backend=backend)
    if backend is not None:
        raise ValueError(f"figure {figure!r} shows every backend; backend= is not used")
    return entry.drawer()(source, out_path)
