"""One look for every figure: backend colours, axis scales, units, resolution.

Backend colours come from the Okabe-Ito palette (safe for the common colour-vision
deficiencies). The study's two backends have fixed colours; any other backend gets a
colour from the rest of the palette chosen by a stable hash of its name, so it keeps the
same colour in every figure and every run, whatever else is configured.
"""

from __future__ import annotations

import zlib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

DPI = 150

OKABE_ITO = {
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "orange": "#E69F00",
    "bluish_green": "#009E73",
    "reddish_purple": "#CC79A7",
    "sky_blue": "#56B4E9",
    "black": "#000000",
}

KNOWN_BACKENDS = {"numpy": OKABE_ITO["blue"], "tensorflow": OKABE_ITO["vermillion"]}
_SPARE = [OKABE_ITO[k] for k in ("orange", "bluish_green", "reddish_purple", "sky_blue", "black")]

KNOWN_LINESTYLES = {"numpy": "-", "tensorflow": "--"}
_SPARE_LINESTYLES = [":", "-.", (0, (5, 1, 1, 1, 1, 1))]
KNOWN_MARKERS = {"numpy": "o", "tensorflow": "s"}
_SPARE_MARKERS = ["^", "D", "v", "P"]

#: Display names in titles and legends; unknown backends are shown as they are named.
LABELS = {"numpy": "NumPy", "tensorflow": "TensorFlow/Keras"}

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


def _pick(name: str, spare: list):
    return spare[zlib.crc32(name.encode()) % len(spare)]


def backend_color(name: str) -> str:
    return KNOWN_BACKENDS.get(name) or _pick(name, _SPARE)


def backend_linestyle(name: str):
    return KNOWN_LINESTYLES.get(name) or _pick(name, _SPARE_LINESTYLES)


def backend_marker(name: str) -> str:
    return KNOWN_MARKERS.get(name) or _pick(name, _SPARE_MARKERS)


def marker_face(name: str, shown: list[str]) -> str:
    """Filled marker for the first backend shown, open ones for the others: backends that
    agree exactly (shared start) then show both markers instead of one on top."""
    return backend_color(name) if name == shown[0] else "none"


def backend_label(name: str) -> str:
    return LABELS.get(name, name)


def backend_palette(names) -> dict[str, str]:
    return {name: backend_color(name) for name in names}


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
    subs = (1.0, 2.0, 5.0) if high / low <= 100 else (1.0,)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: number(y)))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: ""))


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
