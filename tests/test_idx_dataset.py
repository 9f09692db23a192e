"""IDX parsing and the IDX -> parquet -> arrays round trip, on tiny synthetic files."""

import gzip
import struct

import numpy as np
import pyarrow.parquet as pq
import pytest

from mlpstudy import dataset, idx
from synthetic import make_split, write_idx_gz


@pytest.fixture
def pair(tmp_path):
    images, labels = make_split(50, seed=3)
    return (
        write_idx_gz(tmp_path / "img.gz", images),
        write_idx_gz(tmp_path / "lab.gz", labels),
        images,
        labels,
    )


def test_round_trip_values_dtype_shape_and_order(pair, tmp_path):
    img_path, lab_path, images, labels = pair
    out = tmp_path / "split.parquet"
    assert dataset.write_split(img_path, lab_path, out) == 50
    x, y = dataset.load(out)
    assert x.shape == (50, 784) and x.dtype == np.float32 and x.flags.c_contiguous
    assert y.shape == (50,) and y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)  # label order preserved
    np.testing.assert_allclose(x, images.reshape(50, -1) / 255.0, rtol=1e-6)
    assert 0.0 <= x.min() and x.max() <= 1.0
    schema = pq.read_schema(out)
    assert str(schema.field("pixels").type) == "fixed_size_binary[3136]"
    assert schema.field("pixels").metadata == {b"dtype": b"<f4", b"shape": b"784"}
    assert not schema.field("pixels").nullable and not schema.field("label").nullable
    assert str(schema.field("label").type) == "uint8"


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


def test_not_gzip(tmp_path):
    path = tmp_path / "plain.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(idx.IDXError, match="plain.gz: not a readable gzip file"):
        idx.read_images(path)


def test_count_mismatch_names_both_files_and_leaves_no_parquet(tmp_path):
    images, labels = make_split(20, seed=1)
    img = write_idx_gz(tmp_path / "img.gz", images)
    lab = write_idx_gz(tmp_path / "lab.gz", labels[:19])
    out = tmp_path / "out" / "train.parquet"
    with pytest.raises(idx.IDXError, match=r"img.gz has 20 images but .*lab.gz has 19 labels"):
        dataset.write_split(img, lab, out)
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no temporary either


def test_load_rejects_wrong_schema(tmp_path):
    import pyarrow as pa

    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"pixels": [1.0], "label": [1]}), path)
    with pytest.raises(dataset.DatasetError, match="other.parquet: column .pixels. is double"):
        dataset.load(path)


def test_round_trip_across_several_row_groups(pair, tmp_path, monkeypatch):
    img_path, lab_path, images, labels = pair
    monkeypatch.setattr(dataset, "ROW_GROUP", 16)  # 50 rows -> 4 row groups
    out = tmp_path / "groups.parquet"
    dataset.write_split(img_path, lab_path, out)
    assert pq.ParquetFile(out).num_row_groups == 4
    x, y = dataset.load(out)
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_allclose(x, images.reshape(50, -1) / 255.0, rtol=1e-6)


def test_load_rejects_a_file_that_is_not_parquet(tmp_path):
    path = tmp_path / "train.parquet"
    path.write_bytes(b"PAR1 but not really")
    with pytest.raises(dataset.DatasetError, match="train.parquet: cannot read it as a dataset parquet file"):
        dataset.load(path)
