"""Keep freed memory in the process heap during CPU training (glibc ``mallopt``).

A training step on a CPU allocates and frees the same large activation buffers every step (the paper's
CNN on RTS: 256 × 87 × 34 × 34 values after its first convolution, 26–51 MB each). glibc serves blocks
above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and unmaps them on ``free``, so every
step page-faults its biggest buffers in again: ``torch.empty_like(x).zero_()`` of that tensor took
18 ms instead of 2.6 ms here, and a bf16 CNN step 290 ms instead of 253 ms (``results/bench-train.md``
measures it side by side). :func:`keep_freed_memory` turns ``mmap`` off for the heap (``M_MMAP_MAX``
= 0) and stops glibc from trimming freed memory back to the OS (``M_TRIM_THRESHOLD``), so a freed
buffer is reused in place. The cost: the process keeps its peak memory until it exits, which is what a
training process wants and what the app must not do — only the training CLIs call it.

No effect (returns False) off glibc (macOS, Windows, musl) or on CUDA, where PyTorch's caching
allocator already reuses device memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# glibc <malloc.h> parameter numbers and their defaults (for turning the setting off again).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
DEFAULT_MMAP_MAX = 65536
DEFAULT_THRESHOLD = 128 * 1024
#: Trim threshold while kept: 1 GiB of freed memory at the top of the heap before glibc returns any.
KEEP_TRIM_THRESHOLD = 1 << 30


@functools.lru_cache(maxsize=1)
def _mallopt():
    """glibc's ``mallopt`` or None where there is no glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        fn = libc.mallopt
        libc.gnu_get_libc_version  # glibc only (musl has no such symbol)
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def keep_freed_memory(on: bool = True) -> bool:
    """Serve large CPU buffers from the heap and keep freed ones for reuse (``on``), or restore glibc's
    default behaviour (``on=False``). True when the setting was applied."""
    fn = _mallopt()
    if fn is None:
        return False
    if on:
        ok = fn(M_MMAP_MAX, 0) and fn(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD)
    else:
        ok = (fn(M_MMAP_MAX, DEFAULT_MMAP_MAX) and fn(M_TRIM_THRESHOLD, DEFAULT_THRESHOLD)
              and fn(M_MMAP_THRESHOLD, DEFAULT_THRESHOLD))
    return bool(ok)
