"""IDX -> parquet (study section 2.1) and parquet -> the arrays training uses.

Parquet schema (one file per dataset and split, rows in the original file order):

- ``pixels``: ``fixed_size_list<element: float not null>[784]``, not null: the 28x28
  image row-major, scaled by 1/255 to [0, 1];
- ``label``: ``uint8``, not null: the class, 0-9 (names in the ``classes`` metadata).

File metadata: ``dataset`` (the catalog name), ``classes`` (JSON list of names),
``image_shape`` ("28,28"), each source file's name and MD5 (``source_images``,
``source_images_md5``, ``source_labels``, ``source_labels_md5``). Any Parquet reader
sees ``pixels`` as a list of 784 floats (pandas: one float32 array per row), with no
custom decoding.

Encoding, chosen by measurement (docs/data.md): PLAIN values, no dictionary, no
compression, row groups of ``ROW_GROUP`` rows, version-1 data pages. A Parquet list
stores a repetition and a definition level per value (47 million each for the
training set), and pyarrow's decoding of those makes a generic read about twice as
slow as the raw-float32 layout this replaced. ``load`` therefore copies the pixel
values of such a file straight from its data pages into the preallocated array (they
follow the levels in each page): one copy, no level decoding, with each page's sizes
and each row group's value count checked. A file written any other way (compressed,
dictionary-encoded) is read through pyarrow, row group by row group.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mlpstudy import datasets, idx, memory
from mlpstudy.atomic import atomic_path
from mlpstudy.download import md5sum

IMAGE_SHAPE = (28, 28)
N_FEATURES = 784
DTYPE = np.dtype("<f4")
ROW_GROUP = 4096
PIXELS = pa.list_(pa.field("element", pa.float32(), nullable=False), N_FEATURES)
SCHEMA = pa.schema(
    [
        pa.field("pixels", PIXELS, nullable=False),
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
    values = pa.array(np.ascontiguousarray(x, dtype=DTYPE).reshape(-1), pa.float32())
    pixels = pa.FixedSizeListArray.from_arrays(values, type=PIXELS)
    return pa.Table.from_arrays([pixels, pa.array(y, pa.uint8())], schema=SCHEMA)


def write_split(images_path, labels_path, dest, dataset: str = "mnist", classes=None) -> int:
    """Parse one split's IDX pair and write it to ``dest`` atomically; return the row
    count. ``dataset`` is the catalog name recorded in the file; ``classes`` its class
    names (default: the catalog's). A bad file raises ``idx.IDXError`` naming it, and
    nothing is left at ``dest``."""
    classes = list(datasets.get(dataset).classes if classes is None else classes)
    images, labels = idx.read_pair(images_path, labels_path, IMAGE_SHAPE, len(classes))
    table = to_table(to_features(images), labels).replace_schema_metadata(
        {
            "dataset": dataset,
            "classes": json.dumps(classes),
            "image_shape": ",".join(map(str, IMAGE_SHAPE)),
            "source_images": Path(images_path).name,
            "source_images_md5": md5sum(images_path),
            "source_labels": Path(labels_path).name,
            "source_labels_md5": md5sum(labels_path),
        }
    )
    with atomic_path(dest) as tmp:
        pq.write_table(
            table,
            tmp,
            compression="none",
            use_dictionary=False,
            data_page_version="1.0",
            row_group_size=ROW_GROUP,
        )
    return len(images)


def _open(path) -> pq.ParquetFile:
    try:
        source = pq.ParquetFile(path)
        schema = source.schema_arrow
    except (OSError, pa.ArrowInvalid) as exc:
        raise DatasetError(f"{path}: cannot read it as a dataset parquet file ({exc})") from exc
    for field in SCHEMA:
        found = schema.field(field.name).type if field.name in schema.names else "missing"
        if not _same_type(found, field.type):
            raise DatasetError(f"{path}: column {field.name!r} is {found}, expected {field.type}")
    return source


def _same_type(found, expected) -> bool:
    """Equal types; for the pixels list, whatever its element is named."""
    if isinstance(found, pa.FixedSizeListType) and isinstance(expected, pa.FixedSizeListType):
        return found.list_size == expected.list_size and found.value_type == expected.value_type
    return found == expected


def load(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a split: (N, 784) float32 C-contiguous features and (N,) int64 labels.

    The features are allocated the same way in every run (``memory.empty``): in a
    mapping of their own that starts on a huge-page boundary (so also 64-byte aligned,
    as TensorFlow needs to wrap them without a copy) and is advised for huge pages.
    """
    source = _open(path)
    n = source.metadata.num_rows
    x, y = memory.empty((n, N_FEATURES), DTYPE), np.empty(n, np.int64)
    try:
        fast = _plain_pages(source) and _read_plain_pixels(path, source, x)
    except DatasetError:
        raise
    except (IndexError, ValueError, struct.error, OSError) as exc:
        raise DatasetError(f"{path}: unreadable pixels page ({exc})") from exc
    if not fast:
        _read_pixels(path, source, x)
    row = 0
    for group in range(source.num_row_groups):
        for labels in source.read_row_group(group, ["label"], use_threads=False)[0].chunks:
            # from the buffer, like the pixels: Array.to_numpy() would import pandas
            y[row : row + len(labels)] = np.frombuffer(
                labels.buffers()[1], np.uint8, len(labels), labels.offset
            )
            row += len(labels)
    return x, y


def _read_pixels(path, source: pq.ParquetFile, x: np.ndarray) -> None:
    """The generic path: pyarrow decodes each row group, copied into ``x``."""
    row = 0
    for group in range(source.num_row_groups):
        for pixels in source.read_row_group(group, ["pixels"], use_threads=False)[0].chunks:
            m, values = len(pixels), pixels.values
            if pixels.null_count or values.null_count:
                raise DatasetError(f"{path}: row group {group} has missing pixels")
            start = values.offset + pixels.offset * N_FEATURES
            x[row : row + m] = np.frombuffer(
                values.buffers()[1], DTYPE, m * N_FEATURES, start * DTYPE.itemsize
            ).reshape(m, N_FEATURES)
            row += m


# --- the fast path: PLAIN float32 values read straight from uncompressed data pages ---
# Parquet page headers are Thrift compact-protocol structs (parquet-format's
# parquet.thrift); _thrift_struct reads one into {field id: int | bool | dict} and
# skips what it does not need. PageHeader: 1 type, 3 compressed_page_size,
# 5 data_page_header (1 num_values, 2 encoding), 8 data_page_header_v2 (1 num_values,
# 2 num_nulls, 4 encoding, 5 definition_levels_byte_length,
# 6 repetition_levels_byte_length, 7 is_compressed).

DATA_PAGE, DATA_PAGE_V2, PLAIN = 0, 3, 0
HEADER_BYTES = 256  # a page header with float statistics takes well under 100


def _pixels_leaf(meta) -> int | None:
    leaves = [
        i for i in range(meta.num_columns) if meta.schema.column(i).path.startswith("pixels.")
    ]
    return leaves[0] if len(leaves) == 1 else None


def _plain_pages(source: pq.ParquetFile) -> bool:
    """Whether every pixels column chunk is uncompressed float with no dictionary."""
    meta = source.metadata
    leaf = _pixels_leaf(meta)
    if leaf is None:
        return False
    for group in range(meta.num_row_groups):
        chunk = meta.row_group(group).column(leaf)
        if (
            chunk.compression != "UNCOMPRESSED"
            or chunk.has_dictionary_page
            or chunk.physical_type != "FLOAT"
            or not set(chunk.encodings) <= {"PLAIN", "RLE", "BIT_PACKED"}
        ):
            return False
    return True


def _read_plain_pixels(path, source: pq.ParquetFile, x: np.ndarray) -> bool:
    """Copy every page's values into ``x``. False if a page is of a kind this reader does
    not know (the generic path then reads the whole file); DatasetError if the pages
    contradict the row groups."""
    meta = source.metadata
    leaf = _pixels_leaf(meta)
    out = memoryview(x).cast("B")
    done = 0  # values copied so far
    with open(path, "rb") as fh:
        for group in range(meta.num_row_groups):
            chunk = meta.row_group(group).column(leaf)
            expected = meta.row_group(group).num_rows * N_FEATURES
            pos = chunk.data_page_offset
            end, count = pos + chunk.total_compressed_size, 0
            while pos < end:
                header, body = _page_header(fh, pos)
                page = _plain_page(fh, header, body)
                if page is None:
                    return False
                levels, n = page
                size = header.get(3, -1)
                if levels + n * DTYPE.itemsize != size or count + n > expected:
                    raise DatasetError(
                        f"{path}: row group {group}: a pixels page of {size} bytes does not "
                        f"hold {n} plain floats after {levels} bytes of levels"
                    )
                start, nbytes = (done + count) * DTYPE.itemsize, n * DTYPE.itemsize
                fh.seek(body + levels)
                if fh.readinto(out[start : start + nbytes]) != nbytes:
                    raise DatasetError(f"{path}: truncated in row group {group}")
                count, pos = count + n, body + size
            if count != expected:
                raise DatasetError(
                    f"{path}: row group {group} has {count} pixel values, expected {expected}"
                )
            done += count
    return True


def _plain_page(fh, header: dict, body: int) -> tuple[int, int] | None:
    """(bytes of levels before the values, number of values) of a PLAIN data page whose
    body starts at ``body``; None for any other page."""
    if header.get(1) == DATA_PAGE and header.get(5, {}).get(2) == PLAIN:
        # version 1: repetition then definition levels, each a 4-byte length + RLE runs
        fh.seek(body)
        (rep,) = struct.unpack("<i", fh.read(4))
        fh.seek(body + 4 + rep)
        (dfn,) = struct.unpack("<i", fh.read(4))
        return 8 + rep + dfn, header[5].get(1, -1)
    v2 = header.get(8, {})
    if header.get(1) == DATA_PAGE_V2 and v2.get(4) == PLAIN and not v2.get(7, True):
        if v2.get(2, 0):
            return None  # nulls: not this schema
        return v2.get(5, 0) + v2.get(6, 0), v2.get(1, -1)
    return None


def _page_header(fh, pos: int) -> tuple[dict, int]:
    """The page header at ``pos`` and the offset of the page body after it."""
    fh.seek(pos)
    raw = fh.read(HEADER_BYTES)
    try:
        header, length = _thrift_struct(raw, 0)
    except IndexError:  # a header longer than HEADER_BYTES (large statistics)
        fh.seek(pos)
        raw = fh.read(1 << 20)
        header, length = _thrift_struct(raw, 0)
    return header, pos + length


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _thrift_struct(buf: bytes, pos: int) -> tuple[dict, int]:
    """One compact-protocol struct at ``pos``: its integer, bool and struct fields by id."""
    fields, field_id = {}, 0
    while True:
        head = buf[pos]
        pos += 1
        if head == 0:  # STOP
            return fields, pos
        kind = head & 0x0F
        if head >> 4:
            field_id += head >> 4
        else:
            value, pos = _varint(buf, pos)
            field_id = (value >> 1) ^ -(value & 1)
        if kind in (1, 2):  # bool, in the field header
            fields[field_id] = kind == 1
        elif kind in (4, 5, 6):  # i16, i32, i64: zigzag varints
            value, pos = _varint(buf, pos)
            fields[field_id] = (value >> 1) ^ -(value & 1)
        elif kind == 12:
            fields[field_id], pos = _thrift_struct(buf, pos)
        else:
            pos = _thrift_skip(buf, pos, kind)


def _thrift_skip(buf: bytes, pos: int, kind: int) -> int:
    if kind in (1, 2, 3):  # bool (as a list element) or byte
        return pos + 1
    if kind in (4, 5, 6):
        return _varint(buf, pos)[1]
    if kind == 7:  # double
        return pos + 8
    if kind == 8:  # binary
        length, pos = _varint(buf, pos)
        return pos + length
    if kind in (9, 10):  # list, set
        head = buf[pos]
        pos += 1
        size, element = head >> 4, head & 0x0F
        if size == 15:
            size, pos = _varint(buf, pos)
        for _ in range(size):
            pos = _thrift_skip(buf, pos, element)
        return pos
    if kind == 11:  # map
        size, pos = _varint(buf, pos)
        if size:
            types = buf[pos]
            pos += 1
            for _ in range(size):
                pos = _thrift_skip(buf, pos, types >> 4)
                pos = _thrift_skip(buf, pos, types & 0x0F)
        return pos
    if kind == 12:
        return _thrift_struct(buf, pos)[1]
    raise ValueError(f"unknown thrift compact type {kind}")
