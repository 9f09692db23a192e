"""Snakemake wrapper: one split's IDX pair -> parquet (mlpstudy.dataset)."""

import logging

from mlpstudy import dataset

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
rows = dataset.write_split(
    snakemake.input.images,
    snakemake.input.labels,
    snakemake.output[0],
    dataset=snakemake.wildcards.dataset,
    classes=snakemake.params.classes,
)
logging.info("wrote %d rows of %s to %s", rows, snakemake.wildcards.dataset, snakemake.output[0])
