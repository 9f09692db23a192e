# Study section 2.1: fetch a dataset's four original files, verify them, convert each
# split to parquet. What each dataset is (files, MD5s, public mirrors, class names) is
# mlpstudy.datasets.CATALOG; docs/data.md.


# The config's data_mirrors[dataset] are read by the script, not passed as a param, on
# purpose: Snakemake reruns a job whose params change, so switching between a local copy
# and the public mirrors would redo the download and then every training run. The files
# are the same wherever they come from: each is checked against its MD5.
rule download:
    output:
        expand("results/data/{{dataset}}/raw/{file}", file=datasets.FILES),
    log:
        "logs/data/{dataset}/download.log",
    conda:
        ENV
    params:
        md5=dataset_md5,
        public_mirrors=public_mirrors,
    script:
        "../scripts/download.py"


rule preprocess:
    input:
        unpack(split_files),
    output:
        "results/data/{dataset}/{split}.parquet",
    log:
        "logs/data/{dataset}/preprocess_{split}.log",
    conda:
        ENV
    params:
        classes=dataset_classes,
    script:
        "../scripts/preprocess.py"
