"""Snakemake wrapper: draw one study figure (mlpstudy.figures.draw)."""
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
    from mlpstudy.figures import draw

    draw(
        snakemake.params.figure,
        snakemake.input[0],
        snakemake.output[0],
        backend=getattr(snakemake.params, "backend", None),
    )
    logging.getLogger("plot_figure").info(
        "wrote %s from %s", snakemake.output[0], snakemake.input[0]
    )
