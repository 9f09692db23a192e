# Study section 7, tested: per-cell paired statistics, then a verdict on every claim.
# alpha / margins: defaults live in mlpstudy.stats and mlpstudy.claims (Settings).
import mlpstudy.claims
import mlpstudy.stats


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
        alpha=mlpstudy.stats.ALPHA,
        confidence=mlpstudy.stats.CONFIDENCE,
        correction=mlpstudy.stats.CORRECTION,
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
        alpha=mlpstudy.claims.ALPHA,
        accuracy_margin=mlpstudy.claims.ACCURACY_MARGIN,
    conda:
        ENV
    log:
        "logs/stats/claims.log",
    script:
        "../scripts/claims.py"
