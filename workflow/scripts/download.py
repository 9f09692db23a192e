"""Snakemake wrapper: fetch and verify one dataset's original files (mlpstudy.download)."""

import logging
import os

from mlpstudy import cores

# untimed work: an idle dedicated core, until a timed loop wants it (mlpstudy.cores)
cores.borrow_idle_cores()

from mlpstudy import datasets, download

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
name = snakemake.wildcards.dataset
# data_mirrors from the config, not a param: see the comment on the rule (data.smk)
configured = (snakemake.config.get("data_mirrors") or {}).get(name)
mirrors = datasets.ordered_mirrors(configured, snakemake.params.public_mirrors)
logging.info("%s: mirrors in order: %s", name, ", ".join(mirrors))
download.fetch_all(
    dict(snakemake.params.md5), mirrors, os.path.dirname(snakemake.output[0]), dataset=name
)
