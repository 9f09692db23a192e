"""The rules ``compare`` and ``claims`` through the real Snakemake on a tiny synthetic sweep."""

from pathlib import Path

import pandas as pd
import pytest
from e2e_utils import make_tiny_workdir, snakemake

from mlpstudy import claims, stats

pytestmark = pytest.mark.e2e

TARGETS = ["results/comparison.csv", "results/claims.md", "results/claims.html"]


@pytest.fixture(scope="module")
def tiny(tiny_sweep):
    """The session's tiny sweep (its default target includes the statistics)."""
    snakemake(tiny_sweep, *TARGETS)
    return tiny_sweep


def test_comparison_matches_the_run_table(tiny):
    runs = stats.load_runs(tiny / "results/tf_vs_np.csv")
    cmp = pd.read_csv(tiny / "results/comparison.csv")
    assert list(cmp.columns) == list(stats.COLUMNS)
    cells = runs.groupby(["learning_rate", "batch_size"]).ngroups
    assert len(cmp) == cells * 2  # x 2 metrics x 1 pair of backends
    assert set(zip(cmp.backend_a, cmp.backend_b, strict=False)) == {("numpy", "tensorflow")}
    assert (cmp.n_pairs == runs.trial.nunique()).all()
    for _, r in cmp.iterrows():
        sel = runs[(runs.learning_rate == r.learning_rate) & (runs.batch_size == r.batch_size)]
        a = sel[sel.model == "numpy"].set_index("trial")[r.metric]
        b = sel[sel.model == "tensorflow"].set_index("trial")[r.metric]
        assert r.mean_a == pytest.approx(a.mean())
        assert r.mean_diff == pytest.approx((a - b).mean())
    assert "wrote" in (tiny / "logs/stats/compare.log").read_text()


def test_claims_report_is_what_the_module_says_for_these_files(tiny, tmp_path):
    expected = claims.write_claims(
        tiny / "results/tf_vs_np.csv",
        tiny / "results/histories.parquet",
        tiny / "results/comparison.csv",
        tmp_path / "claims.md",
        tmp_path / "claims.html",
    )
    md = (tiny / "results/claims.md").read_text()
    assert md == (tmp_path / "claims.md").read_text()
    assert (tiny / "results/claims.html").read_text() == (tmp_path / "claims.html").read_text()
    assert [r.id for r in expected] == list(range(1, 10))
    # one epoch: no loss curve to judge
    assert expected[8].verdict == "inconclusive" and "1 epoch(s)" in expected[8].reason
    log = (tiny / "logs/stats/claims.log").read_text()
    assert all(f"claim {i} " in log for i in range(1, 10))


def test_html_report_holds_the_claims_and_the_comparison(tiny):
    snakemake(tiny, *TARGETS, "--report", "results/report.html")
    html = (tiny / "results/report.html").read_text()
    assert "claims.html" in html and "comparison.csv" in html


def test_one_trial_runs_and_every_claim_says_why_it_is_inconclusive(tmp_path):
    work = make_tiny_workdir(tmp_path, trials=1, learning_rates=[0.1], batch_sizes=[64])
    snakemake(work, *TARGETS)
    cmp = pd.read_csv(work / "results/comparison.csv")
    assert cmp.p_value.isna().all() and (cmp.n_pairs == 1).all()
    md = Path(work / "results/claims.md").read_text()
    assert md.count("INCONCLUSIVE") >= 9 + 9  # summary table and headings
    assert "SUPPORTED" not in md and "CONTRADICTED" not in md
    assert "trials: 1" in md
