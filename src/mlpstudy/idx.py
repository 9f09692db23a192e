"""Read gzip'd IDX files (MNIST and its drop-in replacements), validating everything
the format promises.

Format (http://yann.lecun.com/exdb/mnist/): big-endian int32 magic number, then one
big-endian int32 per dimension, then unsigned bytes. Images: magic 2051, dims
(count, rows, cols). Labels: magic 2049, dims (count,).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


class IDXError(ValueError):
    """A file that is not the IDX data it claims to be; the message names the file."""


def _read_gz(path: str | os.PathLike) -> bytes:
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise IDXError(f"{path}: not a readable gzip file ({exc})") from exc


def _parse(path, magic: int, ndim: int, kind: str) -> np.ndarray:
    raw = _read_gz(path)
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise IDXError(f"{path}: truncated header ({len(raw)} bytes, need {header_len})")
    (found,) = struct.unpack(">i", raw[:4])
    if found != magic:
        raise IDXError(f"{path}: wrong magic number {found}, expected {magic} for IDX {kind}")
    dims = struct.unpack(f">{ndim}i", raw[4:header_len])
    if any(d < 0 for d in dims):
        raise IDXError(f"{path}: negative dimension in header {dims}")
    expected = header_len + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise IDXError(
            f"{path}: file {what}: header promises {dims} -> {expected} bytes, found {len(raw)}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def read_images(path: str | os.PathLike, shape: tuple[int, int] = (28, 28)) -> np.ndarray:
    """(count, rows, cols) uint8 array; the image size must be ``shape``."""
    images = _parse(path, IMAGES_MAGIC, 3, "images")
    if images.shape[1:] != shape:
        raise IDXError(f"{path}: images are {images.shape[1:]}, expected {shape}")
    return images


def read_labels(path: str | os.PathLike, n_classes: int = 10) -> np.ndarray:
    """(count,) uint8 array of labels in [0, n_classes)."""
    labels = _parse(path, LABELS_MAGIC, 1, "labels")
    if labels.size and labels.max() >= n_classes:
        raise IDXError(f"{path}: label {int(labels.max())} outside 0..{n_classes - 1}")
    return labels


def read_pair(
    images_path, labels_path, shape: tuple[int, int] = (28, 28), n_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split; their counts must agree."""
    images, labels = read_images(images_path, shape), read_labels(labels_path, n_classes)
    if len(images) != len(labels):
        raise IDXError(
            f"{images_path} has {len(images)} images but {labels_path} has "
            f"{len(labels)} labels: count mismatch"
        )
    return images, labels


def encode(array: np.ndarray) -> bytes:
    """The IDX bytes of a uint8 array (1-D labels or 3-D images); used by tests/benchmarks."""
    magic = {1: LABELS_MAGIC, 3: IMAGES_MAGIC}[array.ndim]
    header = struct.pack(f">i{array.ndim}i", magic, *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
