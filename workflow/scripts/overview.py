"""Snakemake wrapper: every study's runs -> the overview table and figure
(mlpstudy.figures.overview)."""
# ruff: noqa: F821  (Snakemake injects `snakemake`)

import contextlib
import logging

with (
    open(snakemake.log[0], "w") as log,
    contextlib.redirect_stdout(log),
    contextlib.redirect_stderr(log),
):
    logging.basicConfig(stream=log, level=logging.INFO, format="%(asctime)s %(message)s")
    logging.captureWarnings(True)
    from mlpstudy.figures.overview import write_overview

    table = write_overview(snakemake.input.table, snakemake.output.table, snakemake.output.png)
    logging.getLogger("overview").info(
        "wrote %d rows to %s and %s", len(table), snakemake.output.table, snakemake.output.png
    )
