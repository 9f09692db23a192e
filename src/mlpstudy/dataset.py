"""IDX -> parquet (study section 2.1) and parquet -> the arrays training uses.

Parquet schema (one file per split, rows in the original file order, row groups of
``ROW_GROUP`` rows, no compression):

=========  ======================  ===================================================
column     Arrow type              meaning
=========  ======================  ===================================================
pixels     fixed_size_binary[3136]  the image: 784 little-endian float32 values, the
                                   28x28 pixels row-major, scaled by 1/255 to [0, 1]
label      uint8                   the digit, 0-9
=========  ======================  ===================================================

Both fields are non-nullable; the ``pixels`` field's metadata says
``dtype=<f4, shape=784``. File metadata records the source files' MD5s.

Why raw float32 bytes rather than a list<float> column: parquet stores a list with a
repetition level per value (47 million for the training set), and decoding those made
loading barely faster than gunzipping the original files and tripled the peak memory
(~950 MB for a 188 MB array). A fixed-size binary value per row is one memcpy to decode;
read row group by row group into one preallocated array, loading takes a third of the
time of decoding the gz files and peaks at about the array's own size
(``benchmarks/bench_data.py``).
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
DTYPE = np.dtype("<f4")
ROW_BYTES = N_FEATURES * DTYPE.itemsize
ROW_GROUP = 4096
SCHEMA = pa.schema(
    [
        pa.field("pixels", pa.binary(ROW_BYTES), nullable=False,
                 metadata={"dtype": DTYPE.str, "shape": str(N_FEATURES)}),
        pa.field("label", pa.uint8(), nullable=False),
    ]
)


class DatasetError(ValueError):
    """A parquet file that does not follow the schema above; the message names the file."""


def to_features(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 784) float32 in [0, 1]."""
    flat = images.reshape(len(images), -1)
    return np.multiply(flat, np.float32(1.0 / 255.0), dtype=np.float32)


def to_table(x: np.ndarray, y: np.ndarray) -> pa.Table:
    raw = np.ascontiguousarray(x, dtype=DTYPE)
    pixels = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(ROW_BYTES), len(raw), [None, pa.py_buffer(raw)]
    )
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
        pq.write_table(table, tmp, compression="none", use_dictionary=False,
                       row_group_size=ROW_GROUP)
    return len(images)


def load(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a split: (N, 784) float32 C-contiguous features and (N,) int64 labels."""
    try:
        source = pq.ParquetFile(path)
        schema = source.schema_arrow
    except (OSError, pa.ArrowInvalid) as exc:
        raise DatasetError(f"{path}: cannot read it as a dataset parquet file ({exc})") from exc
    for field in SCHEMA:
        if field.name not in schema.names or schema.field(field.name).type != field.type:
            found = schema.field(field.name).type if field.name in schema.names else "missing"
            raise DatasetError(
                f"{path}: column {field.name!r} is {found}, expected {field.type}"
            )
    n = source.metadata.num_rows
    x, y = np.empty((n, N_FEATURES), np.float32), np.empty(n, np.int64)
    row = 0
    for group in range(source.num_row_groups):  # one group at a time: low peak memory
        table = source.read_row_group(group, columns=["pixels", "label"])
        for pixels, labels in zip(table.column("pixels").chunks, table.column("label").chunks):
            m = len(pixels)
            x[row : row + m] = np.frombuffer(
                pixels.buffers()[1], DTYPE, count=m * N_FEATURES, offset=pixels.offset * ROW_BYTES
            ).reshape(m, N_FEATURES)
            # from the buffer, like the pixels: Array.to_numpy() would import pandas
            y[row : row + m] = np.frombuffer(labels.buffers()[1], np.uint8, m, labels.offset)
            row += m
    return x, y
