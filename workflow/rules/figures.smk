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


# The overview across studies, and across nets: time per step against FLOPs per step and
# where each framework overtakes NumPy (mlpstudy.figures.scaling). The training sets'
# sizes come from the preprocessed files themselves (an extra dataset has its own), the
# image shapes (for the FLOPs per step) from the dataset catalog.
rule overview:
    input:
        table="results/tf_vs_np.csv",
        train=expand("results/data/{dataset}/train.parquet", dataset=config["datasets"]),
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
        scaling=report(
            "results/scaling.csv",
            caption="../report/scaling.rst",
            category=figure_report.ACROSS_STUDIES,
            subcategory="Cost as the work grows",
            labels={"result": "crossover table"},
        ),
        scaling_points=report(
            "results/scaling_points.csv",
            caption="../report/scaling.rst",
            category=figure_report.ACROSS_STUDIES,
            subcategory="Cost as the work grows",
            labels={"result": "scaling points"},
        ),
        scaling_png=report(
            "results/figures/scaling.png",
            caption="../report/scaling.rst",
            category=figure_report.ACROSS_STUDIES,
            subcategory="Cost as the work grows",
            labels={"result": "scaling figure"},
        ),
    log:
        "logs/overview.log",
    conda:
        ENV
    params:
        image_shapes={d: list(datasets.get(d).image_shape) for d in config["datasets"]},
        net_definitions=config["net_definitions"],
    script:
        "../scripts/overview.py"
