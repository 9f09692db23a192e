"""IDX -> parquet (study section 2.1) and parquet -> the arrays training uses.

Parquet schema (one file per split, rows in the original file order):

=========  ==========================  ==============================================
column     Arrow type                  meaning
=========  ==========================  ==============================================
pixels     fixed_size_list<float>[784]  the image, row-major 28x28, scaled by 1/255
label      uint8                       the digit, 0-9

Both fields are non-nullable.
=========  ==========================  ==============================================

The fixed-size list keeps all pixels in one contiguous float32 buffer, so loading is a
single zero-copy reshape. File-level metadata records the source files' MD5s.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mlpstudy import idx
from mlpstudy.atomic import atomic_path
from mlpstudy.download import md5sum

N_FEATURES = 784
N_CLASSES = 10


class DatasetError(ValueError):
    """A parquet file that does not follow the schema above; the message names the file."""


def to_features(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 784) float32 in [0, 1]."""
    flat = images.reshape(len(images), -1)
    return np.multiply(flat, np.float32(1.0 / 255.0), dtype=np.float32)


PIXELS_TYPE = pa.list_(pa.field("element", pa.float32(), nullable=False), N_FEATURES)
SCHEMA = pa.schema(
    [pa.field("pixels", PIXELS_TYPE, nullable=False), pa.field("label", pa.uint8(), nullable=False)]
)


def to_table(x: np.ndarray, y: np.ndarray) -> pa.Table:
    # Non-nullable fields: parquet then stores no definition levels, which makes
    # reading ~1.5x faster than with the default nullable list.
    pixels = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), pa.float32()), type=PIXELS_TYPE)
    return pa.Table.from_arrays([pixels, pa.array(y, pa.uint8())], schema=SCHEMA)


def write_split(images_path, labels_path, dest) -> int:
    """Parse one split's IDX pair and write it to ``dest`` atomically; return the row count."""
    images, labels = idx.read_pair(images_path, labels_path)
    table = to_table(to_features(images), labels)
    table = table.replace_schema_metadata(
        {
            "source_images_md5": md5sum(images_path),
            "source_labels_md5": md5sum(labels_path),
        }
    )
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp, compression="none", use_dictionary=False)
    return len(images)


def load(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a split: (N, 784) float32 C-contiguous features and (N,) int64 labels."""
    try:
        table = pq.read_table(path, columns=["pixels", "label"], memory_map=True)
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        raise DatasetError(f"{path}: not a dataset parquet file ({exc})") from exc
    pixels = table.column("pixels")
    t = pixels.type
    if not (pa.types.is_fixed_size_list(t) and t.list_size == N_FEATURES
            and t.value_type == pa.float32()):
        raise DatasetError(f"{path}: column 'pixels' is {t}, expected 784 float32 values")
    parts = [chunk.flatten().to_numpy(zero_copy_only=False) for chunk in pixels.chunks]
    x = parts[0] if len(parts) == 1 else np.concatenate(parts)
    y = table.column("label").to_numpy().astype(np.int64)
    return x.reshape(len(y), N_FEATURES), y
