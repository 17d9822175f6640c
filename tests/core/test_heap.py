"""The training processes' heap setting: freed large CPU buffers stay in the heap for reuse."""

from __future__ import annotations

import ctypes
import ctypes.util

import pytest
import torch

from stn_core.train.heap import _mallopt, keep_freed_memory


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def _free_heap_bytes() -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc older than 2.33 (no mallinfo2) cannot report free heap bytes")
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().fordblks)


def _free_after_big_buffer() -> int:
    x = torch.empty(64 << 20, dtype=torch.uint8)
    x.fill_(1)  # touch the pages
    del x
    return _free_heap_bytes()


@pytest.mark.skipif(_mallopt() is None, reason="not glibc: the setting is a documented no-op there")
def test_a_freed_64_mib_buffer_stays_in_the_heap_only_while_kept():
    try:
        assert keep_freed_memory(False)
        assert _free_after_big_buffer() < 32 << 20  # default glibc: mmapped and given back
        assert keep_freed_memory(True)
        assert _free_after_big_buffer() >= 64 << 20  # kept: free in the heap, ready for the next step
    finally:
        keep_freed_memory(False)
