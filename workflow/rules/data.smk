# Study section 2.1: fetch a dataset's four original files, verify them, convert to
# parquet. What each dataset is (files, MD5s, public mirrors) is mlpstudy.datasets.CATALOG.


rule download:
    output:
        expand(
            "results/data/{{dataset}}/raw/{file}",
            file=datasets.FILES,
        ),
    log:
        "logs/data/{dataset}/download.log",
    conda:
        ENV
    params:
        # the config's data_mirrors[dataset] first, then the catalog's public mirrors
        mirrors=dataset_mirrors,
        md5=dataset_md5,
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
    script:
        "../scripts/preprocess.py"
