# Study section 7, tested: per-cell paired statistics, then a verdict on every claim.
# alpha / margins: headline defaults in mlpstudy.defaults, the rest in mlpstudy.claims.
from mlpstudy import defaults as stat_defaults


rule compare:
    input:
        table="results/tf_vs_np.csv",
    output:
        comparison=report(
            "results/comparison.csv",
            caption="../report/comparison.rst",
            category="Statistics",
            labels={"table": "per-cell comparison"},
        ),
    params:
        alpha=stat_defaults.ALPHA,
        confidence=stat_defaults.CONFIDENCE,
        correction=stat_defaults.CORRECTION,
    conda:
        ENV
    log:
        "logs/stats/compare.log",
    script:
        "../scripts/compare.py"


rule claims:
    input:
        table="results/tf_vs_np.csv",
        histories="results/histories.parquet",
        comparison="results/comparison.csv",
    output:
        markdown="results/claims.md",
        html=report(
            "results/claims.html",
            caption="../report/claims.rst",
            category="Claims",
            labels={"report": "claims of the study"},
        ),
    params:
        alpha=stat_defaults.ALPHA,
        accuracy_margin=stat_defaults.ACCURACY_MARGIN,
    conda:
        ENV
    log:
        "logs/stats/claims.log",
    script:
        "../scripts/claims.py"
