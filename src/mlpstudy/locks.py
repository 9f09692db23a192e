"""Clear Snakemake's directory locks left behind by a killed run.

Snakemake locks the working directory while it runs and removes the lock when it ends;
a ``kill -9`` leaves the lock behind and the next run refuses to start until someone
runs ``--unlock``. This removes the lock only when no other live process in this
working directory is a Snakemake process (or one of its jobs), so two concurrent
runs still exclude each other.
"""

from __future__ import annotations

import os
from pathlib import Path


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as fh:
                pid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def other_snakemake_processes(workdir: str | os.PathLike) -> list[int]:
    """PIDs of live processes (not us or our ancestors) running Snakemake in ``workdir``."""
    workdir = os.path.realpath(workdir)
    mine, found = _ancestors(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            if os.path.realpath(entry / "cwd") != workdir:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"snakemake" in cmdline:
            found.append(int(entry.name))
    return found


def clear_stale_locks(workdir: str | os.PathLike = ".") -> list[Path]:
    """Remove ``.snakemake/locks/*`` if no other Snakemake runs here; return what was removed."""
    lock_dir = Path(workdir) / ".snakemake" / "locks"
    if not Path("/proc").is_dir() or not lock_dir.is_dir():
        return []
    locks = sorted(lock_dir.glob("*.lock"))
    if not locks or other_snakemake_processes(workdir):
        return []
    for lock in locks:
        lock.unlink(missing_ok=True)
    return locks
