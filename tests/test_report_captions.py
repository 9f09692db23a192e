"""Every caption of the HTML report (workflow/report/*.rst but the figures', which
tests/test_figures.py renders) as Snakemake renders it: Jinja with its settings and a
``snakemake`` object, then docutils, where any message of level WARNING or above fails
(an ``|t|`` read as a substitution printed "(ERROR/3) Undefined substitution referenced"
in the comparison's caption), and no Python value leaks into the prose."""

from pathlib import Path
from types import SimpleNamespace

import docutils.core
import docutils.utils
import jinja2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CAPTIONS = sorted(
    p.name for p in (REPO / "workflow/report").glob("*.rst") if p.name != "figure.rst"
)


def config(small: bool) -> dict:
    full = yaml.safe_load((REPO / "config.yaml").read_text())
    if small:
        full.update(yaml.safe_load((REPO / "config.small.yaml").read_text()))
    return full


def render(name: str, cfg: dict, start: str = "shared") -> str:
    wildcards = dict(dataset="mnist", optimizer="sgd", start=start, threads="1")
    snakemake = SimpleNamespace(
        config=cfg, wildcards=SimpleNamespace(**wildcards), output=["results/x"]
    )
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    text = env.from_string((REPO / "workflow/report" / name).read_text())
    return text.render(snakemake=snakemake, categories={}, files={})


def html(text: str) -> str:
    """docutils' HTML; a message of level WARNING (2) or above raises."""
    return docutils.core.publish_parts(
        text, writer="html", settings_overrides={"halt_level": 2, "report_level": 2}
    )["html_body"]


@pytest.mark.parametrize("small", [False, True])
@pytest.mark.parametrize("start", ["shared", "independent"])
@pytest.mark.parametrize("name", CAPTIONS)
def test_every_caption_renders_without_docutils_messages(name, start, small):
    text = render(name, config(small), start)
    try:
        body = html(text)
    except docutils.utils.SystemMessage as exc:  # pragma: no cover - the failure's text
        pytest.fail(f"{name}: {exc}")
    assert "System Message" not in body and "problematic" not in body


def test_the_front_page_writes_prose_not_python():
    """config.small: one dataset, one optimizer, 1 trial of 2 epochs."""
    text = render("workflow.rst", config(small=True))
    assert "[" not in text and "]" not in text, text
    assert "1 trials" not in text
    small = config(small=True)
    assert f"{small['trials']} trial of {small['epochs']} epochs" in text
    assert "dataset mnist" in text and "learning rates 0.01, 0.1" in text


def test_the_claims_caption_names_the_start():
    assert "``shared`` start: both" in render("claims.rst", config(False), "shared")
    assert "same start, not the study's" not in render("claims.rst", config(False), "independent")


def test_a_substitution_would_fail_the_check():
    """The check has teeth: the old comparison caption's bare |t|."""
    with pytest.raises(docutils.utils.SystemMessage):
        html("a cell needs the |t| of its test")


@pytest.mark.parametrize("figure", ["speed_accuracy", "loss_curves", "time_heatmap"])
def test_figure_captions_count_in_words_with_one_trial(figure):
    """config.small has 1 trial of 2 epochs: "1 trial", never "1 trials"."""
    cfg = config(small=True)
    wildcards = dict(dataset="mnist", optimizer="sgd", start="shared", threads="1", figure=figure)
    snakemake = SimpleNamespace(
        config=cfg,
        wildcards=SimpleNamespace(**wildcards, backend="numpy"),
        output=["results/x.png"],
    )
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    text = env.from_string((REPO / "workflow/report/figure.rst").read_text())
    text = text.render(snakemake=snakemake)
    assert "1 trials" not in text and "1 trial" in text
    assert "System Message" not in html(text)
