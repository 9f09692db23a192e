# Study section 2.1: fetch a dataset's original files, verify them, convert each split to
# parquet. What each dataset is (format, files, MD5s, public mirrors, class names, image
# shape) is mlpstudy.datasets.CATALOG; docs/data.md.


# The config's data_mirrors[dataset] are read by the script, not passed as a param, on
# purpose: Snakemake reruns a job whose params change, so switching between a local copy
# and the public mirrors would redo the download and then every training run. The files
# are the same wherever they come from: each is checked against its MD5.
# IDX datasets: the four .gz files.
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


# Archive formats (CIFAR-10's python tarball): the one archive, as published.
rule download_archive:
    output:
        "results/data/{dataset}/raw/{archive}",
    log:
        "logs/data/{dataset}/download_{archive}.log",
    wildcard_constraints:
        archive=r"[^/]+\.tar\.gz",
    conda:
        ENV
    params:
        md5=dataset_md5,
        public_mirrors=public_mirrors,
    script:
        "../scripts/download.py"


# The inputs by the dataset's format: an IDX pair (images, labels) or the archive.
rule preprocess:
    input:
        unpack(datasets.raw_split_files),
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
