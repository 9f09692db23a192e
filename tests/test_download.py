"""The catalog, mirror order (config before built-in), checksums, nothing unverified left."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from synthetic import write_mirror

from mlpstudy import dataset, datasets, download
from mlpstudy.datasets import FILES

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def set_catalog(monkeypatch, name, md5, mirrors=()):
    """Give catalog entry ``name`` synthetic files' MD5s and these public mirrors
    (none by default: nothing reaches the network)."""
    entry = dataclasses.replace(datasets.CATALOG[name], md5=md5, mirrors=tuple(mirrors))
    monkeypatch.setitem(datasets.CATALOG, name, entry)


@pytest.fixture
def mirror(tmp_path):
    md5 = write_mirror(tmp_path / "good", n_train=20, n_test=10)
    return tmp_path / "good", md5


# --- the catalog ---


def test_catalog_names_the_datasets_each_with_its_format_and_shape():
    assert datasets.NAMES == ("mnist", "fashion-mnist", "kmnist", "cifar-10")
    assert {datasets.get(n).format for n in datasets.NAMES} == set(datasets.FORMATS)
    for name in datasets.NAMES:
        entry = datasets.get(name)
        assert entry.name == name
        if entry.format == "idx":
            assert entry.files == FILES and len(entry.files) == 4
            assert entry.image_shape == (28, 28, 1) and not entry.members
            assert (entry.n_train, entry.n_test) == (60_000, 10_000)
        else:  # the archive (tests/test_cifar.py checks CIFAR-10's entry in full)
            assert entry.files == ("cifar-10-python.tar.gz",) and len(entry.members) == 7
            assert entry.image_shape == (32, 32, 3)
            assert all(re.fullmatch("[0-9a-f]{32}", m) for m in entry.members.values()), name
        assert all(re.fullmatch("[0-9a-f]{32}", m) for m in entry.md5.values()), name
        assert entry.mirrors and all(m.startswith(("http://", "https://")) for m in entry.mirrors)
        assert all(m.endswith("/") for m in entry.mirrors)
        assert len(entry.classes) == entry.n_classes == 10 == len(set(entry.classes))
    # four different datasets: no two share a file
    all_md5 = [m for name in datasets.NAMES for m in datasets.md5s(name).values()]
    assert len(all_md5) == len(set(all_md5)) == 13


def test_split_inputs_by_format():
    assert datasets.split_inputs("mnist", "train") == {
        "images": "train-images-idx3-ubyte.gz",
        "labels": "train-labels-idx1-ubyte.gz",
    }
    assert datasets.split_inputs("cifar-10", "train") == {"archive": "cifar-10-python.tar.gz"}
    with pytest.raises(ValueError, match="cifar-10 is not in IDX format"):
        datasets.split_files("cifar-10", "train")


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(
        KeyError, match="unknown dataset 'cifar-100'; known: mnist, fashion-mnist, kmnist, cifar-10"
    ):
        datasets.get("cifar-100")
    with pytest.raises(KeyError, match="cifar-100"):
        datasets.mirrors("cifar-100", {})


def test_split_files():
    assert datasets.split_files("kmnist", "test") == (
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_catalog_md5s_match_the_real_files(name):
    directory = SHARED / name
    if not directory.is_dir():
        pytest.skip(f"no copy of {name} at {directory}")
    assert {f: download.md5sum(directory / f) for f in FILES} == datasets.md5s(name)
    published = dict(
        reversed(line.split()) for line in (directory / "MD5SUMS").read_text().splitlines()
    )
    assert published == datasets.md5s(name)


# --- mirrors: the config's first ---


def test_mirrors_config_first_then_public_each_once():
    assert datasets.ordered_mirrors(None, ("a", "b")) == ["a", "b"]
    assert datasets.ordered_mirrors(["c", "b"], ("a", "b")) == ["c", "b", "a"]
    public = list(datasets.get("fashion-mnist").mirrors)
    config = {"fashion-mnist": ["/data/fmnist", public[1]], "mnist": ["/data/mnist"]}
    assert datasets.mirrors("fashion-mnist", config) == ["/data/fmnist", public[1], public[0]]
    assert datasets.mirrors("kmnist", config) == list(datasets.get("kmnist").mirrors)
    assert datasets.mirrors("kmnist", None) == datasets.mirrors("kmnist", {"kmnist": []})


def test_config_mirror_is_tried_before_the_public_ones(mirror, tmp_path, monkeypatch, caplog):
    good, md5 = mirror
    # the public mirror is a refusing local port: had it been tried first, the log says so
    refusing = "http://127.0.0.1:9/kmnist/"
    set_catalog(monkeypatch, "kmnist", md5, [refusing])
    mirrors = datasets.mirrors("kmnist", {"kmnist": [str(good)]})
    assert mirrors == [str(good), refusing]
    used = download.fetch_all(datasets.md5s("kmnist"), mirrors, tmp_path / "raw", "kmnist")
    assert set(used.values()) == {str(good)}
    assert refusing not in caplog.text


def test_public_mirror_is_used_when_the_config_mirror_fails(mirror, tmp_path, monkeypatch):
    good, md5 = mirror
    set_catalog(monkeypatch, "mnist", md5, [str(good)])
    mirrors = datasets.mirrors("mnist", {"mnist": [str(tmp_path / "empty")]})
    used = download.fetch_all(datasets.md5s("mnist"), mirrors, tmp_path / "raw", "mnist")
    assert set(used.values()) == {str(good)}


def test_kmnist_synthetic_files_through_the_real_download_and_preprocess(
    tmp_path, monkeypatch, caplog
):
    """KMNIST has no copy here: synthetic files in its real format take the real path."""
    md5 = write_mirror(tmp_path / "kmnist-mirror", n_train=30, n_test=10)
    raw = tmp_path / "results/data/kmnist/raw"
    # the catalog's real KMNIST MD5s reject these files: every mirror fails
    with pytest.raises(download.DownloadError, match="checksum mismatch"):
        download.fetch(
            FILES[0],
            datasets.md5s("kmnist")[FILES[0]],
            [str(tmp_path / "kmnist-mirror")],
            raw / FILES[0],
        )
    assert not (raw / FILES[0]).exists()
    set_catalog(monkeypatch, "kmnist", md5)
    mirrors = datasets.mirrors("kmnist", {"kmnist": [str(tmp_path / "kmnist-mirror")]})
    download.fetch_all(datasets.md5s("kmnist"), mirrors, raw, "kmnist")
    for split, n in (("train", 30), ("test", 10)):
        images, labels = (raw / f for f in datasets.split_files("kmnist", split))
        out = tmp_path / f"results/data/kmnist/{split}.parquet"
        assert dataset.write_split(images, labels, out, dataset="kmnist") == n
        x, y = dataset.load(out)
        assert x.shape == (n, 784) and np.bincount(y, minlength=10).tolist() == [n // 10] * 10
        meta = pq.read_schema(out).metadata
        assert meta[b"dataset"] == b"kmnist"
        assert meta[b"classes"].decode().startswith('["o", "ki", "su"')
        assert meta[b"source_images_md5"].decode() == md5[images.name]


# --- fetching ---


def test_fetches_all_files_from_first_working_mirror(mirror, tmp_path):
    good, md5 = mirror
    used = download.fetch_all(md5, [str(tmp_path / "missing"), str(good)], tmp_path / "out")
    assert set(used) == set(FILES) and set(used.values()) == {str(good)}
    for name in FILES:
        assert download.md5sum(tmp_path / "out" / name) == md5[name]


def test_corrupted_file_is_rejected_and_next_mirror_used(mirror, tmp_path, caplog):
    good, md5 = mirror
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in FILES:
        data = bytearray((good / name).read_bytes())
        data[-1] ^= 0xFF
        (bad / name).write_bytes(bytes(data))
    used = download.fetch_all(md5, [str(bad), str(good)], tmp_path / "out")
    assert set(used.values()) == {str(good)}
    assert "checksum mismatch" in caplog.text and str(bad) in caplog.text


def test_all_mirrors_fail_lists_each_and_leaves_nothing(mirror, tmp_path):
    good, md5 = mirror
    wrong = dict(md5, **{FILES[0]: "0" * 32})
    out = tmp_path / "out"
    with pytest.raises(download.DownloadError) as err:
        download.fetch(
            FILES[0], wrong[FILES[0]], [str(tmp_path / "nowhere"), str(good)], out / FILES[0]
        )
    text = str(err.value)
    assert FILES[0] in text
    assert f"{tmp_path / 'nowhere'}: FileNotFoundError" in text
    assert f"{good}: ValueError: checksum mismatch" in text
    assert not (out / FILES[0]).exists()
    assert list(out.iterdir()) == []


def test_unreachable_url_mirror_is_reported(mirror, tmp_path):
    good, md5 = mirror
    # port 9 on loopback: connection refused at once, no traffic leaves the machine
    used = download.fetch(
        FILES[1], md5[FILES[1]], ["http://127.0.0.1:9/mnist", str(good)], tmp_path / FILES[1]
    )
    assert used == str(good)


def test_no_mirrors_says_where_to_give_one():
    with pytest.raises(
        download.DownloadError, match="no mirrors for dataset 'kmnist'.*data_mirrors"
    ):
        download.fetch_all({"x": "0" * 32}, [], "/tmp", "kmnist")
