"""Snakemake wrapper: check one backend's runs and write its tables (mlpstudy.aggregate)."""

import logging
import os

from mlpstudy import cores

# untimed work: an idle dedicated core, until a timed loop wants it (mlpstudy.cores)
cores.borrow_idle_cores()

from mlpstudy import aggregate, runs

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
try:
    table, histories = aggregate.collect(
        [os.path.dirname(p) for p in snakemake.input.metrics], dict(snakemake.params.expected)
    )
except aggregate.ConsistencyError as exc:
    logging.error("%s", exc)
    raise
for _, run in table[table["timing_attempts"] > 1].iterrows():
    logging.info(
        "re-timed: %s timed %d times (contended loops), published %s",
        runs.run_dir({axis.name: run[axis.column] for axis in runs.AXES}),
        run["timing_attempts"],
        "a contended one" if run["contended"] else "the first uncontended one",
    )
for _, run in aggregate.contended(table).iterrows():
    logging.warning(
        "contended timing after %d attempts: %s ran its loop at wall/CPU %.2f "
        "(others' CPU on its cores %.2f s, steal %.2f s, %s other runs)",
        run["timing_attempts"],
        runs.run_dir({axis.name: run[axis.column] for axis in runs.AXES}),
        run["wall_cpu_ratio"],
        run["others_cpu_s"] or 0.0,
        run["steal_s"] or 0.0,
        run["overlapping_runs"],
    )
aggregate.write_csv(table, snakemake.output.table)
aggregate.write_parquet(histories, snakemake.output.histories)
logging.info("%d runs, %d history rows", len(table), len(histories))
