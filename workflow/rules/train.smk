# Study sections 5-6: one job per run (dataset, net, precision, regularization, optimizer,
# start, threads, backend, learning rate, batch size, trial; mlpstudy.runs.AXES).


rule train:
    input:
        unpack(train_data),
    output:
        history=f"{RUN_DIR}/history.csv",
        metrics=f"{RUN_DIR}/metrics.json",
    log:
        f"{RUN_DIR}/train.log",
    benchmark:
        f"{RUN_DIR}/benchmark.tsv"
    priority: train_priority
    conda:
        ENV
    # Every thread setting of the backend (BLAS/OpenMP, TensorFlow's pools, XLA, torch)
    # comes from the run's `threads` axis; its timed loop gets that many dedicated cores.
    threads: run_threads
    resources:
        training_slots=training_slots,
        mem_mb=train_mem_mb,
        runtime=train_runtime_min,
    params:
        # The run's TrainSpec: its identity plus epochs, seed, optimizer and
        # regularisation settings and backend options; changing any of these reruns
        # exactly the affected runs.
        spec=train_spec,
        timing=config["timing"],
    script:
        "../scripts/train.py"
