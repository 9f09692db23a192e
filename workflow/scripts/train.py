"""Snakemake wrapper: one (backend, lr, batch, trial) training run (mlpstudy.jobs)."""

import logging
import os

# Everything the job says goes to the run's log, the frameworks' own C++ messages
# (written straight to file descriptor 2) and any traceback included.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
log = open(snakemake.log[0], "a", buffering=1)
os.dup2(log.fileno(), 2)
logging.basicConfig(stream=log, level=logging.INFO, format="%(asctime)s %(message)s")

from mlpstudy.backends.base import TrainSpec  # noqa: E402
from mlpstudy.jobs import run_job  # noqa: E402

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
