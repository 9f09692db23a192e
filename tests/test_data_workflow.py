"""The data rules through the real snakemake: a synthetic mirror, and the real MNIST."""

import numpy as np
import pytest

from e2e_utils import SHARED_MNIST, make_tiny_workdir, snakemake, write_config
from mlpstudy import dataset
from mlpstudy.datasets import FILES

pytestmark = pytest.mark.e2e
PARQUETS = ["results/data/mnist/train.parquet", "results/data/mnist/test.parquet"]


def test_data_rules_on_a_synthetic_mirror(tmp_path):
    work = make_tiny_workdir(tmp_path)
    snakemake(work, *PARQUETS)
    x, y = dataset.load(work / PARQUETS[0])
    assert x.shape == (240, 784) and y.shape == (240,)
    assert dataset.load(work / PARQUETS[1])[0].shape == (60, 784)


def test_corrupt_first_mirror_is_rejected_and_second_used(tmp_path):
    work = make_tiny_workdir(tmp_path)
    bad = work / "bad_mirror"
    bad.mkdir()
    for name in FILES:
        data = bytearray((work / "mirror" / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (bad / name).write_bytes(bytes(data))
    import yaml

    config = yaml.safe_load((work / "config.yaml").read_text())
    config["mnist_mirrors"] = [str(bad), str(work / "mirror")]
    write_config(work, config)
    snakemake(work, *PARQUETS)
    log = (work / "logs/data/mnist/download.log").read_text()
    assert log.count("checksum mismatch") == 4 and f"mirror {bad} failed" in log


def test_all_mirrors_bad_fails_naming_each_and_leaves_no_output(tmp_path):
    work = make_tiny_workdir(tmp_path, mnist_mirrors=["/nonexistent/mirror"])
    proc = snakemake(work, *PARQUETS, check=False)
    assert proc.returncode != 0
    assert not (work / "results/data/mnist/raw").exists() or not any(
        (work / "results/data/mnist/raw").iterdir()
    )
    assert "/nonexistent/mirror: FileNotFoundError" in proc.stdout + proc.stderr + (
        work / "logs/data/mnist/download.log"
    ).read_text()


def test_invalid_config_fails_before_any_job_naming_the_field(tmp_path):
    work = make_tiny_workdir(tmp_path, learning_rates=[0.1, -1])
    proc = snakemake(work, "-n", check=False)
    assert proc.returncode != 0
    assert "config field 'learning_rates[1]': -1 is less than or equal" in proc.stdout + proc.stderr


def test_command_line_overrides_are_lists_of_strings_and_accepted(tmp_path):
    work = make_tiny_workdir(tmp_path)
    proc = snakemake(work, "-n", "--config", "epochs=1", "learning_rates=[0.1,0.01]",
                     "batch_sizes=[8]", "trials=1")
    assert proc.returncode == 0


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"real MNIST not present at {SHARED_MNIST}")
def test_real_mnist(tmp_path):
    work = tmp_path / "real"
    work.mkdir()
    write_config(work, {"mnist_mirrors": [str(SHARED_MNIST)]})
    snakemake(work, *PARQUETS)
    x, y = dataset.load(work / PARQUETS[0])
    xt, yt = dataset.load(work / PARQUETS[1])
    assert x.shape == (60_000, 784) and xt.shape == (10_000, 784)
    assert x.min() == 0.0 and x.max() == 1.0 and xt.min() == 0.0 and xt.max() == 1.0
    np.testing.assert_array_equal(
        np.bincount(y), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    )
    np.testing.assert_array_equal(
        np.bincount(yt), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    )
