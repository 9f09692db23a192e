# Study section 6.2: check the runs, then gather them into the study's tables.
# Per study and backend first, so that a figure of one backend needs only its runs;
# then per study; then every run of every study in the master table.


rule aggregate_backend:
    input:
        unpack(backend_runs),
    output:
        table=f"{STUDY}/tables/runs_{{backend}}.csv",
        histories=f"{STUDY}/tables/histories_{{backend}}.parquet",
    log:
        f"logs/aggregate/{STUDY}/{{backend}}.log",
    conda:
        ENV
    params:
        expected=expected_sweep,
    script:
        "../scripts/aggregate_backend.py"


rule aggregate_study:
    input:
        unpack(study_tables),
    output:
        table=f"{STUDY}/runs.csv",
        histories=f"{STUDY}/histories.parquet",
    log:
        f"logs/aggregate/{STUDY}/all.log",
    conda:
        ENV
    script:
        "../scripts/aggregate.py"


rule aggregate:
    input:
        unpack(all_study_tables),
    output:
        table="results/tf_vs_np.csv",
        histories="results/histories.parquet",
    log:
        "logs/aggregate/all.log",
    conda:
        ENV
    params:
        # the study's own table: its columns as the study names them (mlpstudy.aggregate)
        paper=True,
    script:
        "../scripts/aggregate.py"
