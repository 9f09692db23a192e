"""Huge-page-aligned, advised memory (mlpstudy.memory) and what the kernel made of it.

Whether a huge page is granted depends on the kernel's policy and on free memory, so the
advice itself is checked where it shows (the mapping's ``hg`` flag in smaps), and the
coverage only where the kernel has transparent huge pages at all.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from synthetic import make_split, write_idx_gz

from mlpstudy import dataset, memory

THP = memory.thp_mode()
needs_thp = pytest.mark.skipif(
    THP in (None, "never"), reason=f"no transparent huge pages here (policy {THP})"
)


def vm_flags(array: np.ndarray) -> set[str]:
    """The VmFlags of the mapping that holds ``array``'s first byte."""
    address = array.__array_interface__["data"][0]
    inside = False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            head = line.split(None, 1)[0]
            if not head.endswith(":"):
                low, _, high = head.partition("-")
                inside = int(low, 16) <= address < int(high, 16)
            elif inside and head == "VmFlags:":
                return set(line.split()[1:])
    raise AssertionError("no mapping holds the array")


def test_empty_is_huge_page_aligned_contiguous_and_of_the_dtype():
    a = memory.empty((1000, 784), np.float32)
    assert a.shape == (1000, 784) and a.dtype == np.float32 and a.flags.c_contiguous
    assert a.flags.writeable and a.ctypes.data % memory.huge_page_size() == 0
    a[...] = 1.5
    assert float(a.sum()) == 1.5 * a.size
    assert memory.empty(10, np.int64).shape == (10,)


@needs_thp
def test_the_advice_is_applied_and_the_kernel_backs_it_with_huge_pages():
    a = memory.empty(8 * memory.huge_page_size() // 4, np.float32)  # 8 huge pages
    assert "hg" in vm_flags(a)  # madvise(MADV_HUGEPAGE) took effect on the mapping
    a[...] = 1.0  # touch every page
    share = memory.hugepage_share(a)
    if not share:
        pytest.skip("the kernel granted no huge page now (memory fragmented?)")
    assert share > 0.5


@needs_thp
def test_the_training_data_is_loaded_into_advised_huge_page_aligned_memory(tmp_path):
    x, y = make_split(64, 1)
    images, labels = write_idx_gz(tmp_path / "i.gz", x), write_idx_gz(tmp_path / "l.gz", y)
    dataset.write_split(images, labels, tmp_path / "train.parquet")
    features, _ = dataset.load(tmp_path / "train.parquet")
    assert features.ctypes.data % memory.huge_page_size() == 0 and "hg" in vm_flags(features)


class Span:
    """Stands for an array at ``address`` of ``nbytes`` (only what hugepage_share reads)."""

    def __init__(self, address: int, nbytes: int):
        self.__array_interface__ = {"data": (address, False)}
        self.nbytes = nbytes


def test_hugepage_shares_are_read_from_smaps(tmp_path):
    smaps = tmp_path / "smaps"
    smaps.write_text(
        textwrap.dedent(
            """\
            10000000-10400000 rw-p 00000000 00:00 0
            Rss:                4096 kB
            AnonHugePages:      2048 kB
            VmFlags: rd wr mr mw me ac hg
            10400000-10500000 rw-p 00000000 00:00 0
            Rss:                1024 kB
            AnonHugePages:         0 kB
            """
        )
    )
    # both mappings, counted whole; then the second one only
    assert memory.hugepage_share(Span(0x10000000, 0x500000), smaps) == pytest.approx(0.4)
    assert memory.hugepage_share(Span(0x10400000, 4096), smaps) == 0.0
    assert memory.hugepage_share(np.zeros(1), tmp_path / "missing") is None
    rollup = tmp_path / "rollup"
    rollup.write_text("Rss: 900 kB\nAnonymous:   800 kB\nAnonHugePages:   600 kB\n")
    assert memory.process_hugepage_share(rollup) == 0.75
    assert memory.process_hugepage_share(tmp_path / "missing") is None


def test_the_malloc_tunable_is_added_to_what_the_user_set():
    assert memory.allocator_env({}) == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    assert memory.allocator_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}) == {
        "GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    }
    own = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}
    assert memory.allocator_env(own) == own and memory.malloc_hugetlb(own) == "0"
    assert memory.malloc_hugetlb({}) is None


MALLOC = """
import ctypes, sys
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
address = libc.malloc(64 << 20)  # a large allocation: glibc maps it with mmap
with open("/proc/self/smaps") as fh:
    inside = False
    for line in fh:
        head = line.split(None, 1)[0]
        if not head.endswith(":"):
            low, _, high = head.partition("-")
            inside = int(low, 16) <= address < int(high, 16)
        elif inside and head == "VmFlags:":
            print("hg" in line.split())
"""


@needs_thp
@pytest.mark.skipif(THP == "always", reason="every mapping gets huge pages: no advice to see")
def test_the_workflows_malloc_setting_advises_the_frameworks_large_allocations():
    """What the jobs get from the workflow (``allocator_env``): glibc's malloc advises
    its mmap'd chunks for huge pages; without it, it does not (glibc >= 2.35)."""

    def advised(env):
        out = subprocess.run(
            [sys.executable, "-c", MALLOC], env=env, capture_output=True, text=True, check=True
        )
        return out.stdout.strip() == "True"

    if not advised(memory.allocator_env({})):
        pytest.skip("this glibc has no glibc.malloc.hugetlb tunable (before 2.35)")
    assert not advised({})
