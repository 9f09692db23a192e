"""Snakemake wrapper: draw one figure of one study (mlpstudy.figures.draw)."""
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
    from mlpstudy.figures import draw, registry

    figure = snakemake.params.figure
    source = snakemake.input[registry.info(figure).reads]
    draw(figure, source, snakemake.output[0], backend=snakemake.params.get("backend"))
    logging.getLogger("plot_figure").info("wrote %s from %s", snakemake.output[0], source)
