"""Original files -> parquet (study section 2.1) and parquet -> the arrays training uses.

Parquet schema (one file per dataset and split, rows in the original file order):

- ``pixels``: ``fixed_size_list<element: float not null>[H*W*C]``, not null: the image
  row-major in (H, W, C) order (NHWC rows; 784 values for the 28x28x1 MNIST family,
  3072 for CIFAR-10's 32x32x3), scaled by 1/255 to [0, 1];
- ``label``: ``uint8``, not null: the class (names in the ``classes`` metadata).

File metadata: ``dataset`` (the catalog name), ``classes`` (JSON list of names),
``image_shape`` ("H,W,C", e.g. "28,28,1"; :func:`image_shape`), and the sources with
their MD5s: an IDX pair's ``source_images``, ``source_images_md5``, ``source_labels``,
``source_labels_md5``; an archive's ``source_archive``, ``source_archive_md5`` and
``source_members`` (JSON: member -> MD5). Any Parquet reader sees ``pixels`` as a list
of floats (pandas: one float32 array per row), with no custom decoding.

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

from mlpstudy import cifar, datasets, idx, memory
from mlpstudy.atomic import atomic_path
from mlpstudy.download import md5sum

DTYPE = np.dtype("<f4")
ROW_GROUP = 4096


def pixels_type(n_features: int) -> pa.DataType:
    return pa.list_(pa.field("element", pa.float32(), nullable=False), n_features)


def schema(n_features: int) -> pa.Schema:
    """The files' schema for images of ``n_features`` values (H*W*C)."""
    return pa.schema(
        [
            pa.field("pixels", pixels_type(n_features), nullable=False),
            pa.field("label", pa.uint8(), nullable=False),
        ]
    )


#: The MNIST family's (28x28x1).
N_FEATURES = int(np.prod(datasets.get("mnist").image_shape))
PIXELS = pixels_type(N_FEATURES)
SCHEMA = schema(N_FEATURES)


class DatasetError(ValueError):
    """A parquet file that does not follow the schema above; the message names the file."""


def to_features(images: np.ndarray) -> np.ndarray:
    """(N, H, W[, C]) uint8 -> (N, H*W*C) float32 in [0, 1], each row row-major."""
    flat = images.reshape(len(images), -1)
    return np.multiply(flat, np.float32(1.0 / 255.0), dtype=np.float32)


def to_table(x: np.ndarray, y: np.ndarray) -> pa.Table:
    """(N, F) features and (N,) labels as a table of :func:`schema` (F)."""
    values = pa.array(np.ascontiguousarray(x, dtype=DTYPE).reshape(-1), pa.float32())
    pixels = pa.FixedSizeListArray.from_arrays(values, type=pixels_type(x.shape[1]))
    return pa.Table.from_arrays([pixels, pa.array(y, pa.uint8())], schema=schema(x.shape[1]))


def _read_idx(entry: datasets.Dataset, split, inputs, classes) -> tuple:
    images_path, labels_path = inputs["images"], inputs["labels"]
    h, w, c = entry.image_shape
    images, labels = idx.read_pair(images_path, labels_path, (h, w), len(classes))
    sources = {
        "source_images": Path(images_path).name,
        "source_images_md5": md5sum(images_path),
        "source_labels": Path(labels_path).name,
        "source_labels_md5": md5sum(labels_path),
    }
    return images.reshape(len(images), h, w, c), labels, sources


def _read_cifar(entry: datasets.Dataset, split, inputs, classes) -> tuple:
    return cifar.read_split(inputs["archive"], entry, split, classes)


#: Format -> reader: (N, H, W, C) uint8 images, (N,) uint8 labels, source metadata.
READERS = {"idx": _read_idx, "cifar-python": _read_cifar}


def write(dataset: str, split: str, inputs, dest, classes=None) -> int:
    """Read one split of ``dataset`` from its published files (``inputs``: role -> path,
    as ``datasets.split_inputs`` names them) and write it to ``dest`` atomically; return
    the row count. ``classes``: the class names (default: the catalog's). A bad file
    raises ``idx.IDXError`` or ``cifar.CifarError`` naming it, and nothing is left at
    ``dest``."""
    entry = datasets.get(dataset)
    classes = list(entry.classes if classes is None else classes)
    images, labels, sources = READERS[entry.format](entry, split, inputs, classes)
    table = to_table(to_features(images), labels).replace_schema_metadata(
        {
            "dataset": dataset,
            "classes": json.dumps(classes),
            "image_shape": ",".join(map(str, images.shape[1:])),
            **sources,
        }
    )
    del images
    with atomic_path(dest) as tmp:
        pq.write_table(
            table,
            tmp,
            compression="none",
            use_dictionary=False,
            data_page_version="1.0",
            row_group_size=ROW_GROUP,
        )
    return len(labels)


def write_split(images_path, labels_path, dest, dataset: str = "mnist", classes=None) -> int:
    """One split of an IDX dataset from its images and labels files (see ``write``)."""
    return write(dataset, "", {"images": images_path, "labels": labels_path}, dest, classes)


def image_shape(path: str | os.PathLike) -> tuple[int, int, int]:
    """One image's (H, W, C), from the file's metadata (files from before the channel
    was recorded say "28,28": one channel)."""
    meta = _open(path).schema_arrow.metadata or {}
    return _shape(path, meta)


def _shape(path, meta) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in meta[b"image_shape"].decode().split(","))
    except (KeyError, ValueError) as exc:
        raise DatasetError(f"{path}: no image shape (H,W,C) in its metadata ({exc})") from None
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3 or min(shape) < 1:
        raise DatasetError(f"{path}: image_shape {shape} is not (H, W, C)")
    return shape


def _open(path) -> pq.ParquetFile:
    try:
        source = pq.ParquetFile(path)
        schema = source.schema_arrow
    except (OSError, pa.ArrowInvalid) as exc:
        raise DatasetError(f"{path}: cannot read it as a dataset parquet file ({exc})") from exc
    pixels = schema.field("pixels").type if "pixels" in schema.names else "missing"
    expected = "fixed_size_list<float>[H*W*C]"
    if not isinstance(pixels, pa.FixedSizeListType) or pixels.value_type != pa.float32():
        raise DatasetError(f"{path}: column 'pixels' is {pixels}, expected {expected}")
    label = schema.field("label").type if "label" in schema.names else "missing"
    if label != pa.uint8():
        raise DatasetError(f"{path}: column 'label' is {label}, expected uint8")
    if schema.metadata and b"image_shape" in schema.metadata:
        shape = _shape(path, schema.metadata)
        if int(np.prod(shape)) != pixels.list_size:
            raise DatasetError(
                f"{path}: {pixels.list_size} pixel values per image, but image_shape is {shape}"
            )
    return source


def _n_features(source: pq.ParquetFile) -> int:
    return source.schema_arrow.field("pixels").type.list_size


def load(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a split: (N, H*W*C) float32 C-contiguous features (rows in (H, W, C) order;
    the shape: ``image_shape``) and (N,) int64 labels.

    The features are allocated the same way in every run (``memory.empty``): in a
    mapping of their own that starts on a huge-page boundary (so also 64-byte aligned,
    as TensorFlow needs to wrap them without a copy) and is advised for huge pages.
    """
    source = _open(path)
    n = source.metadata.num_rows
    x, y = memory.empty((n, _n_features(source)), DTYPE), np.empty(n, np.int64)
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
    row, f = 0, x.shape[1]
    for group in range(source.num_row_groups):
        for pixels in source.read_row_group(group, ["pixels"], use_threads=False)[0].chunks:
            m, values = len(pixels), pixels.values
            if pixels.null_count or values.null_count:
                raise DatasetError(f"{path}: row group {group} has missing pixels")
            start = values.offset + pixels.offset * f
            x[row : row + m] = np.frombuffer(
                values.buffers()[1], DTYPE, m * f, start * DTYPE.itemsize
            ).reshape(m, f)
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
            expected = meta.row_group(group).num_rows * x.shape[1]
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
