"""The training processes' heap setting: big CPU buffers come from the heap and stay there for reuse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stn_core.train.heap import _mallopt

ROOT = Path(__file__).resolve().parents[2]

#: Prints how many bytes glibc serves from fresh mmap regions while a 64 MiB tensor is alive, in a fresh
#: process (a process that kept memory before may serve the block from its free heap either way).
PROBE = """
import ctypes, ctypes.util, sys
import torch
from stn_core.train.heap import keep_freed_memory
class MI(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
if not hasattr(libc, "mallinfo2"):
    print("skip"); sys.exit()
libc.mallinfo2.restype = MI
if sys.argv[1] == "keep":
    assert keep_freed_memory()
before = libc.mallinfo2().hblkhd
x = torch.empty(64 << 20, dtype=torch.uint8); x.fill_(1)
print(libc.mallinfo2().hblkhd - before)
"""


def _mmapped_growth(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout.strip()
    if out == "skip":
        pytest.skip("glibc older than 2.33 (no mallinfo2) cannot report where memory comes from")
    return int(out)


@pytest.mark.skipif(_mallopt() is None, reason="not glibc: the setting is a documented no-op there")
def test_a_big_buffer_comes_from_the_heap_only_while_kept():
    """glibc's default serves a 64 MiB block (above its 32 MiB top mmap threshold) with a fresh mmap,
    unmapped on free, so a training step page-faults it in again every time; kept, it comes from the
    heap and stays there for the next step."""
    assert _mmapped_growth("default") >= 64 << 20
    assert _mmapped_growth("keep") == 0
