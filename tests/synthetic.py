"""Tiny synthetic data in the datasets' real format (gzip'd IDX files), learnable classes."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from mlpstudy import idx
from mlpstudy.datasets import SPLITS
from mlpstudy.download import md5sum


def write_idx_gz(path: str | Path, array: np.ndarray, raw: bytes | None = None) -> Path:
    """Write ``array`` (or the given raw bytes) gzip'd to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as fh:
        fh.write(idx.encode(array) if raw is None else raw)
    return path


def make_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 28x28 uint8 images whose class is a noisy copy of one of 10 fixed prototypes."""
    prototypes = np.random.default_rng(1234).integers(0, 256, size=(10, 28, 28))
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    noise = rng.normal(0, 60, size=(n, 28, 28))
    images = np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8)
    return images, labels


def write_mirror(directory: str | Path, n_train: int = 240, n_test: int = 60) -> dict[str, str]:
    """Write the four original file names into ``directory``; return name -> MD5."""
    directory = Path(directory)
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        images, labels = make_split(n, seed)
        images_name, labels_name = SPLITS[split]
        write_idx_gz(directory / images_name, images)
        write_idx_gz(directory / labels_name, labels)
    return {name: md5sum(directory / name) for split in SPLITS.values() for name in split}
