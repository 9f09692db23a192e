# Configuration, target lists and wildcard constraints shared by every stage.
import os

from snakemake.exceptions import WorkflowError

try:
    from mlpstudy import config as cfg
    from mlpstudy import datasets, locks, machine
except ImportError as exc:
    raise WorkflowError(
        "cannot import the workflow's package 'mlpstudy' "
        f"({exc}); run `make venv` (or `pip install -e .` in your environment)"
    )


try:
    cfg.validate(
        config,
        cfg.load_schema(
            os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml")
        ),
    )
except cfg.ConfigError as exc:
    raise WorkflowError(str(exc))

if workflow.is_main_process:
    # A killed run (kill -9) leaves Snakemake's lock behind; clear it when nothing
    # else is running here, so that rerunning the same command resumes the sweep.
    for stale in locks.clear_stale_locks(os.getcwd()):
        logger.info(f"removed stale lock {stale} (no other Snakemake runs here)")

BACKENDS = config["backends"]
DATASET = "mnist"


wildcard_constraints:
    dataset=DATASET,
    split="train|test",
    backend="|".join(BACKENDS),
    lr=r"[0-9]+(\.[0-9]+)?",
    batch=r"[1-9][0-9]*",
    trial=r"[0-9]+",


RUN_DIR = "results/runs/backend={backend}/lr={lr}/batch={batch}/trial={trial}"


def run_files(name, backends=None):
    """Paths of ``name`` (e.g. metrics.json) in every configured run of ``backends``."""
    return [
        f"results/runs/backend={r['backend']}/lr={r['lr']}/batch={r['batch']}/trial={r['trial']}/{name}"
        for r in cfg.grid(config, backends)
    ]


def backend_runs(wildcards):
    """Inputs of one backend's aggregation: its runs only, never another backend's."""
    return {
        "metrics": run_files("metrics.json", [wildcards.backend]),
        "histories": run_files("history.csv", [wildcards.backend]),
    }


def split_files(wildcards):
    """The raw IDX pair behind one split's parquet file."""
    images, labels = datasets.SPLITS[wildcards.split]
    raw = f"results/data/{wildcards.dataset}/raw"
    return {"images": f"{raw}/{images}", "labels": f"{raw}/{labels}"}


def all_targets():
    return ["results/data/mnist/train.parquet", "results/data/mnist/test.parquet"]
