"""Snakemake wrapper: one split's original files -> parquet (mlpstudy.dataset)."""

import logging

from mlpstudy import cores

# untimed work: an idle dedicated core, until a timed loop wants it (mlpstudy.cores)
cores.borrow_idle_cores()

from mlpstudy import config, dataset

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
# this job's catalog is the workflow's: the built-in entries and the config's extra_datasets
config.register_extra_datasets(snakemake.config)
rows = dataset.write(
    snakemake.wildcards.dataset,
    snakemake.wildcards.split,
    dict(snakemake.input.items()),
    snakemake.output[0],
    classes=snakemake.params.classes,
)
logging.info("wrote %d rows of %s to %s", rows, snakemake.wildcards.dataset, snakemake.output[0])
