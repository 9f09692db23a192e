"""Snakemake wrapper: every study's runs.csv + histories -> results/starts.md / .html."""

import logging

from mlpstudy import cores

# untimed work: an idle dedicated core, until a timed loop wants it (mlpstudy.cores)
cores.borrow_idle_cores()

from mlpstudy import starts

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
logging.captureWarnings(True)
pairs = starts.write_starts(
    list(snakemake.input.tables),
    list(snakemake.input.histories),
    snakemake.output.markdown,
    snakemake.output.html,
    alpha=snakemake.params.alpha,
    accuracy_margin=snakemake.params.accuracy_margin,
)
for p in pairs:
    logging.info(
        "%s: starts explain the accuracy differences: %s - %s", p.group, p.verdict, p.reason
    )
