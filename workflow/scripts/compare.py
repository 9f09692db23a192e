"""Snakemake wrapper: a study's runs.csv -> its comparison.csv (mlpstudy.comparison)."""

import logging

from mlpstudy import cores

# untimed work: an idle dedicated core, until a timed loop wants it (mlpstudy.cores)
cores.borrow_idle_cores()

from mlpstudy import comparison

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
logging.captureWarnings(True)
result = comparison.write_comparison(
    snakemake.input.table,
    snakemake.output.comparison,
    alpha=snakemake.params.alpha,
    confidence=snakemake.params.confidence,
    correction=snakemake.params.correction,
)
logging.info("wrote %d rows to %s", len(result), snakemake.output.comparison)
