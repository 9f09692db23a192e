"""One look for every figure: backend colours, axis scales, units, resolution.

A backend's label, colour (Okabe-Ito palette, safe for the common colour-vision
deficiencies), line style and marker come from its entry in the backend registry
(``mlpstudy.backends.REGISTRY``); nothing here names a backend. A name the registry does
not know (a table from elsewhere) gets a colour the registry leaves free, a line style and
a marker chosen by a stable hash of its name, so it looks the same in every figure.
"""

from __future__ import annotations

import zlib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from mlpstudy.backends import REGISTRY

DPI = 150

OKABE_ITO = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#000000",  # black
)
_SPARE_LINESTYLES = [":", "-.", (0, (5, 1, 1, 1, 1, 1))]
_SPARE_MARKERS = ["^", "D", "v", "P"]

UNITS = {
    "test_accuracy": "Test accuracy (%)",
    "training_time_s": "Training time (s)",
    "train_loss": "Training loss (cross-entropy)",
    "learning_rate": "Learning rate (log scale)",
    "batch_size": "Batch size (log\u2082 scale)",
    "epoch": "Epoch",
}

#: Factor from the table's unit to the plotted one (accuracy: fraction -> %).
SCALE = {"test_accuracy": 100.0}


def _pick(name: str, choices: list):
    return choices[zlib.crc32(name.encode()) % len(choices)]


def _spare_colours() -> list[str]:
    taken = {entry.color.upper() for entry in REGISTRY.values()}
    return [c for c in OKABE_ITO if c.upper() not in taken] or list(OKABE_ITO)


def backend_color(name: str) -> str:
    entry = REGISTRY.get(name)
    return entry.color if entry else _pick(name, _spare_colours())


def backend_linestyle(name: str):
    entry = REGISTRY.get(name)
    return entry.linestyle if entry else _pick(name, _SPARE_LINESTYLES)


def backend_marker(name: str) -> str:
    entry = REGISTRY.get(name)
    return entry.marker if entry else _pick(name, _SPARE_MARKERS)


def backend_label(name: str) -> str:
    """The backend's display name; an unregistered one is shown as it is named."""
    entry = REGISTRY.get(name)
    return entry.label if entry else name


def backend_order(names) -> list[str]:
    """Backends in a fixed order: the registered ones in registry order, then the rest by
    name, so a backend has the same place in every legend."""
    names = set(names)
    return [b for b in REGISTRY if b in names] + sorted(names - set(REGISTRY))


def marker_face(name: str, shown: list[str]) -> str:
    """Filled marker for the first backend shown, open ones for the others: backends that
    agree exactly (shared start) then show both markers instead of one on top."""
    return backend_color(name) if name == shown[0] else "none"


def backend_cmap(name: str) -> LinearSegmentedColormap:
    """Sequential map from near-white to the backend's colour (monotone in lightness)."""
    return LinearSegmentedColormap.from_list(f"seq_{name}", ["#f7f7f7", backend_color(name)])


def number(x: float) -> str:
    """Hyperparameter values as people write them: 0.001, 0.03, 128."""
    return f"{x:g}"


def log_lr_axis(ax: Axes, values) -> None:
    """Learning rate on a base-10 log axis, ticks at the grid's values."""
    ax.set_xscale("log")
    ax.set_xticks(sorted(values))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: number(x)))
    ax.set_xlabel(UNITS["learning_rate"])


def log2_batch_axis(ax: Axes, values) -> None:
    """Batch size on a base-2 log axis, ticks at the grid's values."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(values))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: number(x)))
    ax.set_xlabel(UNITS["batch_size"])


def log_y_axis(ax: Axes, low: float, high: float) -> None:
    """A base-10 log y axis over [low, high]: ticks at 1-2-5 for up to two decades, else
    at the powers of ten only, so the labels never crowd."""
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    _log_ticks(ax.yaxis, low, high)


def log_x_axis(ax: Axes, low: float, high: float) -> None:
    """Like :func:`log_y_axis`, for the x axis."""
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    _log_ticks(ax.xaxis, low, high)


def _log_ticks(axis, low: float, high: float) -> None:
    subs = (1.0, 2.0, 5.0) if high / low <= 100 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: number(v)))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def apply_theme() -> None:
    """Seaborn's white grid with text sized for reading at 100 % zoom at 150 dpi."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)
    plt.rcParams.update(
        {
            "figure.dpi": DPI,
            "savefig.dpi": DPI,
            "axes.titlesize": 11,
            "axes.titleweight": "bold",
            "figure.titlesize": 13,
            "figure.titleweight": "bold",
            "legend.frameon": False,
        }
    )
