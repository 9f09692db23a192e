# Study section 2.1: fetch the four original MNIST files, verify them, convert to parquet.


rule download_mnist:
    output:
        expand(
            "results/data/{{dataset}}/raw/{file}",
            file=datasets.FILES,
        ),
    params:
        mirrors=config["mnist_mirrors"],
        md5=config["mnist_md5"],
    conda:
        ENV
    log:
        "logs/data/{dataset}/download.log",
    script:
        "../scripts/download.py"


rule preprocess:
    input:
        unpack(split_files),
    output:
        "results/data/{dataset}/{split}.parquet",
    conda:
        ENV
    log:
        "logs/data/{dataset}/preprocess_{split}.log",
    script:
        "../scripts/preprocess.py"
