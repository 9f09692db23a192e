"""Importable code behind the workflow: data, backends, training, aggregation, figures, statistics.

The Snakemake scripts in ``workflow/scripts`` are thin wrappers around these modules.
"""
