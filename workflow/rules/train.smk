# Study sections 5-6: one job per (backend, learning rate, batch size, trial).


rule train:
    input:
        train="results/data/mnist/train.parquet",
        test="results/data/mnist/test.parquet",
    output:
        history=f"{RUN_DIR}/history.csv",
        metrics=f"{RUN_DIR}/metrics.json",
    params:
        # Changing any of these reruns the affected runs (Snakemake's params trigger).
        epochs=config["epochs"],
        seed=config["seed"],
        shared_start=config["shared_start"],
        options=backend_options,
    # Drives every thread setting of the backend (BLAS/OpenMP for NumPy, TensorFlow
    # intra/inter-op and XLA for Keras); override with --set-threads train=N.
    threads: 1
    resources:
        physical_cores=threads_of,
        mem_mb=train_mem_mb,
        runtime=train_runtime_min,
    conda:
        ENV
    log:
        f"{RUN_DIR}/train.log",
    benchmark:
        f"{RUN_DIR}/benchmark.tsv"
    script:
        "../scripts/train.py"
