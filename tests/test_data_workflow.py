"""The data rules through the real snakemake: a synthetic dataset served by local mirrors,
CIFAR-10's rules on a synthetic archive, and the real MNIST and Fashion-MNIST where a copy
exists."""

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from e2e_utils import REPO, make_tiny_workdir, snakemake, write_config
from synthetic import write_cifar_mirror

from mlpstudy import dataset
from mlpstudy.datasets import FILES

pytestmark = pytest.mark.e2e
PARQUETS = ["results/data/tiny/train.parquet", "results/data/tiny/test.parquet"]
SHARED = REPO.parent / "shared" / "data"
REFUSING = "http://127.0.0.1:9/tiny/"  # loopback port 9: refused at once, nothing leaves


def set_config(work, **changes):
    config = yaml.safe_load((work / "config.yaml").read_text())
    config.update(changes)
    write_config(work, config)


def download_log(work, name="tiny"):
    return (work / f"logs/data/{name}/download.log").read_text()


def test_data_rules_on_a_synthetic_mirror(tmp_path):
    work = make_tiny_workdir(tmp_path)
    snakemake(work, *PARQUETS)
    x, y = dataset.load(work / PARQUETS[0])
    assert x.shape == (240, 784) and y.shape == (240,)
    assert dataset.load(work / PARQUETS[1])[0].shape == (60, 784)
    meta = pq.read_schema(work / PARQUETS[0]).metadata
    assert meta[b"dataset"] == b"tiny"
    assert json.loads(meta[b"classes"]) == [str(i) for i in range(10)]


def test_config_mirrors_come_before_the_public_ones(tmp_path):
    work = make_tiny_workdir(tmp_path)
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["extra_datasets"]["tiny"]["mirrors"] = [REFUSING]  # the "public" mirror
    write_config(work, config)
    snakemake(work, *PARQUETS)
    log = download_log(work)
    assert f"mirrors in order: {work / 'mirror'}, {REFUSING}" in log
    assert "failed" not in log  # the public mirror was never needed


def test_public_mirror_serves_when_the_config_mirror_fails(tmp_path):
    work = make_tiny_workdir(tmp_path)
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["extra_datasets"]["tiny"]["mirrors"] = [str(work / "mirror")]
    config["data_mirrors"] = {"tiny": [str(work / "empty")]}
    write_config(work, config)
    snakemake(work, *PARQUETS)
    assert download_log(work).count(f"mirror {work / 'empty'} failed") == 4


def test_corrupt_first_mirror_is_rejected_and_second_used(tmp_path):
    work = make_tiny_workdir(tmp_path)
    bad = work / "bad_mirror"
    bad.mkdir()
    for name in FILES:
        data = bytearray((work / "mirror" / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (bad / name).write_bytes(bytes(data))
    set_config(work, data_mirrors={"tiny": [str(bad), str(work / "mirror")]})
    snakemake(work, *PARQUETS)
    log = download_log(work)
    assert log.count("checksum mismatch") == 4 and f"mirror {bad} failed" in log


def test_all_mirrors_bad_fails_naming_each_and_leaves_no_output(tmp_path):
    work = make_tiny_workdir(tmp_path, data_mirrors={"tiny": ["/nonexistent/mirror"]})
    proc = snakemake(work, *PARQUETS, check=False)
    assert proc.returncode != 0
    raw = work / "results/data/tiny/raw"
    assert not raw.exists() or not any(raw.iterdir())
    assert not any((work / p).exists() for p in PARQUETS)
    text = proc.stdout + proc.stderr + download_log(work)
    assert "/nonexistent/mirror: FileNotFoundError" in text


def test_changing_the_mirrors_does_not_redo_the_data(tmp_path):
    """A local copy today, the public mirrors tomorrow: the same verified files."""
    work = make_tiny_workdir(tmp_path)
    snakemake(work, *PARQUETS)
    copy = work / "copy"
    copy.mkdir()
    for name in FILES:
        (copy / name).write_bytes((work / "mirror" / name).read_bytes())
    set_config(work, data_mirrors={"tiny": [str(copy)]})
    proc = snakemake(work, "-n", *PARQUETS)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_cifar10_rules_take_the_archive_and_its_real_md5_rejects_another(tmp_path):
    """CIFAR-10 through the rules: one archive download, both splits read from it; a
    synthetic archive in a local mirror is fetched and rejected by the catalog's MD5."""
    work = tmp_path / "work"
    write_cifar_mirror(work / "mirror", n=4)
    write_config(
        work, {"datasets": ["cifar-10"], "data_mirrors": {"cifar-10": [str(work / "mirror")]}}
    )
    targets = ["results/data/cifar-10/train.parquet", "results/data/cifar-10/test.parquet"]
    plan = snakemake(work, "-n", *targets).stdout
    archive = "results/data/cifar-10/raw/cifar-10-python.tar.gz"
    assert plan.count(f"input: {archive}\n") == 2 and f"output: {archive}" in plan
    assert re.search(r"download_archive +1\n", plan) and re.search(r"preprocess +2\n", plan)
    proc = snakemake(work, *targets, check=False)
    assert proc.returncode != 0
    log = (work / "logs/data/cifar-10/download_cifar-10-python.tar.gz.log").read_text()
    assert f"mirror {work / 'mirror'} failed for cifar-10-python.tar.gz" in log
    assert "checksum mismatch" in log and "expected c58f30108f718f92721af3b95e74349a" in log
    raw = work / "results/data/cifar-10/raw"
    assert not raw.exists() or not any(raw.iterdir())
    assert not any((work / t).exists() for t in targets)


def test_invalid_config_fails_before_any_job_naming_the_field(tmp_path):
    work = make_tiny_workdir(tmp_path, learning_rates=[0.1, -1])
    proc = snakemake(work, "-n", check=False)
    assert proc.returncode != 0
    assert "config field 'learning_rates[1]'" in proc.stdout + proc.stderr


@pytest.mark.skipif(
    not all((SHARED / d).is_dir() for d in ("mnist", "fashion-mnist")),
    reason=f"the real MNIST and Fashion-MNIST files are not both under {SHARED}",
)
def test_real_mnist_and_fashion_mnist_offline_from_the_command_line(tmp_path):
    work = tmp_path / "real"
    work.mkdir()
    write_config(work, {})
    targets = [
        f"results/data/{d}/{s}.parquet"
        for d in ("mnist", "fashion-mnist")
        for s in ("train", "test")
    ]
    mirrors = (
        f"data_mirrors={{mnist: [{SHARED / 'mnist'}], fashion-mnist: [{SHARED / 'fashion-mnist'}]}}"
    )
    snakemake(work, "--config", "datasets=[mnist,fashion-mnist]", mirrors, "--", *targets)
    counts = {
        "mnist": (
            [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
            [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
        ),
        "fashion-mnist": ([6000] * 10, [1000] * 10),
    }
    for name, (train_counts, test_counts) in counts.items():
        x, y = dataset.load(work / f"results/data/{name}/train.parquet")
        xt, yt = dataset.load(work / f"results/data/{name}/test.parquet")
        assert x.shape == (60_000, 784) and xt.shape == (10_000, 784)
        assert x.min() == 0.0 and x.max() == 1.0 and xt.min() == 0.0 and xt.max() == 1.0
        np.testing.assert_array_equal(np.bincount(y), train_counts)
        np.testing.assert_array_equal(np.bincount(yt), test_counts)
        assert (
            pq.read_schema(work / f"results/data/{name}/train.parquet").metadata[b"dataset"]
            == name.encode()
        )
