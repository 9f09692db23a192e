# NumPy vs TensorFlow/Keras (and more) MLP on MNIST (and more): download -> preprocess ->
# train (one job per run: mlpstudy.runs.AXES) -> aggregate -> figures and statistics.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/stats.smk"


# Everything but training is light: on a cluster it runs beside Snakemake, not as a job.
localrules:
    all,
    download,
    download_archive,
    preprocess,
    aggregate_backend,
    aggregate_study,
    aggregate,
    compare,
    claims,
    starts,
    figure_backend,
    figure,
    overview,


rule all:
    default_target: True
    input:
        all_targets(),
