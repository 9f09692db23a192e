"""Snakemake wrapper: runs, histories, comparison -> claims.md / .html (mlpstudy.claims)."""

import logging

from mlpstudy import claims

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
logging.captureWarnings(True)
results = claims.write_claims(
    snakemake.input.table,
    snakemake.input.histories,
    snakemake.input.comparison,
    snakemake.output.markdown,
    snakemake.output.html,
    alpha=snakemake.params.alpha,
    accuracy_margin=snakemake.params.accuracy_margin,
)
for r in results:
    logging.info("claim %d (%s): %s - %s", r.id, r.section, r.verdict, r.reason)
