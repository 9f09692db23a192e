"""Loading train.parquet vs decoding the original gz files, side by side in one process.

    .venv/bin/python benchmarks/bench_data.py [--data results/data/mnist] [--repeats 7]

Run the data rules first (`snakemake --cores 1 results/data/mnist/train.parquet`).
The peak memory each adds is measured in a fresh process. Both paths produce the same
training arrays: (60000, 784) float32 in [0, 1] and int64
labels. The two are timed alternately (machines here are noisy) and the median ratio
is reported; loading must be faster than decoding.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mlpstudy import dataset, idx
from mlpstudy.datasets import SPLITS


def decode_gz(raw: Path):
    images, labels = idx.read_pair(*(raw / name for name in SPLITS["train"]))
    return dataset.to_features(images), labels.astype(np.int64)


PEAK = """
import resource, sys
from pathlib import Path
sys.path.insert(0, {here!r})
import bench_data
from mlpstudy import dataset
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if {kind!r} == "load parquet":
    dataset.load(Path({data!r}) / "train.parquet")
else:
    bench_data.decode_gz(Path({data!r}) / "raw")
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def peak_mb(kind: str, data: Path) -> float:
    """Peak memory added by one load, in a fresh process (MB)."""
    code = PEAK.format(here=str(Path(__file__).parent), kind=kind, data=str(data))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("results/data/mnist"))
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    parquet, raw = args.data / "train.parquet", args.data / "raw"
    # first, while this process is small: a child's max RSS starts at its parent's
    peaks = {name: peak_mb(name, args.data) for name in ("load parquet", "decode gz")}
    x_p, y_p = dataset.load(parquet)
    x_g, y_g = decode_gz(raw)
    assert np.array_equal(x_p, x_g) and np.array_equal(y_p, y_g), "the two paths disagree"
    times = {"load parquet": [], "decode gz": []}
    for _ in range(args.repeats):
        for name, fn in (("load parquet", lambda: dataset.load(parquet)),
                         ("decode gz", lambda: decode_gz(raw))):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"| path | median s ({args.repeats} runs) | min s | ratio to decode gz "
          "| peak memory added, MB (array: 188 MB) |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {med[name]:.3f} | {min(values):.3f} | "
              f"{med[name] / med['decode gz']:.2f} | {peaks[name]:.0f} |")
    return 0 if med["load parquet"] < med["decode gz"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
