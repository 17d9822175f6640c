"""Shared links are user input: a seeded generator sets every query parameter a page writes to its URL
to hostile values (inf, 1e309, a superscript digit, 5,000 nines, NaN, negative, empty, text) and the page
must open with at most a friendly message, never an exception (issue: 11 of 2,148 fuzzed links crashed).

The fast default run tries ``ROUNDS`` links per page; ``STN_LAB_FUZZ_ROUNDS=N`` runs more (the full
hardening run in ``scripts/hardening_report.py`` uses it).
"""

from __future__ import annotations

import functools
import os
import random
import zlib

import pytest

from apptest_util import assert_no_exception, open_page

PAGES = ("pages/playground.py", "pages/tps.py", "pages/sampler.py", "pages/explorer.py", "pages/tour.py",
         "pages/dcn.py", "pages/cub.py", "pages/addition.py", "pages/live.py")
HOSTILE = ("inf", "-inf", "nan", "1e309", "-1e309", "²", "9" * 5000, "", "-1", "-99999999999", "0x10", "1_0",
           "abc", "mnist-99999999", "bird--1", "1,2", "1,2,3,4,5,6,7,8,9", "nan,0,0,0,1,0", "1e38,0,0,0,1e38,0",
           "0,0,0,0,0,0", "%00", "../../etc/passwd", "<script>", "2147483648", "0.0000001", "1" * 40)
ROUNDS = int(os.environ.get("STN_LAB_FUZZ_ROUNDS", "2"))


def hostile_queries(keys: list[str], seed: int, rounds: int) -> list[dict[str, str]]:
    """``rounds`` links for a page with URL parameters ``keys``: round 0 sets every key to the same hostile
    value; later rounds draw each key's value independently (seeded)."""
    rng = random.Random(seed)
    out = [{k: HOSTILE[seed % len(HOSTILE)] for k in keys}]
    out += [{k: rng.choice(HOSTILE) for k in keys} for _ in range(rounds - 1)]
    return out


@functools.lru_cache(maxsize=None)
def _keys(page: str) -> tuple[str, ...]:
    """The URL parameters ``page`` writes when opened plainly."""
    keys = tuple(sorted(open_page(page).query_params))
    assert keys, f"{page} writes no URL parameters: nothing to fuzz"
    return keys


@pytest.mark.parametrize("page,round_", [(p, r) for p in PAGES for r in range(ROUNDS)],
                         ids=[f"{p.split('/')[-1][:-3]}-{r}" for p in PAGES for r in range(ROUNDS)])
def test_hostile_link_opens_without_exception(page, round_):
    q = hostile_queries(list(_keys(page)), zlib.crc32(page.encode()), round_ + 1)[round_]
    at = open_page(page, q)  # asserts: no exception box
    assert_no_exception(at)
