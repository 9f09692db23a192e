"""Facts about the machine a job runs on: cores, CPU model, library versions, scheduler ids."""

from __future__ import annotations

import os
import platform
import socket
import sys
from importlib import metadata

from mlpstudy import memory


def physical_cores() -> int:
    """Physical cores this process's workflow may use (hyper-threads counted once; a job
    confined to the reserve core still counts the cores Snakemake could use)."""
    from mlpstudy import cores

    return len(cores.cpu_cores(cores.usable_cpus()))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: /proc/cpuinfo flags of a CPU that computes bfloat16 natively (AVX512-BF16's dot
#: products, AMX's bfloat16 tiles); without them the frameworks emulate bfloat16.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def native_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether the CPU has native bfloat16 arithmetic (any of ``BF16_FLAGS`` among its
    flags); None where ``cpuinfo`` cannot be read or lists no flags (not Linux x86)."""
    try:
        with open(cpuinfo) as fh:
            for line in fh:
                if line.startswith("flags"):
                    return bool(set(BF16_FLAGS) & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return None


def _version(*dists: str) -> str | None:
    """The version of the first of ``dists`` that is installed, else None."""
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def environment() -> dict:
    """What a run's metrics record about where it ran (SLURM ids only under SLURM).

    The library versions are those of every registered backend's distributions
    (``mlpstudy.backends.recorded_distributions``), whichever backend the run used.
    """
    from mlpstudy.backends import recorded_distributions

    env = {
        "python": platform.python_version(),
        **{key: _version(*dists) for key, dists in recorded_distributions().items()},
        "cpu_model": cpu_model(),
        "native_bfloat16": native_bfloat16(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "executable": sys.executable,
        # what decides whether the run's memory gets huge pages (mlpstudy.memory)
        "thp_enabled": memory.thp_mode(),
        "malloc_hugetlb": memory.malloc_hugetlb(),
    }
    if "SLURM_JOB_ID" in os.environ:
        env["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
        env["slurm_node"] = os.environ.get("SLURMD_NODENAME", os.environ.get("SLURM_NODELIST"))
    return env
