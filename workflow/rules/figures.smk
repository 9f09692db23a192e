# Study section 7: the figures of each study, and the overview across studies.
# One rule per kind of figure over a {figure} wildcard: which figures exist, what draws
# them and their report subcategory and label come from mlpstudy.figures.registry; their
# captions are the blocks of workflow/report/figure.rst. A per-backend figure reads only
# its backend's tables, so asking for one never trains another backend.
from mlpstudy.figures import registry as figure_registry
from mlpstudy.figures import report as figure_report


rule figure_backend:
    input:
        runs=f"{STUDY}/tables/runs_{{backend}}.csv",
        histories=f"{STUDY}/tables/histories_{{backend}}.parquet",
    output:
        png=report(
            f"{STUDY}/figures/{{figure}}_{{backend}}.png",
            caption="../report/figure.rst",
            category=figure_report.study_category,
            subcategory=figure_report.figure_subcategory,
            labels=figure_report.figure_labels,
        ),
    log:
        f"logs/figures/{STUDY}/{{figure}}_{{backend}}.log",
    wildcard_constraints:
        figure=figure_registry.constraint(per_backend=True),
    conda:
        ENV
    params:
        figure="{figure}",
        backend="{backend}",
    script:
        "../scripts/plot_figure.py"


rule figure:
    input:
        runs=f"{STUDY}/runs.csv",
        histories=f"{STUDY}/histories.parquet",
    output:
        png=report(
            f"{STUDY}/figures/{{figure}}.png",
            caption="../report/figure.rst",
            category=figure_report.study_category,
            subcategory=figure_report.figure_subcategory,
            labels=figure_report.figure_labels,
        ),
    log:
        f"logs/figures/{STUDY}/{{figure}}.log",
    wildcard_constraints:
        figure=figure_registry.constraint(per_backend=False),
    conda:
        ENV
    params:
        figure="{figure}",
    script:
        "../scripts/plot_figure.py"


rule overview:
    input:
        table="results/tf_vs_np.csv",
    output:
        table=report(
            "results/overview.csv",
            caption="../report/overview.rst",
            category=figure_report.ACROSS_STUDIES,
            subcategory="Overview",
            labels={"result": "overview table"},
        ),
        png=report(
            "results/figures/overview.png",
            caption="../report/overview.rst",
            category=figure_report.ACROSS_STUDIES,
            subcategory="Overview",
            labels={"result": "overview figure"},
        ),
    log:
        "logs/overview.log",
    conda:
        ENV
    script:
        "../scripts/overview.py"
