# Configuration, target lists and wildcard constraints shared by every stage.
# The one pinned software stack of every step (used with --sdm conda).
ENV = "../../environment.yml"
import os
import sys

from snakemake.exceptions import WorkflowError

# The workflow's own code (src/mlpstudy) is importable here and in every job, local or
# on a cluster, whether or not it was pip-installed into the environment.
SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
)

try:
    from mlpstudy import config as cfg
    from mlpstudy import datasets, locks, machine
except ImportError as exc:
    raise WorkflowError(
        f"cannot import the workflow's code from {SRC} ({exc}); are the dependencies "
        "installed? Run `make venv`, or see README for conda"
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


def backend_options(wildcards):
    """The backend-specific knobs of the config (only TensorFlow has any so far)."""
    return dict(config.get(wildcards.backend, {}))


def expected_sweep(wildcards):
    """What one backend's aggregation checks its runs against."""
    return {
        "backend": wildcards.backend,
        "learning_rates": config["learning_rates"],
        "batch_sizes": config["batch_sizes"],
        "trials": config["trials"],
        "epochs": config["epochs"],
        "seed": config["seed"],
        "shared_start": config["shared_start"],
        "options": backend_options(wildcards),
    }


def threads_of(wildcards, threads):
    return threads


# What a training job needs, measured on the full default grid on the real MNIST
# (2026-11-25, AMD EPYC, one thread per job; `benchmarks/bench_workflow.py report`
# prints these from any run's table): peak RSS of the whole job (Snakemake's benchmark
# file), slowest seconds per epoch (batch 32), and job start-up + teardown (interpreter,
# framework import, data loading). A backend not measured yet gets TensorFlow's figures.
MEASURED = {
    "numpy": {"peak_mb": 404, "epoch_s": 0.72, "startup_s": 2.4},
    "tensorflow": {"peak_mb": 1533, "epoch_s": 4.76, "startup_s": 10.0},
}
MEM_HEADROOM = 1.3  # peak RSS varies little between runs (< 5 % here)
TIME_HEADROOM = 3.0  # cluster nodes may be slower than the machine measured
MIN_RUNTIME_MIN = 5


def measured(backend):
    return MEASURED.get(backend, MEASURED["tensorflow"])


def train_mem_mb(wildcards, attempt):
    return int(measured(wildcards.backend)["peak_mb"] * MEM_HEADROOM * attempt)


def train_runtime_min(wildcards, attempt):
    m = measured(wildcards.backend)
    seconds = (m["startup_s"] + m["epoch_s"] * config["epochs"]) * TIME_HEADROOM
    return max(MIN_RUNTIME_MIN, int(seconds / 60) + 1) * attempt


# Snakemake schedules local jobs by --cores (logical CPUs); training jobs also claim
# `physical_cores`, capped here at the physical core count unless the user sets it
# (--resources physical_cores=N), so concurrent runs never share a core.
if workflow.is_main_process and workflow.local_exec:
    if "physical_cores" not in workflow.global_resources:
        workflow.register_resource("physical_cores", machine.physical_cores())


PER_BACKEND_FIGURES = ["speed_accuracy", "accuracy_heatmap", "time_heatmap"]
CROSS_BACKEND_FIGURES = [
    "accuracy_vs_batch_size",
    "accuracy_vs_learning_rate",
    "time_vs_batch_size",
    "time_vs_learning_rate",
    "loss_curves",
]


def figure_targets():
    """The study's 11 figures (more with more backends): one PNG per rule."""
    return expand(
        "results/figures/{figure}_{backend}.png",
        figure=PER_BACKEND_FIGURES,
        backend=BACKENDS,
    ) + expand("results/figures/{figure}.png", figure=CROSS_BACKEND_FIGURES)


def all_targets():
    return [
        "results/tf_vs_np.csv",
        "results/histories.parquet",
        *figure_targets(),
        "results/comparison.csv",
        "results/claims.md",
        "results/claims.html",
    ]
