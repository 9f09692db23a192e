"""Finished runs of the previous layouts, kept: ``python -m mlpstudy.migrate [results]``.

Two axes were added to every run path, each with the value every earlier run had:

- the network (``net=...`` after ``dataset=...``): a run of that layout trained the
  study's MLP, and optimizer settings became their float32 numbers
  (``optimizers.resolve``). A run of it computed exactly what this version computes
  for ``net=mlp`` when its optimizer's settings are unchanged by the rounding (SGD:
  none); its ``metrics.json`` gains the net and the options it ran with;
- the precision (``precision=...`` after ``net=...``), which replaced every backend's
  ``dtype`` option: a run computed in the ``dtype`` it recorded (``float32`` where it
  recorded none, the option's only value before it existed), which is what
  ``precision=float32`` (or ``float64``) computes now. Its ``metrics.json`` gains
  ``precision`` and loses the ``dtype`` option; ``native_bfloat16`` (a machine fact it
  did not record) stays unknown.

Such runs are moved to their new paths, so Snakemake keeps them (a moved file carries
no Snakemake metadata, and a file without metadata is judged by its modification time
only, which is kept). Every other run (Adam and momentum runs of the first layout,
whose numbers changed; runs without ``metrics.json``, never finished) is left where it
is, outside the new layout, and Snakemake computes it anew. Tables, figures and
statistics are derived from the runs and are rebuilt.

Run it once, with no Snakemake running in the directory; running it again moves nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mlpstudy import atomic, nets
from mlpstudy.backends import info
from mlpstudy.backends.optimizers import resolve

#: The net every run of the previous layout trained: the study's MLP.
NET = nets.DEFAULT
#: The image shape of every dataset of the previous version (IDX, 28x28, one channel).
IMAGE_SHAPE = [28, 28, 1]
#: The precision of a run that recorded no ``dtype`` option (its only value then).
PRECISION = "float32"


def old_run_dirs(results: Path) -> list[Path]:
    """Run directories of the first layout: ``runs/dataset=D/optimizer=...``."""
    return sorted(
        d.parent for d in (results / "runs").glob("dataset=*/optimizer=*/**/trial=*/metrics.json")
    )


def net_run_dirs(results: Path) -> list[Path]:
    """Run directories of the layout with a net but no precision:
    ``runs/dataset=D/net=N/optimizer=...``."""
    pattern = "dataset=*/net=*/optimizer=*/**/trial=*/metrics.json"
    return sorted(d.parent for d in (results / "runs").glob(pattern))


def new_dir(run_dir: Path) -> Path:
    """The ``net=mlp`` path of a previous-layout run directory."""
    dataset_dir = next(p for p in (run_dir, *run_dir.parents) if p.name.startswith("dataset="))
    return dataset_dir / f"net={NET}" / run_dir.relative_to(dataset_dir)


def precision_dir(run_dir: Path, precision: str) -> Path:
    """The ``precision=...`` path of a run directory with a net and no precision."""
    net_dir = next(p for p in (run_dir, *run_dir.parents) if p.name.startswith("net="))
    return net_dir / f"precision={precision}" / run_dir.relative_to(net_dir)


def with_precision(metrics: dict) -> dict:
    """The metrics of a run without the precision axis as this version records them: its
    ``dtype`` option becomes ``precision`` (``PRECISION`` where it had none)."""
    options = metrics.get("options", {})
    requested = metrics.get("requested_options", {})
    precision = options.get("dtype", requested.get("dtype", PRECISION))
    return {
        **metrics,
        "precision": precision,
        "requested_options": {k: v for k, v in requested.items() if k != "dtype"},
        "options": {k: v for k, v in options.items() if k != "dtype"},
    }


def upgraded(metrics: dict) -> dict | None:
    """The run's metrics as this version records them, or None when this version would
    compute something else for it (optimizer settings changed by the float32 rounding)."""
    optimizer = metrics.get("optimizer", "sgd")
    settings = metrics.get("optimizer_settings", {})
    if resolve(optimizer, settings) != settings:
        return None
    net = nets.CATALOG[NET]
    defaults = info(metrics["backend"]).default_options()
    return {
        **metrics,
        "net": NET,
        "net_definition": net.to_config(),
        "input_shape": IMAGE_SHAPE,
        "requested_options": {**defaults, **metrics.get("requested_options", {})},
        "options": {**defaults, **metrics.get("options", {})},
    }


def migrate(results: str | os.PathLike = "results") -> tuple[list[Path], list[Path]]:
    """Move every earlier-layout run this version keeps; return (moved, left)."""
    results = Path(results)
    moved, left = [], []
    for run_dir in old_run_dirs(results):
        metrics = upgraded(_metrics(run_dir))
        if metrics is None:
            left.append(run_dir)
            continue
        metrics = with_precision(metrics)
        _move(run_dir, metrics, precision_dir(new_dir(run_dir), metrics["precision"]), moved, left)
    for run_dir in net_run_dirs(results):
        metrics = with_precision(_metrics(run_dir))
        _move(run_dir, metrics, precision_dir(run_dir, metrics["precision"]), moved, left)
    return moved, left


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _move(run_dir: Path, metrics: dict, dest: Path, moved: list, left: list) -> None:
    """Write ``metrics`` (keeping the file's time) and move ``run_dir`` to ``dest``,
    unless ``dest`` exists (then it is left)."""
    if dest.exists():
        left.append(run_dir)
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    stat = (run_dir / "metrics.json").stat()
    atomic.write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    # the same time as before: the run's outputs keep their order (metrics.json last)
    os.utime(run_dir / "metrics.json", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    run_dir.rename(dest)
    moved.append(dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default="results", type=Path)
    args = parser.parse_args(argv)
    moved, left = migrate(args.results)
    print(f"moved {len(moved)} finished run(s) to their net= and precision= paths")
    if left:
        print(f"left {len(left)} run(s) that this version computes anew, e.g. {left[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
