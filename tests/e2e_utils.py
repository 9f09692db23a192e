"""Run the real workflow (the repo's Snakefile) in a throwaway working directory."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from synthetic import write_mirror

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"

# 2 learning rates x 2 batch sizes x 2 trials x 1 epoch x both backends = 16 runs, on
# "tiny", a synthetic dataset in MNIST's format served by a local mirror.
TINY = {
    "datasets": ["tiny"],
    "nets": ["mlp"],
    "learning_rates": [0.1, 0.01],
    "batch_sizes": [16, 64],
    "trials": 2,
    "epochs": 1,
    "backends": ["numpy", "tensorflow"],
    "seed": 0,
    "starts": ["shared"],
}
#: The tiny sweep's study: where its tables, figures and claims are.
TINY_STUDY = (
    "results/studies/dataset=tiny/net=mlp/precision=float32/regularization=none/optimizer=sgd/"
    "start=shared/threads=1"
)


def make_tiny_workdir(tmp_path: Path, **config_overrides) -> Path:
    """A work dir with a synthetic dataset's mirror and ``config.yaml`` for the tiny grid."""
    workdir = Path(tmp_path) / "work"
    md5 = write_mirror(workdir / "mirror")
    config = {
        **TINY,
        "extra_datasets": {"tiny": {"md5": md5}},
        "data_mirrors": {"tiny": [str(workdir / "mirror")]},
    }
    config.update(config_overrides)
    write_config(workdir, config)
    return workdir


def write_config(workdir: Path, config: dict) -> Path:
    """Write the repo's default config.yaml updated with ``config`` into ``workdir``."""
    full = yaml.safe_load((REPO / "config.yaml").read_text())
    full.update(config)
    path = Path(workdir) / "config.yaml"
    path.write_text(yaml.safe_dump(full, sort_keys=False))
    return path


def snakemake_cmd(workdir: Path, *args: str, cores: int = 2) -> list[str]:
    return [
        str(BIN / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(Path(workdir) / "config.yaml"),
        "--cores",
        str(cores),
        *args,
    ]


#: One lock directory of the core allocator for this test session (mlpstudy.cores): the
#: session's workflow runs take turns on the dedicated cores, and never wait on the locks
#: of a sweep or benchmark that runs outside the tests on this machine.
CORES_DIR = tempfile.mkdtemp(prefix="mlpstudy-test-cores-")


def env() -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MLPSTUDY_CORES_DIR": CORES_DIR,
    }


def snakemake(workdir: Path, *args: str, check: bool = True, cores: int = 2, timeout: int = 900):
    """Run the workflow; on failure with ``check`` the assertion shows Snakemake's output."""
    proc = subprocess.run(
        snakemake_cmd(workdir, *args, cores=cores),
        capture_output=True,
        text=True,
        env=env(),
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc
