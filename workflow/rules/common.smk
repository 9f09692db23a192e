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
    from mlpstudy import cores, datasets, locks, memory, nets, order, runs
    from mlpstudy.backends import REGISTRY
    from mlpstudy.backends.base import work_mb
    from mlpstudy.figures import figure_targets
except ImportError as exc:
    raise WorkflowError(
        f"cannot import the workflow's code from {SRC} ({exc}); are the dependencies "
        "installed? Run `make venv`, or see README for conda"
    )

# Every job's malloc advises its large allocations for huge pages, so the frameworks'
# tensors are placed the same way in every run (mlpstudy.memory, docs/timing.md); glibc
# reads this when a process starts, hence here, for the jobs Snakemake starts.
os.environ.update(memory.allocator_env())


try:
    cfg.validate(
        config,
        cfg.load_schema(
            os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml"),
            config,
        ),
    )
    cfg.register_extra_datasets(config)
    cfg.check_nets(config)
    cfg.check_precisions(config)
except cfg.ConfigError as exc:
    raise WorkflowError(str(exc))

if workflow.is_main_process:
    # A killed run (kill -9) leaves Snakemake's lock behind; clear it when nothing
    # else is running here, so that rerunning the same command resumes the sweep.
    for stale in locks.clear_stale_locks(os.getcwd()):
        logger.info(f"removed stale lock {stale} (no other Snakemake runs here)")

BACKENDS = config["backends"]
# A run's identity (mlpstudy.runs.AXES) gives every path, wildcard and grid below.
RUN_DIR = runs.RUN_DIR
STUDY = runs.STUDY_DIR


wildcard_constraints:
    **runs.wildcard_constraints(config),
    split="train|test",


def run_files(name, **fixed):
    """Paths of ``name`` (e.g. metrics.json) in every configured run, narrowed by ``fixed``."""
    return [f"{runs.run_dir(r)}/{name}" for r in runs.grid(config, **fixed)]


def backend_runs(wildcards):
    """Inputs of one backend's aggregation in one study: its runs only."""
    fixed = {**runs.study_of(wildcards), "backend": wildcards.backend}
    return {
        "metrics": run_files("metrics.json", **fixed),
        "histories": run_files("history.csv", **fixed),
    }


def study_tables(wildcards):
    """The per-backend tables of one study."""
    study = runs.study_dir(wildcards)
    return {
        "tables": [f"{study}/tables/runs_{b}.csv" for b in BACKENDS],
        "histories": [f"{study}/tables/histories_{b}.parquet" for b in BACKENDS],
    }


def all_study_tables(wildcards):
    """Every study's combined tables (for the tables of all runs)."""
    dirs = [runs.study_dir(s) for s in runs.studies(config)]
    return {
        "tables": [f"{d}/runs.csv" for d in dirs],
        "histories": [f"{d}/histories.parquet" for d in dirs],
    }


def dataset_md5(wildcards):
    """The published MD5 of each of the dataset's files."""
    return datasets.md5s(wildcards.dataset)


def public_mirrors(wildcards):
    """The catalog's public mirrors of the dataset (tried after the config's)."""
    return list(datasets.get(wildcards.dataset).mirrors)


def dataset_classes(wildcards):
    return list(datasets.get(wildcards.dataset).classes)


def train_data(wildcards):
    """The parquet splits of the run's dataset."""
    return {
        split: f"results/data/{wildcards.dataset}/{split}.parquet"
        for split in ("train", "test")
    }


def train_spec(wildcards):
    """The run's TrainSpec fields: its identity, plus epochs, seed and settings from the
    config (a params: change reruns exactly the runs it affects)."""
    return runs.train_spec_kwargs(wildcards, config)


def run_threads(wildcards):
    return int(wildcards.threads)


def expected_sweep(wildcards):
    """What one backend's aggregation in one study checks its runs against."""
    fixed = {**runs.study_of(wildcards), "backend": wildcards.backend}
    return {
        "runs": [runs.key(r) for r in runs.grid(config, **fixed)],
        "spec": runs.settings(
            config, wildcards.optimizer, wildcards.backend, wildcards.regularization
        ),
    }


# What a training job needs, measured per backend (mlpstudy.backends.REGISTRY, with
# the date and machine): peak RSS of the whole job, slowest seconds per epoch (batch 32),
# and job start-up + teardown.
MEM_HEADROOM = 1.3  # peak RSS varies little between runs (< 5 % here)
TIME_HEADROOM = 3.0  # cluster nodes may be slower than the machine measured
MIN_RUNTIME_MIN = 5


# Those were measured on the study's MLP; another net scales them by its own shapes
# (mlpstudy.nets): the epoch by its FLOPs per image (never below the MLP's, whose steps
# are overhead), the memory by what a step or an evaluation chunk of it holds at once
# (mlpstudy.backends.base.work_mb).
MLP = runs.net_of(config, nets.DEFAULT)


def _work(wildcards):
    """(FLOPs ratio to the MLP, MB this net holds at once) for the run's net."""
    net = runs.net_of(config, wildcards.net)
    dataset = datasets.get(wildcards.dataset)
    shape = dataset.image_shape
    ratio = sum(net.flops(shape)) / sum(MLP.flops(shape))
    return max(1.0, ratio), work_mb(net, shape, int(wildcards.batch), dataset.n_train)


def train_mem_mb(wildcards, attempt):
    peak = REGISTRY[wildcards.backend].measured.peak_mb + _work(wildcards)[1]
    return int(peak * MEM_HEADROOM * attempt)


def train_runtime_min(wildcards, attempt):
    m = REGISTRY[wildcards.backend].measured
    epoch_s = m.epoch_s * _work(wildcards)[0]
    seconds = (m.startup_s + epoch_s * config["epochs"]) * TIME_HEADROOM
    return max(MIN_RUNTIME_MIN, int(seconds / 60) + 1) * attempt


# Honest timings (mlpstudy.cores, docs/timing.md). Training jobs claim `training_slots`
# (their threads; in strict mode all of them when a run needs the reserve core too); the
# capacity is this machine's cores. In strict mode Snakemake pins itself to the reserve
# core, so every job it starts begins there (light jobs; training jobs until their timed
# loop moves to its own dedicated cores), and one job prepares while the others train;
# a job's untimed work also borrows a dedicated core while no timed loop wants it.
TIMING = config["timing"]
if workflow.is_main_process and workflow.local_exec:
    if "training_slots" not in workflow.global_resources:
        workflow.register_resource("training_slots", cores.training_slots(TIMING))
    reserve = cores.confine_main_process(TIMING)
    if reserve:
        logger.info(
            f"strict timing: Snakemake and its light jobs on CPU {cores.format_cpus(reserve)}, "
            "each timed training loop on cores of its own"
        )


def training_slots(wildcards, threads):
    return cores.slots_claimed(threads, TIMING)


# Training jobs start in a seeded order, blocked by trial, cells shuffled within a
# block, a cell's backends back to back (mlpstudy.order): Snakemake follows priority.
TRAIN_PRIORITY = order.priorities(runs.grid(config), config["seed"], key=runs.run_dir)


def train_priority(wildcards):
    return TRAIN_PRIORITY.get(runs.run_dir(wildcards), 0)


def study_targets(study):
    """Everything one study produces: its tables, figures, statistics and claims."""
    d = runs.study_dir(study)
    return [
        f"{d}/runs.csv",
        f"{d}/histories.parquet",
        *figure_targets(d, BACKENDS),
        f"{d}/comparison.csv",
        f"{d}/claims.md",
        f"{d}/claims.html",
    ]


def all_targets():
    return [
        "results/tf_vs_np.csv",
        "results/histories.parquet",
        *(t for study in runs.studies(config) for t in study_targets(study)),
        "results/overview.csv",
        "results/figures/overview.png",
        *starts_targets(),
    ]


def starts_targets():
    """Shared against independent starts: only when the config has both."""
    if {"shared", "independent"} <= set(config["starts"]):
        return ["results/starts.md", "results/starts.html"]
    return []
