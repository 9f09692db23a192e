"""Snakemake wrapper: fetch and verify the original files (mlpstudy.download)."""

import logging
import os

from mlpstudy import download

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
download.fetch_all(
    dict(snakemake.params.md5),
    list(snakemake.params.mirrors),
    os.path.dirname(snakemake.output[0]),
)
