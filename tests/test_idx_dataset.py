"""IDX parsing and the IDX -> parquet -> arrays round trip, on tiny synthetic files and on
the real Fashion-MNIST and MNIST where a copy exists; the files' readability by pyarrow,
pandas, DuckDB and polars for both image shapes (28x28x1 and CIFAR-10's 32x32x3)."""

import dataclasses
import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from synthetic import make_split, write_cifar_mirror, write_idx_gz

from mlpstudy import dataset, datasets, idx
from mlpstudy.download import md5sum

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def pair(tmp_path):
    images, labels = make_split(50, seed=3)
    return (
        write_idx_gz(tmp_path / "img.gz", images),
        write_idx_gz(tmp_path / "lab.gz", labels),
        images,
        labels,
    )


@pytest.fixture
def written(pair, tmp_path):
    img_path, lab_path, images, labels = pair
    out = tmp_path / "split.parquet"
    assert dataset.write_split(img_path, lab_path, out, dataset="fashion-mnist") == 50
    return out, images.reshape(50, -1) / np.float32(255.0), labels


def test_round_trip_values_dtype_shape_and_order(written):
    out, expected, labels = written
    x, y = dataset.load(out)
    assert x.shape == (50, 784) and x.dtype == np.float32 and x.flags.c_contiguous
    assert x.flags.writeable
    assert x.ctypes.data % 64 == 0  # TensorFlow wraps it without a copy (DLPack)
    assert y.shape == (50,) and y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)  # label order preserved
    np.testing.assert_allclose(x, expected, rtol=1e-6)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_schema_and_metadata_as_documented(written, pair):
    out, _, _ = written
    schema = pq.read_schema(out)
    assert str(schema.field("pixels").type) == "fixed_size_list<element: float not null>[784]"
    assert str(schema.field("label").type) == "uint8"
    assert not schema.field("pixels").nullable and not schema.field("label").nullable
    meta = {k.decode(): v.decode() for k, v in schema.metadata.items() if k != b"ARROW:schema"}
    assert meta == {
        "dataset": "fashion-mnist",
        "classes": json.dumps(list(datasets.get("fashion-mnist").classes)),
        "image_shape": "28,28,1",
        "source_images": "img.gz",
        "source_images_md5": md5sum(pair[0]),
        "source_labels": "lab.gz",
        "source_labels_md5": md5sum(pair[1]),
    }
    # the layout the loader's fast path reads: PLAIN floats, uncompressed, no dictionary
    chunk = pq.ParquetFile(out).metadata.row_group(0).column(0)
    assert chunk.path_in_schema == "pixels.list.element"
    assert chunk.compression == "UNCOMPRESSED" and not chunk.has_dictionary_page
    assert "PLAIN" in chunk.encodings and "RLE_DICTIONARY" not in chunk.encodings
    assert dataset.image_shape(out) == (28, 28, 1)


def test_image_shape_of_older_files_and_a_shape_that_contradicts_the_pixels(tmp_path):
    table, _, _ = _table(n=3)
    old = tmp_path / "old.parquet"
    pq.write_table(table.replace_schema_metadata({"image_shape": "28,28"}), old)
    assert dataset.image_shape(old) == (28, 28, 1)  # written before the channel was recorded
    bad = tmp_path / "bad.parquet"
    pq.write_table(table.replace_schema_metadata({"image_shape": "32,32,3"}), bad)
    with pytest.raises(dataset.DatasetError, match="bad.parquet: 784 pixel values per image"):
        dataset.load(bad)
    none = tmp_path / "none.parquet"
    pq.write_table(table, none)
    with pytest.raises(dataset.DatasetError, match="none.parquet: no image shape"):
        dataset.image_shape(none)


@pytest.fixture(params=["28x28x1", "32x32x3"])
def readable(request, written, tmp_path, monkeypatch):
    """A written file of each image shape: the IDX one above, and CIFAR-10's (a synthetic
    archive in its real format): (path, expected features, labels)."""
    if request.param == "28x28x1":
        return written
    archive_md5, member_md5, arrays = write_cifar_mirror(tmp_path / "cifar", n=10)
    entry = datasets.CATALOG["cifar-10"]
    entry = dataclasses.replace(entry, md5={entry.files[0]: archive_md5}, members=member_md5)
    monkeypatch.setitem(datasets.CATALOG, "cifar-10", entry)
    out = tmp_path / "cifar.parquet"
    dataset.write("cifar-10", "test", {"archive": tmp_path / "cifar" / entry.files[0]}, out)
    images = arrays["test_batch"]
    return out, images.reshape(len(images), -1) / np.float32(255.0), arrays["test_batch/labels"]


def test_pixels_are_numbers_to_pyarrow_and_pandas(readable):
    out, expected, labels = readable
    n, f = expected.shape
    table = pq.read_table(out)
    values = table.column("pixels").combine_chunks().flatten().to_numpy()
    assert values.dtype == np.float32
    np.testing.assert_allclose(values.reshape(n, f), expected, rtol=1e-6)
    pd = pytest.importorskip("pandas")
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["pixels", "label"]
    np.testing.assert_allclose(np.stack(frame["pixels"].to_numpy()), expected, rtol=1e-6)
    np.testing.assert_array_equal(frame["label"].to_numpy(), labels)


def test_pixels_are_numbers_to_duckdb(readable):
    import duckdb  # a test dependency (requirements.txt)

    out, expected, labels = readable
    f = expected.shape[1]
    rows = duckdb.sql(f"SELECT pixels[1:{f}], label FROM '{out}'").fetchall()
    np.testing.assert_allclose(np.array([r[0] for r in rows]), expected, rtol=1e-6)
    np.testing.assert_array_equal([r[1] for r in rows], labels)


def test_pixels_are_numbers_to_polars(readable):
    import polars as pl  # a test dependency (requirements.txt)

    out, expected, labels = readable
    frame = pl.read_parquet(out)
    assert frame.schema["pixels"] == pl.Array(pl.Float32, expected.shape[1])
    np.testing.assert_allclose(frame["pixels"].to_numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(frame["label"].to_numpy(), labels)


# --- the loader: fast path (pages read directly) and the generic path agree ---


def _generic(path):
    source = dataset._open(path)
    x = np.empty((source.metadata.num_rows, 784), np.float32)
    dataset._read_pixels(path, source, x)
    return x


def _table(n=1000, seed=5):
    images, labels = make_split(n, seed)
    return dataset.to_table(dataset.to_features(images), labels), images, labels


@pytest.mark.parametrize(
    "options",
    [
        {"data_page_version": "1.0", "row_group_size": 300, "data_page_size": 10_000},
        {"data_page_version": "2.0", "row_group_size": 300, "data_page_size": 10_000},
        {"data_page_version": "2.0", "row_group_size": 1000},
    ],
    ids=["v1-pages", "v2-pages", "v2-one-group"],
)
def test_fast_path_reads_many_pages_of_either_version(tmp_path, monkeypatch, options):
    table, images, labels = _table()
    path = tmp_path / "pages.parquet"
    pq.write_table(table, path, compression="none", use_dictionary=False, **options)
    monkeypatch.setattr(dataset, "_read_pixels", None)  # the generic path must not run
    x, y = dataset.load(path)
    np.testing.assert_array_equal(x, dataset.to_features(images))
    np.testing.assert_array_equal(y, labels)
    monkeypatch.undo()
    np.testing.assert_array_equal(_generic(path), x)


@pytest.mark.parametrize(
    "options",
    [{}, {"compression": "zstd", "use_dictionary": False}, {"compression": "none"}],
    ids=["parquet-defaults", "zstd", "dictionary"],
)
def test_any_other_encoding_is_read_by_pyarrow(tmp_path, monkeypatch, options):
    table, images, labels = _table(n=200)
    path = tmp_path / "other.parquet"
    pq.write_table(table, path, row_group_size=64, **options)
    monkeypatch.setattr(dataset, "_read_plain_pixels", None)  # the fast path must not run
    x, y = dataset.load(path)
    np.testing.assert_array_equal(x, dataset.to_features(images))
    np.testing.assert_array_equal(y, labels)


def test_round_trip_across_several_row_groups(pair, tmp_path, monkeypatch):
    img_path, lab_path, images, labels = pair
    monkeypatch.setattr(dataset, "ROW_GROUP", 16)  # 50 rows -> 4 row groups
    out = tmp_path / "groups.parquet"
    dataset.write_split(img_path, lab_path, out)
    assert pq.ParquetFile(out).num_row_groups == 4
    x, y = dataset.load(out)
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_allclose(x, images.reshape(50, -1) / 255.0, rtol=1e-6)


def test_a_corrupt_page_header_fails_naming_the_file(written, tmp_path):
    out, _, _ = written
    chunk = pq.ParquetFile(out).metadata.row_group(0).column(0)
    data = bytearray(out.read_bytes())
    data[chunk.data_page_offset : chunk.data_page_offset + 8] = b"\x15\x99" * 4
    bad = tmp_path / "corrupt.parquet"
    bad.write_bytes(bytes(data))
    with pytest.raises(dataset.DatasetError, match="corrupt.parquet"):
        dataset.load(bad)


def test_load_rejects_wrong_schema(tmp_path):
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"pixels": [1.0], "label": [1]}), path)
    with pytest.raises(dataset.DatasetError, match="other.parquet: column .pixels. is double"):
        dataset.load(path)


def test_load_rejects_todays_raw_bytes_layout(tmp_path):
    path = tmp_path / "old.parquet"
    pq.write_table(pa.table({"pixels": pa.array([b"\0" * 3136], pa.binary(3136))}), path)
    with pytest.raises(dataset.DatasetError, match="is fixed_size_binary.3136., expected fixed"):
        dataset.load(path)


def test_load_rejects_a_file_that_is_not_parquet(tmp_path):
    path = tmp_path / "train.parquet"
    path.write_bytes(b"PAR1 but not really")
    with pytest.raises(
        dataset.DatasetError, match="train.parquet: cannot read it as a dataset parquet file"
    ):
        dataset.load(path)


# --- bad IDX files: named, and no parquet left behind ---


def _write_raw(path, raw: bytes):
    with gzip.open(path, "wb") as fh:
        fh.write(raw)
    return path


@pytest.mark.parametrize(
    "raw, message",
    [
        (struct.pack(">iiii", 2049, 1, 28, 28) + bytes(784), "wrong magic number 2049"),
        (struct.pack(">iiii", 2051, 2, 28, 28) + bytes(784), "truncated"),
        (struct.pack(">iiii", 2051, 1, 28, 28) + bytes(785), "trailing bytes"),
        (struct.pack(">ii", 2051, 1), "truncated header"),
        (struct.pack(">iiii", 2051, 1, 20, 20) + bytes(400), "expected (28, 28)"),
    ],
)
def test_bad_image_files_are_named_with_the_problem(tmp_path, raw, message):
    path = _write_raw(tmp_path / "bad-images.gz", raw)
    with pytest.raises(idx.IDXError, match="bad-images.gz") as err:
        idx.read_images(path)
    assert message in str(err.value)


def test_bad_labels(tmp_path):
    wrong_magic = _write_raw(tmp_path / "l1.gz", struct.pack(">ii", 2051, 1) + b"\x01")
    with pytest.raises(idx.IDXError, match=r"l1.gz: wrong magic number 2051, expected 2049"):
        idx.read_labels(wrong_magic)
    out_of_range = _write_raw(tmp_path / "l2.gz", struct.pack(">ii", 2049, 1) + b"\x0a")
    with pytest.raises(idx.IDXError, match=r"l2.gz: label 10 outside 0..9"):
        idx.read_labels(out_of_range)


def _truncated_gzip(path):
    images, _ = make_split(10, seed=1)
    write_idx_gz(path, images)
    path.write_bytes(path.read_bytes()[:-100])
    return path


@pytest.mark.parametrize(
    "make_images, message",
    [
        (
            lambda p: _write_raw(p, struct.pack(">iiii", 2049, 10, 28, 28) + bytes(7840)),
            "wrong magic number 2049",
        ),
        (
            lambda p: _write_raw(p, struct.pack(">iiii", 2051, 11, 28, 28) + bytes(7840)),
            "file truncated",
        ),
        (lambda p: _truncated_gzip(p), "not a readable gzip file"),
        (lambda p: p.write_bytes(b"not gzip at all") and p, "not a readable gzip file"),
        (lambda p: write_idx_gz(p, make_split(11, seed=1)[0]), "count mismatch"),
    ],
    ids=["wrong-magic", "truncated", "truncated-gzip", "not-gzip", "count-mismatch"],
)
def test_bad_files_fail_naming_the_file_and_leave_no_parquet(tmp_path, make_images, message):
    _, labels = make_split(10, seed=1)
    images = make_images(tmp_path / "images.gz")
    labels = write_idx_gz(tmp_path / "labels.gz", labels)
    out = tmp_path / "out" / "train.parquet"
    with pytest.raises(idx.IDXError, match=r"images\.gz") as err:
        dataset.write_split(images, labels, out, dataset="kmnist")
    assert message in str(err.value)
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no temporary either


def test_count_mismatch_names_both_files(tmp_path):
    images, labels = make_split(20, seed=1)
    img = write_idx_gz(tmp_path / "img.gz", images)
    lab = write_idx_gz(tmp_path / "lab.gz", labels[:19])
    with pytest.raises(idx.IDXError, match=r"img.gz has 20 images but .*lab.gz has 19 labels"):
        dataset.write_split(img, lab, tmp_path / "train.parquet")


def test_unknown_dataset_writes_nothing(pair, tmp_path):
    out = tmp_path / "x.parquet"
    with pytest.raises(KeyError, match="unknown dataset 'emnist'"):
        dataset.write_split(pair[0], pair[1], out, dataset="emnist")
    assert not out.exists()


# --- the real files ---

REAL_COUNTS = {
    "fashion-mnist": ([6000] * 10, [1000] * 10),
    "mnist": (
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
    ),
}


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_real_dataset_end_to_end(name, tmp_path):
    raw = SHARED / name
    if not raw.is_dir():
        pytest.skip(f"the real {name} files are not at {raw} (shared data of this machine)")
    entry = datasets.get(name)
    for split, n, counts in (
        ("train", entry.n_train, REAL_COUNTS[name][0]),
        ("test", entry.n_test, REAL_COUNTS[name][1]),
    ):
        images, labels = (raw / f for f in datasets.split_files(name, split))
        out = tmp_path / f"{split}.parquet"
        assert dataset.write_split(images, labels, out, dataset=name) == n
        x, y = dataset.load(out)
        assert x.shape == (n, 784) and x.min() == 0.0 and x.max() == 1.0
        np.testing.assert_array_equal(np.bincount(y), counts)
        expected = idx.read_images(images).reshape(n, -1) * np.float32(1 / 255)
        np.testing.assert_array_equal(x, expected)
        meta = pq.read_schema(out).metadata
        assert meta[b"source_images_md5"].decode() == entry.md5[images.name]
        assert meta[b"dataset"].decode() == name
