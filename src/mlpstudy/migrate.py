"""Finished runs of the previous layouts, kept: ``python -m mlpstudy.migrate [results]``.

Three axes were added to every run path, each with the value every earlier run had:

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
  did not record) stays unknown;
- the regularisation (``regularization=...`` after ``precision=...``): a run trained
  its net as defined, with no penalty, which is what ``regularization=none`` computes
  now. Its ``metrics.json`` gains ``regularization: none`` and its (empty) settings. Its
  history has no ``train_objective`` and its metrics no ``final_train_objective``;
  without a penalty they are the data loss, and that is how the tables read them
  (``mlpstudy.aggregate.earlier``), so neither file's numbers are rewritten.

One pass finds every finished run whose path lacks any of these axes (and has no other
part), gives its metrics what each missing axis' step says, in the order the axes were
added (``STEPS``), and moves it to its path with every axis. Snakemake keeps such runs
(a moved file carries no Snakemake metadata, and a file without metadata is judged by
its modification time only, which is kept). Every other run (Adam and momentum runs of
the first layout, whose numbers changed; runs without ``metrics.json``, never finished;
a run whose new path is taken) is left where it is, outside the new layout, and
Snakemake computes it anew. Tables, figures and statistics are derived from the runs
and are rebuilt.

Run it once, with no Snakemake running in the directory; running it again moves nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from mlpstudy import atomic, nets, regularization, runs
from mlpstudy.backends import info
from mlpstudy.backends.optimizers import resolve

#: The net every run of the previous layout trained: the study's MLP.
NET = nets.DEFAULT
#: The image shape of every dataset of the previous version (IDX, 28x28, one channel).
IMAGE_SHAPE = [28, 28, 1]
#: The precision of a run that recorded no ``dtype`` option (its only value then).
PRECISION = "float32"
#: The regularisation of every run before the axis: none.
REGULARIZATION = regularization.DEFAULT


def with_net(metrics: dict) -> dict | None:
    """The metrics of a run of the first layout (no net) as this version records them,
    or None when this version would compute something else for it (optimizer settings
    changed by the float32 rounding)."""
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


def with_regularization(metrics: dict) -> dict:
    """The metrics of a run without the regularization axis as this version records
    them: ``REGULARIZATION`` and its settings (``regularization.resolve``: none)."""
    return {
        **metrics,
        "regularization": REGULARIZATION,
        "regularization_settings": regularization.resolve(REGULARIZATION),
    }


#: Each axis added to the run path since the first layout, in the order it was added ->
#: what a run without it records now (None: this version computes it anew).
STEPS: dict[str, Callable[[dict], dict | None]] = {
    "net": with_net,
    "precision": with_precision,
    "regularization": with_regularization,
}


def missing_axes(run_dir: Path) -> list[str] | None:
    """The axes (``STEPS``' names) that ``run_dir``'s path lacks: ``[]`` for a run of this
    layout, None for a path that is no run of any layout (another axis missing, or a part
    that names no axis)."""
    fields = _fields(run_dir)
    missing = [a.name for a in runs.AXES if a.name not in fields]
    if set(fields) - set(runs.BY_NAME) or set(missing) - set(STEPS):
        return None
    return missing


def earlier_run_dirs(results: Path) -> list[Path]:
    """Finished run directories (with a ``metrics.json``) of every earlier layout."""
    found = (m.parent for m in (results / "runs").glob("dataset=*/**/trial=*/metrics.json"))
    return sorted(d for d in found if missing_axes(d))


def upgraded(metrics: dict, missing: list[str]) -> dict | None:
    """The metrics of a run whose path lacks the axes ``missing`` as this version records
    them (each one's ``STEPS`` in turn), or None when this version computes it anew."""
    for axis, step in STEPS.items():
        if axis in missing and metrics is not None:
            metrics = step(metrics)
    return metrics


def new_dir(run_dir: Path, metrics: dict) -> Path:
    """The path with every axis of an earlier layout's ``run_dir``: its own parts, and
    for each axis it lacks the value its upgraded ``metrics`` record, in ``runs.AXES``
    order, in the same ``runs`` directory."""
    fields = _fields(run_dir)
    root = _dataset_dir(run_dir).parent
    values = {a.name: fields[a.name] if a.name in fields else runs.fmt(metrics[a.column])
              for a in runs.AXES}  # fmt: skip
    return root.joinpath(*(f"{name}={value}" for name, value in values.items()))


def migrate(results: str | os.PathLike = "results") -> tuple[list[Path], list[Path]]:
    """Move every earlier-layout run this version keeps, in one pass; return (moved,
    left)."""
    moved, left = [], []
    for run_dir in earlier_run_dirs(Path(results)):
        metrics = upgraded(_metrics(run_dir), missing_axes(run_dir))
        if metrics is None:
            left.append(run_dir)
            continue
        _move(run_dir, metrics, new_dir(run_dir, metrics), moved, left)
    return moved, left


def _dataset_dir(run_dir: Path) -> Path:
    return next(p for p in (run_dir, *run_dir.parents) if p.name.startswith("dataset="))


def _fields(run_dir: Path) -> dict[str, str]:
    """The ``name=value`` parts of ``run_dir`` from its ``dataset=`` part on."""
    parts = run_dir.relative_to(_dataset_dir(run_dir).parent).parts
    return dict(part.split("=", 1) if "=" in part else (part, "") for part in parts)


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
    added = ", ".join(f"{axis}=" for axis in STEPS)
    print(f"moved {len(moved)} finished run(s) to their paths with {added}")
    if left:
        print(f"left {len(left)} run(s) that this version computes anew, e.g. {left[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
