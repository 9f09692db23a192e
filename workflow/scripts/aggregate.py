"""Snakemake wrapper: concatenate the per-backend tables, or every study's (mlpstudy.aggregate);
``params.paper``: the table is the study's own (``tf_vs_np.csv``, its column names)."""

import logging

from mlpstudy import cores

# untimed work: an idle dedicated core, until a timed loop wants it (mlpstudy.cores)
cores.borrow_idle_cores()

from mlpstudy import aggregate

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
table = aggregate.combine([aggregate.read_table(p) for p in snakemake.input.tables])
histories = aggregate.combine([aggregate.read_histories(p) for p in snakemake.input.histories])
write = aggregate.write_paper_csv if snakemake.params.get("paper") else aggregate.write_csv
write(table, snakemake.output.table)
aggregate.write_parquet(histories, snakemake.output.histories)
logging.info("%d runs, %d history rows", len(table), len(histories))
