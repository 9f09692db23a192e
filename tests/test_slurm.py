"""The SLURM profile against a real single-node SLURM cluster started on this machine.

`tests/slurm/cluster.py` installs Debian's slurmctld/slurmd/munge when missing and
starts the daemons for this module; they are stopped by pid afterwards, whatever the
outcome. Where SLURM cannot be had (not root, no apt-get), every test here is skipped
with the reason.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from e2e_utils import BIN, REPO, make_tiny_workdir, snakemake
from slurm import cluster as slurm_cluster

from mlpstudy import aggregate, runs

pytestmark = pytest.mark.slurm

PROFILE = REPO / "profiles" / "slurm"
# Only for speed here: a tiny job finishes in seconds, so poll squeue after 1 s
# instead of the plugin's 40 s; keep successful jobs' SLURM logs to check them.
FAST = ("--slurm-init-seconds-before-status-checks", "1", "--slurm-keep-successful-logs")
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    # pytest tears fixtures down on ^C, not on SIGTERM (a CI timeout): turn it into one.
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        started = slurm_cluster.start(state)
        if isinstance(started, str):
            pytest.skip(f"no SLURM cluster: {started}")
        yield started
    finally:
        try:
            slurm_cluster.stop(state)
        finally:
            signal.signal(signal.SIGTERM, previous)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture
def slurm_env(cluster, monkeypatch):
    """SLURM_CONF and the cluster's srun first on PATH, for Snakemake and its jobs."""
    for name in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(name, cluster.env[name])
    return cluster.env


def squeue_jobs(env) -> dict[str, dict[str, str]]:
    """Every job slurmctld still knows (finished ones for MinJobAge): id -> fields."""
    out = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%i|%T|%N|%j"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    jobs = {}
    for line in out.splitlines():
        job_id, state, node, name = line.split("|")
        jobs[job_id] = {"state": state, "node": node, "name": name}
    return jobs


def scontrol_job(job_id: str, env) -> dict[str, str]:
    out = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, env=env, check=True
    ).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


# --------------------------------------------------------------- the profile itself

TOY_SNAKEFILE = """\
localrules: gather


def threads_of(wildcards):
    return {threads} if wildcards.i == "1" else 1


rule gather:
    input: expand("out/{{i}}.txt", i=[1, 2, 3])
    output: "all.txt"
    shell: "cat {{input}} > {{output}}; echo gathered_in=${{{{SLURM_JOB_ID:-local}}}} >> {{output}}"


rule work:
    output: "out/{{i}}.txt"
    threads: threads_of
    resources: mem_mb=300, runtime=7
    shell:
        "test ! -e fail.{{wildcards.i}} || {{{{ echo planned failure of {{wildcards.i}} >&2; exit 3; }}}}; "
        "echo i={{wildcards.i}} job=${{{{SLURM_JOB_ID:-none}}}} node=${{{{SLURMD_NODENAME:-none}}}} > {{output}}"
"""


def run_toy(workdir: Path, env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "snakemake"), "--profile", str(PROFILE), *FAST, *args],
        check=False,
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def submissions(proc) -> dict[str, Path]:
    """SLURM job id -> SLURM log path, as Snakemake reported each submission."""
    return {m[1]: Path(m[2]) for m in SUBMITTED.finditer(proc.stdout + proc.stderr)}


def test_profile_runs_each_job_in_slurm_reports_failure_log_and_resumes(cluster, tmp_path):
    """A throwaway workflow: `work` jobs go to SLURM, the `localrules` one stays here."""
    threads = min(2, int(scontrol_node(cluster)["CPUTot"]))
    (tmp_path / "Snakefile").write_text(TOY_SNAKEFILE.format(threads=threads))
    (tmp_path / "fail.2").touch()
    first = run_toy(tmp_path, cluster.env, "--keep-going")
    output = first.stdout + first.stderr
    assert first.returncode != 0 and "Error in rule work" in output, output[-6000:]

    # Each of the three `work` jobs was one SLURM job, and nothing else was submitted.
    submitted = submissions(first)
    assert sorted(log.parent.name for log in submitted.values()) == ["1", "2", "3"], output
    known = squeue_jobs(cluster.env)
    for job_id, log in submitted.items():
        i = log.parent.name
        # .snakemake/slurm_logs/rule_<rule>/<wildcard values>/<SLURM job id>.log
        assert log == tmp_path / f".snakemake/slurm_logs/rule_work/{i}/{job_id}.log"
        assert log.is_file() and f"wildcards: i={i}" in log.read_text()
        assert known[job_id]["node"] == cluster.node
        assert known[job_id]["state"] == ("FAILED" if i == "2" else "COMPLETED")
        # The rule's threads, mem_mb (MB) and runtime (minutes) reached sbatch.
        job = scontrol_job(job_id, cluster.env)
        assert job["NumCPUs"] == str(threads if i == "1" else 1)
        assert job["MinMemoryNode"] == "300M" and job["TimeLimit"] == "00:07:00"
        if i != "2":  # its output was written inside its own SLURM job
            fields = dict(kv.split("=") for kv in (tmp_path / f"out/{i}.txt").read_text().split())
            assert fields == {"i": i, "job": job_id, "node": cluster.node}

    # The failure names the SLURM log that holds the job's own error message.
    failed_log = next(log for log in submitted.values() if log.parent.name == "2")
    assert f"log: {failed_log}" in output
    assert "planned failure of 2" in failed_log.read_text()
    assert not (tmp_path / "out/2.txt").exists() and not (tmp_path / "all.txt").exists()

    # Rerunning the same command redoes only the failed job, then the local rule.
    (tmp_path / "fail.2").unlink()
    second = run_toy(tmp_path, cluster.env, "--keep-going")
    assert second.returncode == 0, (second.stdout + second.stderr)[-6000:]
    assert [log.parent.name for log in submissions(second).values()] == ["2"]
    lines = (tmp_path / "all.txt").read_text().splitlines()
    assert len(lines) == 4 and lines[-1] == "gathered_in=local"


def scontrol_node(cluster) -> dict[str, str]:
    out = subprocess.run(
        ["scontrol", "show", "node", cluster.node],
        capture_output=True,
        text=True,
        env=cluster.env,
        check=True,
    ).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


# --------------------------------------------------------------- the real workflow

# One run per backend: 2 training jobs, at once on a 2-CPU node.
SWEEP = {"learning_rates": [0.1], "batch_sizes": [64], "trials": 1}
RUNS = 2
TABLE = "results/tf_vs_np.csv"
# Columns that depend on where and when a run happened, not on what it computed.
NOT_DETERMINISTIC = re.compile(
    r"(_s|_mb|_ratio|_share|_mhz)$|^(hostname|slurm_job_id|slurm_node|pinned_cpus|"
    r"overlapping_runs|contended|timing_attempts|major_faults)$"
)


def run_environment(metrics_path: Path) -> dict:
    metrics = json.loads(metrics_path.read_text())
    return {**metrics, **metrics.get("environment", {})}


def test_tiny_sweep_through_slurm_profile_matches_a_local_run(cluster, slurm_env, tmp_path):
    on_slurm = make_tiny_workdir(tmp_path / "slurm", **SWEEP)
    here = make_tiny_workdir(tmp_path / "local", **SWEEP)

    # the table: every run (SLURM's part) and their aggregation; the figures and
    # statistics after it run where Snakemake runs either way, and other tests draw them
    proc = snakemake(on_slurm, TABLE, "--profile", str(PROFILE), *FAST)
    submitted = submissions(proc)
    local = snakemake(here, TABLE)
    assert not submissions(local)

    metrics = sorted((on_slurm / "results/runs").rglob("metrics.json"))
    assert len(metrics) == RUNS
    known = squeue_jobs(cluster.env)
    logs = on_slurm / ".snakemake/slurm_logs"
    for path in metrics:
        env = run_environment(path)
        job_id = env.get("slurm_job_id")
        assert job_id in submitted, f"{path}: slurm_job_id {job_id!r} was not submitted by us"
        assert env.get("slurm_node") == cluster.node
        assert known[job_id]["state"] == "COMPLETED"
        # SLURM's log of this very run: rule_train/<the run's axes, joined by _>/<job id>.log
        run = dict(part.split("=", 1) for part in path.parent.parts if "=" in part)
        wildcards = "_".join(run[axis.name] for axis in runs.AXES)
        assert submitted[job_id] == logs / "rule_train" / wildcards / f"{job_id}.log"
        assert "rule train:" in submitted[job_id].read_text()
    # Only training goes to SLURM; data, aggregation and figures run where Snakemake runs.
    assert {p.name for p in logs.iterdir()} == {"rule_train"}
    assert len(submitted) == RUNS

    for path in (here / "results/runs").rglob("metrics.json"):
        env = run_environment(path)
        assert env.get("slurm_job_id") is None and env.get("slurm_node") is None

    slurm_table = aggregate.read_table(on_slurm / TABLE)
    local_table = aggregate.read_table(here / TABLE)
    assert len(slurm_table) == RUNS and list(slurm_table.columns) == list(local_table.columns)
    assert slurm_table["slurm_job_id"].astype(str).isin(submitted).all()
    assert slurm_table["slurm_node"].eq(cluster.node).all()
    assert local_table["slurm_job_id"].isna().all()
    same = [c for c in local_table.columns if not NOT_DETERMINISTIC.search(c)]
    keys = runs.KEY_COLUMNS
    pd.testing.assert_frame_equal(
        slurm_table[same].sort_values(keys).reset_index(drop=True),
        local_table[same].sort_values(keys).reset_index(drop=True),
        check_exact=True,
    )
