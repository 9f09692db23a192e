"""Snakemake wrapper: one training run (mlpstudy.jobs), identified by its wildcards."""

import logging
import os

# Everything the job says goes to the run's log, the frameworks' own C++ messages
# (written straight to file descriptor 2) and any traceback included.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
log = open(snakemake.log[0], "a", buffering=1)
os.dup2(log.fileno(), 2)
logging.basicConfig(stream=log, level=logging.INFO, format="%(asctime)s %(message)s")

from mlpstudy import cores

# untimed work: an idle dedicated core, until a timed loop wants it (mlpstudy.cores)
cores.borrow_idle_cores()

from mlpstudy.backends.base import TrainSpec  # noqa: E402
from mlpstudy.jobs import run_job  # noqa: E402

run_job(
    snakemake.wildcards.backend,
    TrainSpec(**snakemake.params.spec),
    snakemake.input.train,
    snakemake.input.test,
    snakemake.output.history,
    snakemake.output.metrics,
    dataset_name=snakemake.wildcards.dataset,
    timing_mode=snakemake.params.timing,
)
# Both outputs are complete and durable (written atomically, fsynced, metrics last):
# skip the frameworks' slow teardown (TensorFlow's takes ~1 s) and exit now.
logging.shutdown()
log.flush()
os._exit(0)
