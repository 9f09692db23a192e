"""benchmarks/profile_numpy.py: a step's parts, one row per op, on tiny random data."""

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_numpy.py"


def test_profile_names_every_op_and_the_step(tmp_path):
    env = {**os.environ, "BENCH_UNPINNED": "1"}
    args = ["--nets", "cnn-small", "--batches", "96", "--n-train", "192"]
    args += ["--n-test", "16", "--steps", "2"]
    out = subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, check=True
    ).stdout
    rows = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| part")}  # fmt: skip
    ops = ["0 Conv2D", "1 MaxPool2D", "2 Conv2D", "3 MaxPool2D", "4 Flatten", "5 Dense"]
    for op in ops:
        assert f"{op} forward" in rows
    # the first conv computes no input gradient, but its weight gradients take a pass
    assert all(f"{op} backward" in rows for op in ops)
    assert "cnn-small, batch 96: 2 pass(es) per step" in out  # 96 images > 8 MiB: chunked
    parts = sum(
        ms for name, ms in rows.items() if name not in ("step", "evaluation per 1000 images")
    )
    assert 0 < parts <= 1.5 * rows["step"]
