"""Shared timing helper of the benchmarks."""

from __future__ import annotations

import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stn_core.fileio import atomic_write_bytes  # noqa: E402


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 3, device: torch.device | None = None) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` calls after ``warmup`` calls.

    On CUDA the device is synchronised around every call so the time covers the kernels."""
    cuda = device is not None and device.type == "cuda"
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def interleaved_median_ms(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 3,
                          device: torch.device | None = None) -> dict[str, float]:
    """Median ms of each function, timed round-robin (one call of each per round) so that
    load from other processes falls on all of them alike and their ratios stay fair."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(warmup + repeats):
        for k, fn in fns.items():
            t = median_ms(fn, 1, warmup=0, device=device)
            if r >= warmup:
                times[k].append(t)
    return {k: statistics.median(v) for k, v in times.items()}


def command_footer(script: str, t_start: float, load0: float) -> str:
    """A report's last line: the command that made it (``script`` and this process's arguments), when, how long
    since ``t_start`` (``time.perf_counter``), and the load average at the start (``load0``) and now."""
    cmd = "python " + shlex.join([script] + sys.argv[1:])
    return (f"Command: `{cmd}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{time.perf_counter() - t_start:.0f} s, load average {load0:.2f} at the start, "
            f"{os.getloadavg()[0]:.2f} at the end.")


def write_report(path: str | Path, lines: list[str]) -> None:
    """Write a results table atomically (``stn_core.fileio``) and say where it went."""
    atomic_write_bytes(Path(path), ("\n".join(lines) + "\n").encode("utf-8"))
    print(f"wrote {path}")
