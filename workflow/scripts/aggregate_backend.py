"""Snakemake wrapper: check one backend's runs and write its tables (mlpstudy.aggregate)."""

import logging
import os

from mlpstudy import aggregate

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
try:
    table, histories = aggregate.collect(
        [os.path.dirname(p) for p in snakemake.input.metrics], dict(snakemake.params.expected)
    )
except aggregate.ConsistencyError as exc:
    logging.error("%s", exc)
    raise
aggregate.write_csv(table, snakemake.output.table)
aggregate.write_parquet(histories, snakemake.output.histories)
logging.info("%d runs, %d history rows", len(table), len(histories))
