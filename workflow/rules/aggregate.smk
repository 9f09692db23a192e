# Study section 6.2: check the runs, then gather them into the study's tables.
# Per backend first, so that a figure of one backend needs only that backend's runs.


rule aggregate_backend:
    input:
        unpack(backend_runs),
    output:
        table="results/tables/runs_{backend}.csv",
        histories="results/tables/histories_{backend}.parquet",
    params:
        expected=expected_sweep,
    conda:
        ENV
    log:
        "logs/aggregate/{backend}.log",
    script:
        "../scripts/aggregate_backend.py"


rule aggregate:
    input:
        tables=expand("results/tables/runs_{backend}.csv", backend=BACKENDS),
        histories=expand("results/tables/histories_{backend}.parquet", backend=BACKENDS),
    output:
        table="results/tf_vs_np.csv",
        histories="results/histories.parquet",
    conda:
        ENV
    log:
        "logs/aggregate/all.log",
    script:
        "../scripts/aggregate.py"
