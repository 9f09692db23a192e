"""Snakemake wrapper: a study's runs, histories, comparison -> claims.md / .html."""

import logging

from mlpstudy import cores

# untimed work: an idle dedicated core, until a timed loop wants it (mlpstudy.cores)
cores.borrow_idle_cores()

from mlpstudy import claims_report

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
logging.captureWarnings(True)
results = claims_report.write_claims(
    snakemake.input.table,
    snakemake.input.histories,
    snakemake.input.comparison,
    snakemake.output.markdown,
    snakemake.output.html,
    options=dict(snakemake.params.options),
    alpha=snakemake.params.alpha,
    accuracy_margin=snakemake.params.accuracy_margin,
)
for r in results:
    logging.info("claim %d (%s): %s - %s", r.id, r.section, r.verdict, r.reason)
