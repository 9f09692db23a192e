# Study section 7, tested, per study: per-cell paired statistics, then a verdict on every
# claim; across studies, shared against independent starts (results/starts.md).
# alpha / margins: headline defaults in mlpstudy.defaults, the rest in mlpstudy.claims.engine
# (Settings); every verdict is reached under its study's start, named beside it.
from mlpstudy import defaults as stat_defaults
from mlpstudy.figures import report as figure_report

# Every backend's options as the config gives them to its runs (recorded in claims.md).
STATS_BACKEND_OPTIONS = {
    b: REGISTRY[b].resolve_options(config.get(b, {})) for b in BACKENDS
}


rule compare:
    input:
        table=f"{STUDY}/runs.csv",
    output:
        comparison=report(
            f"{STUDY}/comparison.csv",
            caption="../report/comparison.rst",
            category=figure_report.study_category,
            subcategory="Comparison",
            labels={"table": "per-cell comparison"},
        ),
    log:
        f"logs/stats/{STUDY}/compare.log",
    conda:
        ENV
    params:
        alpha=stat_defaults.ALPHA,
        confidence=stat_defaults.CONFIDENCE,
        correction=stat_defaults.CORRECTION,
    script:
        "../scripts/compare.py"


rule claims:
    input:
        table=f"{STUDY}/runs.csv",
        histories=f"{STUDY}/histories.parquet",
        comparison=f"{STUDY}/comparison.csv",
    output:
        markdown=f"{STUDY}/claims.md",
        html=report(
            f"{STUDY}/claims.html",
            caption="../report/claims.rst",
            category=figure_report.study_category,
            subcategory="Claims",
            labels={"report": "claims of the study"},
        ),
    log:
        f"logs/stats/{STUDY}/claims.log",
    conda:
        ENV
    params:
        alpha=stat_defaults.ALPHA,
        accuracy_margin=stat_defaults.ACCURACY_MARGIN,
        options=STATS_BACKEND_OPTIONS,
    script:
        "../scripts/claims.py"


rule starts:
    input:
        unpack(all_study_tables),
    output:
        markdown="results/starts.md",
        html=report(
            "results/starts.html",
            caption="../report/starts.rst",
            category=figure_report.ACROSS_STUDIES,
            subcategory="Starts",
            labels={"report": "shared vs independent starts"},
        ),
    log:
        "logs/stats/starts.log",
    conda:
        ENV
    params:
        alpha=stat_defaults.ALPHA,
        accuracy_margin=stat_defaults.ACCURACY_MARGIN,
    script:
        "../scripts/starts.py"
