"""Memory the same way in every run: huge-page-aligned arrays, advised for huge pages.

Where an array's pages lie decides how fast a loop over it runs: with 4 KiB pages its
physical pages (and so the cache sets its lines map to, and the TLB entries it needs)
are whatever the kernel had free when the process touched it, different in every
process; a 2 MiB transparent huge page is physically contiguous, so an array that starts
on a huge-page boundary and is backed by huge pages maps to the caches the same way in
every run. On machines where transparent huge pages are ``madvise`` (the common
default), only memory that asked for them (``madvise(MADV_HUGEPAGE)``) gets them.

- :func:`empty`: an uninitialised array in anonymous memory of its own, starting on a
  huge-page boundary and advised for huge pages (the training data, ``dataset.load``;
  the NumPy backend's parameters and buffers).
- :func:`allocator_env`: the environment that makes glibc's ``malloc`` advise its large
  allocations for huge pages too (``glibc.malloc.hugetlb=1``): the frameworks' own
  tensors (TensorFlow's per-epoch gathers, PyTorch's, JAX's buffers) come from there.
  It must be in the environment when the process starts; the workflow sets it for its
  jobs (``workflow/rules/common.smk``).
- :func:`hugepage_share`, :func:`process_hugepage_share`: what the kernel actually gave
  (``/proc/self/smaps``), recorded with every run because the workflow cannot force it
  (the kernel falls back to 4 KiB pages when no huge page is free).
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

THP_DIR = Path("/sys/kernel/mm/transparent_hugepage")
#: The glibc tunable that makes malloc advise the memory it maps for huge pages.
MALLOC_TUNABLE = "glibc.malloc.hugetlb=1"
_FALLBACK_HUGE_PAGE = 2 << 20


def huge_page_size() -> int:
    """The transparent huge page size (2 MiB on x86-64), or 2 MiB if unknown."""
    try:
        return int((THP_DIR / "hpage_pmd_size").read_text())
    except (OSError, ValueError):
        return _FALLBACK_HUGE_PAGE


def thp_mode() -> str | None:
    """The kernel's transparent huge page policy: ``always``, ``madvise``, ``never``,
    or None where it has none (not Linux, THP compiled out)."""
    try:
        text = (THP_DIR / "enabled").read_text()
    except OSError:
        return None
    for word in text.split():
        if word.startswith("["):
            return word.strip("[]")
    return None


def empty(shape, dtype=np.float32) -> np.ndarray:
    """An uninitialised C-contiguous array in a mapping of its own that starts on a
    huge-page boundary, advised for huge pages (``MADV_HUGEPAGE``, where the platform has
    it). The mapping is freed with the last array viewing it; its pages are zero until
    written and are touched only when used."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    page = huge_page_size()
    size = max(page, -(-nbytes // page) * page)  # whole huge pages
    area = mmap.mmap(-1, size + page, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    raw = np.frombuffer(area, np.uint8)
    offset = -raw.ctypes.data % page
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            area.madvise(mmap.MADV_HUGEPAGE, offset, size)
        except OSError:  # a kernel without THP: ordinary pages
            pass
    return raw[offset : offset + nbytes].view(dtype).reshape(shape)


def allocator_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """``{"GLIBC_TUNABLES": ...}`` with :data:`MALLOC_TUNABLE` added to what is there
    (tunables the user set are kept; their own ``glibc.malloc.hugetlb`` wins)."""
    environ = os.environ if environ is None else environ
    current = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb=" in current:
        return {"GLIBC_TUNABLES": current}
    return {"GLIBC_TUNABLES": ":".join(t for t in (current, MALLOC_TUNABLE) if t)}


def malloc_hugetlb(environ: dict[str, str] | None = None) -> str | None:
    """The ``glibc.malloc.hugetlb`` value this process was started with, if any."""
    environ = os.environ if environ is None else environ
    for tunable in environ.get("GLIBC_TUNABLES", "").split(":"):
        name, _, value = tunable.partition("=")
        if name == "glibc.malloc.hugetlb":
            return value
    return None


def _smaps_entries(path: str | os.PathLike):
    """(start, end, {field: kB}) for every mapping of ``path`` (an smaps file)."""
    start = end = None
    fields: dict[str, int] = {}
    with open(path) as fh:
        for line in fh:
            head = line.split(None, 1)[0]
            if not head.endswith(":"):
                if start is not None:
                    yield start, end, fields
                low, _, high = head.partition("-")
                start, end, fields = int(low, 16), int(high, 16), {}
            elif head in ("Rss:", "AnonHugePages:"):
                fields[head[:-1]] = int(line.split()[1])
    if start is not None:
        yield start, end, fields


def hugepage_share(
    array: np.ndarray, smaps: str | os.PathLike = "/proc/self/smaps"
) -> float | None:
    """The share of ``array``'s resident memory that is on transparent huge pages
    (AnonHugePages / Rss of the mappings it spans), or None where smaps is not readable
    or nothing of it is resident. A mapping partly outside the array counts whole."""
    if not array.nbytes:
        return None
    low = array.__array_interface__["data"][0]
    high = low + array.nbytes
    rss = huge = 0
    try:
        for start, end, fields in _smaps_entries(smaps):
            if start < high and end > low:
                rss += fields.get("Rss", 0)
                huge += fields.get("AnonHugePages", 0)
    except OSError:
        return None
    return huge / rss if rss else None


def process_hugepage_share(
    rollup: str | os.PathLike = "/proc/self/smaps_rollup",
) -> float | None:
    """The share of this process's anonymous memory on transparent huge pages
    (AnonHugePages / Anonymous of ``smaps_rollup``), or None where it is not readable."""
    values = {}
    try:
        with open(rollup) as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                if name in ("Anonymous", "AnonHugePages"):
                    values[name] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return None
    anonymous = values.get("Anonymous")
    return values.get("AnonHugePages", 0) / anonymous if anonymous else None
