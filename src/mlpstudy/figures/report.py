"""How the HTML report (``snakemake --report``) is organised: one category per study,
named by :func:`mlpstudy.runs.study_label`, one for the results across studies; inside a
study, a figure's subcategory and labels come from its registry entry.

The functions take a rule's wildcards, so that rules pass them to ``report(...)`` as they
are (``category=report.study_category``); every rule that puts a study's result in the
report (figures, statistics, claims) uses :func:`study_category`.

Snakemake appends hyperlink targets named ``Workflow``, ``Statistics`` and one per
category to every caption and to the front page; a category with one of the first two
names (case-insensitively) is a duplicate target, which docutils prints as a "System
Message: WARNING/2" on the report's front page. :data:`RESERVED` lists them for the test
that keeps every category clear of them.
"""

from __future__ import annotations

from mlpstudy import runs

from . import registry

#: The category of the results that span every study (the overview, the contrast of
#: starts).
ACROSS_STUDIES = "Across studies"
#: Names Snakemake's report already uses as hyperlink targets.
RESERVED = ("workflow", "statistics")


def study_category(wildcards) -> str:
    """The category of everything of one study, e.g. ``mnist · sgd · shared start · 1
    thread``."""
    return runs.study_label(wildcards)


def figure_subcategory(wildcards) -> str:
    return registry.info(wildcards["figure"]).subcategory


def figure_labels(wildcards) -> dict[str, str]:
    backend = wildcards["backend"] if "backend" in wildcards.keys() else None
    return registry.report_labels(wildcards["figure"], backend)
