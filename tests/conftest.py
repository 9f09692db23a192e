import sys
from pathlib import Path

# tests import their helpers (synthetic, e2e_utils) by module name
sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """The default target of the real workflow on the tiny synthetic grid, built once.

    2 learning rates x 2 batch sizes x 2 trials x 1 epoch x both backends = 16 runs.
    Tests only read it; a test that changes things makes its own work dir.
    """
    from e2e_utils import make_tiny_workdir, snakemake

    work = make_tiny_workdir(tmp_path_factory.mktemp("tiny_sweep"))
    snakemake(work)
    return work
