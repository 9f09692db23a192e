"""Finished runs of the previous layout, kept: ``python -m mlpstudy.migrate [results]``.

The network became a run axis (``net=...`` after ``dataset=...`` in every run path), and
two things a run records changed: optimizer settings are now their float32 numbers
(``optimizers.resolve``) and every backend has a ``dtype`` option. A run of the previous
version computed exactly what this one computes for ``net=mlp`` when its optimizer's
settings are unchanged by the rounding (SGD: none) and, for an option it did not have,
the option's default (float32) is what it ran: such a run is moved to its ``net=mlp``
path and its ``metrics.json`` gains the net and the options it ran with, so Snakemake
keeps it (a moved file carries no Snakemake metadata, and a file without metadata is
judged by its modification time only). Every other run (Adam and momentum, whose numbers
changed; runs without ``metrics.json``, never finished) is left where it is, outside
the new layout, and Snakemake computes it anew. Tables, figures and statistics are
derived from the runs and are rebuilt.

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


def old_run_dirs(results: Path) -> list[Path]:
    """Run directories of the previous layout: ``runs/dataset=D/optimizer=...``."""
    return sorted(
        d.parent for d in (results / "runs").glob("dataset=*/optimizer=*/**/trial=*/metrics.json")
    )


def new_dir(run_dir: Path) -> Path:
    """The ``net=mlp`` path of a previous-layout run directory."""
    dataset_dir = next(p for p in (run_dir, *run_dir.parents) if p.name.startswith("dataset="))
    return dataset_dir / f"net={NET}" / run_dir.relative_to(dataset_dir)


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
    """Move every previous-layout run this version keeps; return (moved, left)."""
    results = Path(results)
    moved, left = [], []
    for run_dir in old_run_dirs(results):
        metrics = upgraded(json.loads((run_dir / "metrics.json").read_text()))
        dest = new_dir(run_dir)
        if metrics is None or dest.exists():
            left.append(run_dir)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        stat = (run_dir / "metrics.json").stat()
        atomic.write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        # the same time as before: the run's outputs keep their order (metrics.json last)
        os.utime(run_dir / "metrics.json", ns=(stat.st_atime_ns, stat.st_mtime_ns))
        run_dir.rename(dest)
        moved.append(dest)
    return moved, left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default="results", type=Path)
    args = parser.parse_args(argv)
    moved, left = migrate(args.results)
    print(f"moved {len(moved)} finished run(s) to their net={NET} paths")
    if left:
        print(f"left {len(left)} run(s) that this version computes anew, e.g. {left[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
