"""CIFAR-10's python version -> parquet -> arrays, on synthetic archives in the real format
(a gzip'd tarball of Python 2 pickles, the real member names and order); every bad input
fails naming the file and the problem, and leaves nothing behind. No copy of the real
archive is available here: its MD5s are checked only against torchvision's catalog."""

import dataclasses
import hashlib
import io
import json
import os
import pickle
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from synthetic import (
    CIFAR_FOLDER,
    cifar_members,
    cifar_planes,
    py2_pickle,
    write_cifar_mirror,
    write_tar_gz,
)

from mlpstudy import cifar, dataset, datasets, download

ARCHIVE = "cifar-10-python.tar.gz"
BATCHES = {split: datasets.CIFAR_SPLITS[split] for split in ("train", "test")}


def use_synthetic(monkeypatch, archive_md5, member_md5, mirrors=()):
    """The catalog's CIFAR-10 entry with the synthetic files' MD5s (no public mirror)."""
    entry = dataclasses.replace(
        datasets.CATALOG["cifar-10"],
        md5={ARCHIVE: archive_md5},
        members=member_md5,
        mirrors=tuple(mirrors),
    )
    monkeypatch.setitem(datasets.CATALOG, "cifar-10", entry)
    return entry


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    archive_md5, member_md5, arrays = write_cifar_mirror(tmp_path / "mirror", n=20)
    use_synthetic(monkeypatch, archive_md5, member_md5)
    return tmp_path / "mirror", arrays


def expected(arrays, split):
    images = np.concatenate([arrays[b] for b in BATCHES[split]])
    labels = np.concatenate([arrays[f"{b}/labels"] for b in BATCHES[split]])
    return images, labels


# --- the catalog entry ---


def test_catalog_entry_is_torchvisions_cifar10():
    entry = datasets.get("cifar-10")
    assert (entry.format, entry.image_shape, entry.n_classes) == ("cifar-python", (32, 32, 3), 10)
    assert (entry.n_train, entry.n_test) == (50_000, 10_000)
    assert entry.md5 == {ARCHIVE: "c58f30108f718f92721af3b95e74349a"}
    assert entry.mirrors == ("https://www.cs.toronto.edu/~kriz/",)
    assert entry.folder == CIFAR_FOLDER
    # torchvision's CIFAR10.train_list, test_list and meta (torchvision/datasets/cifar.py)
    assert entry.members == {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    }
    assert entry.classes[:3] == ("airplane", "automobile", "bird") and entry.classes[-1] == "truck"
    assert datasets.split_inputs("cifar-10", "test") == {"archive": ARCHIVE}
    assert {b for s in BATCHES.values() for b in s} == set(entry.members) - {"batches.meta"}


def test_the_synthetic_pickles_are_what_python2_writes():
    """What the CIFAR site's own loader (pickle.load(encoding="bytes")) and torchvision's
    (encoding="latin1") read, with NumPy 1's module name for the array."""
    members, arrays = cifar_members(n=4)
    raw = members["data_batch_1"]
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"_codecs" not in raw
    content = pickle.loads(raw, encoding="bytes")
    assert content[b"data"].shape == (4, 3072) and content[b"data"].dtype == np.uint8
    np.testing.assert_array_equal(content[b"data"], cifar_planes(arrays["data_batch_1"]))
    assert pickle.loads(raw, encoding="latin1")["labels"] == arrays["data_batch_1/labels"].tolist()
    # the planes: the first 1024 values are the red channel, row-major
    red = arrays["data_batch_1"][0, :, :, 0]
    np.testing.assert_array_equal(content[b"data"][0, :1024], red.reshape(-1))


# --- the round trip ---


@pytest.mark.parametrize("split", ["train", "test"])
def test_archive_to_parquet_to_arrays(mirror, tmp_path, split):
    directory, arrays = mirror
    out = tmp_path / f"{split}.parquet"
    n = dataset.write("cifar-10", split, {"archive": directory / ARCHIVE}, out)
    images, labels = expected(arrays, split)
    assert n == len(images) == {"train": 100, "test": 20}[split]
    x, y = dataset.load(out)
    assert x.shape == (n, 3072) and x.dtype == np.float32 and x.flags.c_contiguous
    assert x.ctypes.data % 64 == 0
    # rows are the images in (H, W, C) order: CIFAR's planes transposed, / 255
    np.testing.assert_array_equal(x, images.reshape(n, -1) * np.float32(1 / 255))
    # ... element by element from the pickled planes: (h, w, c) is data[c * 1024 + h * 32 + w]
    members, _ = cifar_members(n=20)
    planes = np.concatenate(
        [pickle.loads(members[b], encoding="bytes")[b"data"] for b in BATCHES[split]]
    )
    h, w, c = (a.ravel() for a in np.meshgrid(range(32), range(32), range(3), indexing="ij"))
    np.testing.assert_array_equal(
        x[:, (h * 32 + w) * 3 + c], planes[:, c * 1024 + h * 32 + w] * np.float32(1 / 255)
    )
    np.testing.assert_array_equal(y, labels)
    assert dataset.image_shape(out) == (32, 32, 3)


def test_metadata_names_the_sources_and_their_md5s(mirror, tmp_path):
    directory, _ = mirror
    out = tmp_path / "test.parquet"
    dataset.write("cifar-10", "test", {"archive": directory / ARCHIVE}, out)
    schema = pq.read_schema(out)
    assert str(schema.field("pixels").type) == "fixed_size_list<element: float not null>[3072]"
    meta = {k.decode(): v.decode() for k, v in schema.metadata.items() if k != b"ARROW:schema"}
    entry = datasets.get("cifar-10")
    assert meta == {
        "dataset": "cifar-10",
        "classes": json.dumps(list(entry.classes)),
        "image_shape": "32,32,3",
        "source_archive": ARCHIVE,
        "source_archive_md5": entry.md5[ARCHIVE],
        "source_members": json.dumps({m: entry.members[m] for m in ("test_batch", "batches.meta")}),
    }


def test_download_through_a_local_mirror_then_preprocess(mirror, tmp_path, monkeypatch):
    directory, arrays = mirror
    refusing = "http://127.0.0.1:9/kriz/"  # the "public" mirror: refused, nothing leaves
    entry = use_synthetic(
        monkeypatch, download.md5sum(directory / ARCHIVE), datasets.get("cifar-10").members,
        [refusing],
    )  # fmt: skip
    mirrors = datasets.mirrors("cifar-10", {"cifar-10": [str(tmp_path / "empty"), str(directory)]})
    assert mirrors == [str(tmp_path / "empty"), str(directory), refusing]
    raw = tmp_path / "results/data/cifar-10/raw"
    used = download.fetch_all(datasets.md5s("cifar-10"), mirrors, raw, "cifar-10")
    assert used == {ARCHIVE: str(directory)} and [p.name for p in raw.iterdir()] == [ARCHIVE]
    inputs = {r: raw / f for r, f in datasets.split_inputs("cifar-10", "train").items()}
    out = tmp_path / "results/data/cifar-10/train.parquet"
    assert dataset.write("cifar-10", "train", inputs, out) == 100
    np.testing.assert_array_equal(dataset.load(out)[1], expected(arrays, "train")[1])
    assert entry.md5[ARCHIVE] == download.md5sum(raw / ARCHIVE)


def test_the_real_md5_rejects_another_archive_and_leaves_nothing(tmp_path):
    write_cifar_mirror(tmp_path / "mirror", n=2)
    dest = tmp_path / "raw" / ARCHIVE
    with pytest.raises(download.DownloadError) as err:
        download.fetch(
            ARCHIVE, datasets.md5s("cifar-10")[ARCHIVE], [str(tmp_path / "mirror")], dest
        )
    assert ARCHIVE in str(err.value)
    assert "checksum mismatch" in str(err.value) and "expected c58f30108f718f92" in str(err.value)
    assert list(dest.parent.iterdir()) == []


# --- bad archives: named, with the problem, and no parquet left ---


def _rewrite(tmp_path, monkeypatch, change):
    """A synthetic archive whose members ``change`` altered (the catalog takes their MD5s,
    so what fails is the check under test, not the checksum)."""
    members, _ = cifar_members(n=20)
    change(members)
    path = write_tar_gz(tmp_path / "bad" / ARCHIVE, members)
    md5 = {m: hashlib.md5(b).hexdigest() for m, b in members.items() if "/" not in m}
    base = datasets.CATALOG["cifar-10"].members
    use_synthetic(monkeypatch, download.md5sum(path), {m: md5.get(m, "0" * 32) for m in base})
    return path


class Exploit:
    def __reduce__(self):
        return os.system, ("echo pwned > pwned.txt",)


def _batch(n=20, data=None, labels=None, **extra):
    data = np.zeros((n, 3072), np.uint8) if data is None else data
    labels = [i % 10 for i in range(n)] if labels is None else labels
    return py2_pickle({b"data": data, b"labels": labels, **extra})


def _del(name):
    return lambda m: m.pop(name)


def _set(name, value):
    return lambda m: m.update({name: value})


BAD = [
    (_del("data_batch_3"), "no member cifar-10-batches-py/data_batch_3"),
    (_del("batches.meta"), "no member cifar-10-batches-py/batches.meta"),
    (_set("data_batch_2", _batch(data=np.zeros((20, 3000), np.uint8))), "data is (20, 3000) uint8"),
    (_set("data_batch_2", _batch(data=np.zeros((20, 3072), np.int16))), "expected (n, 3072) uint8"),
    (_set("data_batch_2", _batch(labels=[1] * 19)), "(19,) labels for 20 images: count mismatch"),
    (_set("data_batch_2", _batch(labels=[10] * 20)), "label outside 0..9"),
    (_set("data_batch_2", py2_pickle({b"labels": [0]})), "not a dict with b'data', b'labels'"),
    (_set("data_batch_2", b"not a pickle"), "data_batch_2: not a readable batch"),
    # a pickle that would run code is refused, not run
    (_set("data_batch_2", pickle.dumps(Exploit(), protocol=2)), "refusing to build posix.system"),
    (_set("../evil", b"x"), "unexpected member '../evil'"),
    (_set("/etc/evil", b"x"), "unexpected member '/etc/evil'"),
    (_set("data_batch_6", b"x"), "unexpected member 'cifar-10-batches-py/data_batch_6'"),
    (
        _set("batches.meta", py2_pickle({b"label_names": [b"a"] * 10})),
        "batches.meta names the classes ['a',",
    ),
]


@pytest.mark.parametrize("change, message", BAD, ids=[m for _, m in BAD])
def test_bad_archives_fail_naming_the_file_and_leave_no_parquet(
    tmp_path, monkeypatch, change, message
):
    path = _rewrite(tmp_path, monkeypatch, change)
    out = tmp_path / "out" / "train.parquet"
    with pytest.raises(cifar.CifarError, match=ARCHIVE.replace(".", r"\.")) as err:
        dataset.write("cifar-10", "train", {"archive": path}, out)
    assert message in str(err.value)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_a_member_that_is_not_its_batch_fails_its_md5(mirror, tmp_path, monkeypatch):
    directory, _ = mirror
    entry = datasets.get("cifar-10")
    wrong = dict(entry.members, data_batch_4="0" * 32)
    use_synthetic(monkeypatch, entry.md5[ARCHIVE], wrong)
    with pytest.raises(cifar.CifarError) as err:
        dataset.write("cifar-10", "train", {"archive": directory / ARCHIVE}, tmp_path / "t.parquet")
    text = str(err.value)
    assert f"{ARCHIVE}: cifar-10-batches-py/data_batch_4: checksum mismatch" in text
    assert f"expected {'0' * 32}" in text
    assert not (tmp_path / "t.parquet").exists()
    # the test split does not read data_batch_4: it is written
    assert dataset.write("cifar-10", "test", {"archive": directory / ARCHIVE}, tmp_path / "t") == 20


@pytest.mark.parametrize("cut", [100, 2000, -50], ids=["in-header", "in-a-member", "near-end"])
def test_truncated_archive(mirror, tmp_path, cut):
    directory, _ = mirror
    data = (directory / ARCHIVE).read_bytes()
    bad = tmp_path / ARCHIVE
    bad.write_bytes(data[:cut])
    with pytest.raises(cifar.CifarError, match=rf"{bad}: not a readable tar.gz archive"):
        dataset.write("cifar-10", "train", {"archive": bad}, tmp_path / "out" / "train.parquet")
    assert not (tmp_path / "out").exists()


def test_not_gzip_at_all(tmp_path):
    bad = tmp_path / ARCHIVE
    bad.write_bytes(b"<html>Not Found</html>")
    with pytest.raises(cifar.CifarError, match="not a readable tar.gz archive"):
        dataset.write("cifar-10", "test", {"archive": bad}, tmp_path / "test.parquet")


def _tar(path, entries):
    """A tar.gz of (name, type, data or link target) entries, as given."""
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = payload
                tar.addfile(info)
            else:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return path


@pytest.mark.parametrize(
    "entries, message",
    [
        (
            [(f"{CIFAR_FOLDER}/test_batch", tarfile.SYMTYPE, "/etc/passwd")],
            "member 'cifar-10-batches-py/test_batch' is not a regular file",
        ),
        (
            [(f"{CIFAR_FOLDER}/test_batch", tarfile.REGTYPE, b"x")] * 2,
            "member 'cifar-10-batches-py/test_batch' appears twice",
        ),
    ],
    ids=["symlink", "duplicate"],
)
def test_links_and_duplicates_are_refused(tmp_path, entries, message):
    path = _tar(tmp_path / ARCHIVE, entries)
    with pytest.raises(cifar.CifarError, match=message):
        cifar.read_members(path, datasets.get("cifar-10"), ("test_batch",))
