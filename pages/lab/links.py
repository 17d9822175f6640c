"""One tolerant parser for the values in a page's URL (``?digit=7&angle=30``): a shared link is user
input, so every number is parsed here and anything odd — ``inf``, ``1e309``, ``²``, 5,000 digits, an
empty value — comes back as None (the page then says so and uses its default), never as an exception.
"""

from __future__ import annotations

import math
import re

#: Longest value looked at: a real link never needs more (and Python's ``int()`` refuses > 4,300 digits).
MAX_CHARS = 40
_INT_RE = re.compile(r"[+-]?[0-9]{1,18}")  # ASCII digits only: "²".isdigit() is True, int("²") fails
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


def parse_int(text: object, lo: int | None = None, hi: int | None = None) -> int | None:
    """``text`` as a whole number in ``[lo, hi]`` (bounds optional), else None. Accepts "7", "+7",
    "-3" and whole-valued decimals like "7.0"; nothing else."""
    s = str(text).strip() if text is not None else ""
    if len(s) > MAX_CHARS:
        return None
    if _INT_RE.fullmatch(s):
        v = int(s)
    else:
        f = parse_float(s)
        if f is None or f != int(f):
            return None
        v = int(f)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        return None
    return v


def parse_float(text: object, lo: float | None = None, hi: float | None = None) -> float | None:
    """``text`` as a finite number in ``[lo, hi]`` (bounds optional), else None (no "inf", "nan",
    "1e309", hex or underscores)."""
    s = str(text).strip() if text is not None else ""
    if len(s) > MAX_CHARS or not _FLOAT_RE.fullmatch(s):
        return None
    v = float(s)
    if not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
        return None
    return v


def parse_flag(text: object) -> bool:
    """"1", "true", "yes", "on" (any case) → True; anything else → False."""
    return str(text).strip().lower() in ("1", "true", "yes", "on")
