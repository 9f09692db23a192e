# NumPy vs TensorFlow/Keras MLP on MNIST: download -> preprocess -> train (one job per
# backend x learning rate x batch size x trial) -> aggregate -> figures and statistics.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    default_target: True
    input:
        all_targets(),
