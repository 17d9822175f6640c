"""Two models on the same test set: which errors differ, and whether the difference is beyond chance.

McNemar's exact test: only the test items one model gets right and the other wrong carry information;
under "the models are equally good" each such item is a fair coin, so the count of one side is
Binomial(a_only + b_only, 1/2) and the two-sided p-value is twice its smaller tail (at most 1).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class PairedComparison(NamedTuple):
    """``n`` test items; ``a_only`` / ``b_only``: right by A (B) alone; ``p_value``: McNemar's exact,
    two-sided."""

    n: int
    a_only: int
    b_only: int
    p_value: float


def binomial_two_sided(k: int, n: int) -> float:
    """Two-sided exact p of ``k`` heads in ``n`` fair tosses: 2 × the smaller tail, at most 1 (1 when n = 0)."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / (1 << n)   # exact integers: no overflow at large n
    return min(1.0, 2.0 * tail)


def mcnemar(correct_a: torch.Tensor, correct_b: torch.Tensor) -> PairedComparison:
    """``correct_a``, ``correct_b``: bool ``(n,)``, whether each model got each test item right."""
    if correct_a.shape != correct_b.shape or correct_a.dim() != 1:
        raise ValueError(f"need two (n,) masks of one shape, got {tuple(correct_a.shape)} and {tuple(correct_b.shape)}")
    a, b = correct_a.bool(), correct_b.bool()
    a_only, b_only = int((a & ~b).sum()), int((b & ~a).sum())
    return PairedComparison(int(a.numel()), a_only, b_only, binomial_two_sided(a_only, a_only + b_only))
