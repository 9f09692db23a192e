"""Snakemake wrapper: concatenate the per-backend tables (mlpstudy.aggregate)."""

import logging

import pandas as pd

from mlpstudy import aggregate

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
table = aggregate.combine([pd.read_csv(p) for p in snakemake.input.tables])
histories = aggregate.combine([pd.read_parquet(p) for p in snakemake.input.histories])
aggregate.write_csv(table, snakemake.output.table)
aggregate.write_parquet(histories, snakemake.output.histories)
logging.info("%d runs, %d history rows", len(table), len(histories))
