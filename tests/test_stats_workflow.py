"""The rules ``compare``, ``claims`` and ``starts`` through the real Snakemake on the tiny
synthetic sweep (per-study paths, DESIGN of the run identity)."""

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from e2e_utils import TINY_STUDY, make_tiny_workdir, snakemake

from mlpstudy import claims_report, comparison, stats
from mlpstudy.backends import REGISTRY

pytestmark = pytest.mark.e2e

TARGETS = [f"{TINY_STUDY}/comparison.csv", f"{TINY_STUDY}/claims.md", f"{TINY_STUDY}/claims.html"]


@pytest.fixture(scope="module")
def tiny(tiny_sweep):
    """The session's tiny sweep (its default target includes the statistics)."""
    snakemake(tiny_sweep, *TARGETS)
    return tiny_sweep


def test_comparison_matches_the_study_table(tiny):
    runs = stats.load_runs(tiny / TINY_STUDY / "runs.csv")
    cmp = pd.read_csv(tiny / TINY_STUDY / "comparison.csv")
    assert list(cmp.columns) == list(comparison.COLUMNS)
    cells = runs.groupby(["learning_rate", "batch_size"]).ngroups
    metrics = [m for m in stats.METRICS if m in runs.columns and runs[m].notna().any()]
    assert len(cmp) == cells * len(metrics)  # x 1 pair of backends
    assert set(zip(cmp.backend_a, cmp.backend_b, strict=False)) == {("numpy", "tensorflow")}
    assert set(cmp.start) == {"shared"}
    acc = cmp[cmp.metric == "test_accuracy"]
    assert (acc.n_pairs == runs.trial.nunique()).all()  # accuracy: every run counts
    for _, r in cmp.iterrows():
        sel = runs[(runs.learning_rate == r.learning_rate) & (runs.batch_size == r.batch_size)]
        # load_runs leaves out the times of diverged and contended runs (the machine is
        # busy in a test session: some timed loops are contended)
        a = sel[sel.backend == "numpy"].set_index("trial")[r.metric]
        b = sel[sel.backend == "tensorflow"].set_index("trial")[r.metric]
        both = a.notna() & b.notna()
        assert r.n_pairs == both.sum()
        assert r.mean_a == pytest.approx(a.mean(), nan_ok=True)
        if not both.any():
            continue
        a, b = a[both], b[both]
        if r.scale == "log":
            assert r.ratio == pytest.approx(float((a / b).prod() ** (1 / len(a))))
        else:
            assert r.mean_diff == pytest.approx((a - b).mean())
    log = tiny / "logs/stats" / TINY_STUDY / "compare.log"
    assert "wrote" in log.read_text()


def test_claims_report_is_what_the_module_says_for_these_files(tiny, tmp_path):
    config = yaml.safe_load((tiny / "config.yaml").read_text())
    options = {b: REGISTRY[b].resolve_options(config.get(b, {})) for b in config["backends"]}
    study = tiny / TINY_STUDY
    expected = claims_report.write_claims(
        study / "runs.csv",
        study / "histories.parquet",
        study / "comparison.csv",
        tmp_path / "claims.md",
        tmp_path / "claims.html",
        options=options,
    )
    md = (study / "claims.md").read_text()
    assert md == (tmp_path / "claims.md").read_text()
    assert (study / "claims.html").read_text() == (tmp_path / "claims.html").read_text()
    assert [r.id for r in expected] == list(range(1, 10))
    # one epoch: no loss curve to judge
    assert expected[8].verdict == "inconclusive" and "1 epoch(s)" in expected[8].reason
    title = ", ".join(p for p in Path(TINY_STUDY).parts if "=" in p)
    assert title in md and "start=shared" in title
    assert "| start modes | shared |" in md and "## Conditions of the data" in md
    log = (tiny / "logs/stats" / TINY_STUDY / "claims.log").read_text()
    assert all(f"claim {i} " in log for i in range(1, 10))


#: What docutils leaves in its HTML for a message of level WARNING (2), ERROR (3) or
#: SEVERE (4): "System Message: WARNING/2" blocks, or inline "(ERROR/3) ..." text.
DOCUTILS_MESSAGES = re.compile(r"System Message|\((?:WARNING/2|ERROR/3|SEVERE/4)\)|problematic")


def test_html_report_holds_the_claims_and_the_comparison(tiny):
    snakemake(tiny, *TARGETS, "--report", "results/report.html")
    html = (tiny / "results/report.html").read_text()
    assert "claims.html" in html and "comparison.csv" in html
    # every caption and the front page render without a docutils message >= WARNING
    found = DOCUTILS_MESSAGES.search(html)
    assert found is None, html[max(0, found.start() - 300) : found.end() + 300]
    assert "2 trials of 1 epoch." in html  # prose, not "2 trials of 1 epochs"


def test_both_starts_give_the_starts_contrast_and_one_trial_says_why(tmp_path):
    """Shared and independent starts, one trial: every claim inconclusive with its reason,
    and results/starts.md pairs the two studies."""
    work = make_tiny_workdir(
        tmp_path, trials=1, learning_rates=[0.1], batch_sizes=[64], starts=["shared", "independent"]
    )
    studies = [TINY_STUDY, TINY_STUDY.replace("start=shared", "start=independent")]
    targets = [f"{s}/{f}" for s in studies for f in ("comparison.csv", "claims.md")]
    snakemake(work, *targets, "results/starts.md", "results/starts.html")
    for s in studies:
        cmp = pd.read_csv(work / s / "comparison.csv")
        assert cmp.p_value.isna().all() and (cmp.n_pairs == 1).all()
        md = Path(work / s / "claims.md").read_text()
        assert md.count("INCONCLUSIVE") >= 9 + 9  # summary table and headings
        assert "| SUPPORTED |" not in md and "| CONTRADICTED |" not in md
        assert "trials: 1" in md
    starts = (work / "results/starts.md").read_text()
    group = [p for p in Path(TINY_STUDY).parts if "=" in p and not p.startswith("start=")]
    assert "## " + ", ".join(group) in starts
    assert "Do the accuracy differences come from the starts?" in starts
    assert "This run cannot tell whether" in starts
    assert (work / "results/starts.html").read_text().startswith("<!DOCTYPE html>")
