"""Loading train.parquet vs decoding the original gz files, side by side in one process.

    .venv/bin/python benchmarks/bench_data.py [--data results/data/mnist] [--repeats 9]
    .venv/bin/python benchmarks/bench_data.py --encodings   # + the layouts not chosen

Run the data rules first (`snakemake --cores 1 results/data/mnist/train.parquet`).
Every path produces the same training arrays, (60000, 784) float32 in [0, 1] and int64
labels (checked). The candidates are timed alternately (machines here are noisy) and
medians are reported with each file's size; the peak memory each adds is measured in a
fresh process. Target: `dataset.load` faster than decoding the gz files (exit status 1
otherwise). `pyarrow read_table` is what an ordinary tool pays for the same file
(the list's levels decoded by pyarrow). With --encodings, the same table is also written
with the encodings not chosen (Parquet's defaults: dictionary + snappy; PLAIN + zstd;
byte-stream-split + zstd) and read with `dataset.load`, which reads them through pyarrow.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from mlpstudy import dataset, idx
from mlpstudy.datasets import SPLITS

ENCODINGS = {
    "dictionary + snappy (Parquet defaults)": {},
    "PLAIN + zstd": {"use_dictionary": False, "compression": "zstd"},
    "byte-stream-split + zstd": {
        "use_dictionary": False,
        "compression": "zstd",
        "use_byte_stream_split": True,
    },
}


def decode_gz(raw: Path):
    images, labels = idx.read_pair(*(raw / name for name in SPLITS["train"]))
    return dataset.to_features(images), labels.astype(np.int64)


def read_table(path: Path):
    """What any pyarrow user writes: read, one chunk, to NumPy."""
    table = pq.read_table(path).combine_chunks()
    pixels = table.column("pixels").chunk(0).flatten().to_numpy().reshape(-1, dataset.N_FEATURES)
    return pixels, table.column("label").chunk(0).to_numpy().astype(np.int64)


PEAK = """
import resource, sys
from pathlib import Path
sys.path.insert(0, {here!r})
import bench_data
from mlpstudy import dataset
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if {kind!r} == "dataset.load":
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


def size_mb(*paths: Path) -> float:
    return sum(p.stat().st_size for p in paths) / 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("results/data/mnist"))
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--encodings", action="store_true", help="also time other encodings")
    args = parser.parse_args(argv)
    parquet, raw = args.data / "train.parquet", args.data / "raw"
    # first, while this process is small: a child's max RSS starts at its parent's
    peaks = {name: peak_mb(name, args.data) for name in ("dataset.load", "decode gz")}
    gz_files = [raw / name for name in SPLITS["train"]]
    candidates = {
        "dataset.load": (lambda: dataset.load(parquet), size_mb(parquet)),
        "pyarrow read_table": (lambda: read_table(parquet), size_mb(parquet)),
        "decode gz": (lambda: decode_gz(raw), size_mb(*gz_files)),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.encodings:
            table = pq.read_table(parquet)
            for i, (name, options) in enumerate(ENCODINGS.items()):
                path = Path(tmp) / f"{i}.parquet"
                pq.write_table(table, path, row_group_size=dataset.ROW_GROUP, **options)
                candidates[f"dataset.load, {name}"] = (
                    lambda path=path: dataset.load(path),
                    size_mb(path),
                )
        x_ref, y_ref = decode_gz(raw)
        for name, (load, _) in candidates.items():
            x, y = load()
            assert np.array_equal(x, x_ref) and np.array_equal(y, y_ref), f"{name} disagrees"
        times = {name: [] for name in candidates}
        for _ in range(args.repeats):
            for name, (load, _) in candidates.items():
                t0 = time.perf_counter()
                load()
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"| path | file MB | median s ({args.repeats} runs) | min s | ratio to decode gz "
        "| peak memory added, MB (array: 188 MB) |"
    )
    print("|---|---|---|---|---|---|")
    for name, values in times.items():
        peak = f"{peaks[name]:.0f}" if name in peaks else ""
        print(
            f"| {name} | {candidates[name][1]:.1f} | {med[name]:.3f} | {min(values):.3f} | "
            f"{med[name] / med['decode gz']:.2f} | {peak} |"
        )
    return 0 if med["dataset.load"] < med["decode gz"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
