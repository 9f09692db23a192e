"""Snakemake wrapper: one (backend, lr, batch, trial) training run (mlpstudy.jobs)."""

import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mlpstudy.backends.base import TrainSpec  # noqa: E402
from mlpstudy.jobs import run_job  # noqa: E402

logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s"
)
wc, params = snakemake.wildcards, snakemake.params
run_job(
    wc.backend,
    TrainSpec(
        learning_rate=float(wc.lr),
        batch_size=int(wc.batch),
        epochs=params.epochs,
        seed=params.seed,
        trial=int(wc.trial),
        shared_start=params.shared_start,
        threads=snakemake.threads,
        options=dict(params.options),
    ),
    snakemake.input.train,
    snakemake.input.test,
    snakemake.output.history,
    snakemake.output.metrics,
)
