"""Snakemake wrapper: every study's runs -> the overview table and figure
(mlpstudy.figures.overview), and the scaling across nets: its points, crossover table and
figure (mlpstudy.figures.scaling)."""
# ruff: noqa: F821  (Snakemake injects `snakemake`)

import contextlib
import logging

from mlpstudy import cores

# untimed work: an idle dedicated core, until a timed loop wants it (mlpstudy.cores)
cores.borrow_idle_cores()

with (
    open(snakemake.log[0], "w") as log,
    contextlib.redirect_stdout(log),
    contextlib.redirect_stderr(log),
):
    logging.basicConfig(stream=log, level=logging.INFO, format="%(asctime)s %(message)s")
    logging.captureWarnings(True)
    from mlpstudy.figures.overview import write_overview
    from mlpstudy.figures.scaling import write_scaling

    out = snakemake.output
    logger = logging.getLogger("overview")
    table = write_overview(snakemake.input.table, out.table, out.png)
    logger.info("wrote %d rows to %s and %s", len(table), out.table, out.png)
    points, crossovers = write_scaling(
        snakemake.input.table,
        snakemake.input.train,
        snakemake.params.image_shapes,
        out.scaling_points,
        out.scaling,
        out.scaling_png,
        definitions=snakemake.params.net_definitions,
    )
    logger.info(
        "wrote %d points to %s, %d crossover rows to %s, and %s",
        len(points),
        out.scaling_points,
        len(crossovers),
        out.scaling,
        out.scaling_png,
    )
