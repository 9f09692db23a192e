"""Mirrors are tried in order; a wrong checksum is rejected; nothing unverified is left."""

import pytest

from mlpstudy import download
from mlpstudy.datasets import FILES
from synthetic import write_mirror


@pytest.fixture
def mirror(tmp_path):
    md5 = write_mirror(tmp_path / "good", n_train=20, n_test=10)
    return tmp_path / "good", md5


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
        download.fetch(FILES[0], wrong[FILES[0]], [str(tmp_path / "nowhere"), str(good)],
                       out / FILES[0])
    text = str(err.value)
    assert FILES[0] in text
    assert f"{tmp_path / 'nowhere'}: FileNotFoundError" in text
    assert f"{good}: ValueError: checksum mismatch" in text
    assert not (out / FILES[0]).exists()
    assert list(out.iterdir()) == []


def test_unreachable_url_mirror_is_reported(mirror, tmp_path):
    good, md5 = mirror
    # port 9 on loopback: connection refused at once, no traffic leaves the machine
    used = download.fetch(FILES[1], md5[FILES[1]], ["http://127.0.0.1:9/mnist", str(good)],
                          tmp_path / FILES[1])
    assert used == str(good)


def test_no_mirrors():
    with pytest.raises(download.DownloadError, match="mnist_mirrors"):
        download.fetch_all({"x": "0" * 32}, [], "/tmp")
