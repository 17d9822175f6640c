"""Other seeds of a published run: their test errors in its JSON under ``extra.seeds``.

One seed's weights ship; the others' numbers go beside them: ``errors`` (seed → test error %) and, with
two or more, ``mean`` and sample ``std``. Written by the promote scripts, read by the results scripts.
"""

from __future__ import annotations

import statistics


def seed_summary(errors: dict[str, float]) -> dict:
    """``extra.seeds``: ``errors`` and, with two or more seeds, their ``mean`` and sample ``std``."""
    seeds: dict = {"errors": errors}
    if len(errors) >= 2:
        seeds["mean"] = round(statistics.mean(errors.values()), 3)
        seeds["std"] = round(statistics.stdev(errors.values()), 3)
    return seeds


def same_recipe(a: dict, b: dict) -> bool:
    """Two runs' ``train_args`` agree on everything but the seed (same model, recipe and budget)."""
    strip = lambda m: {k: v for k, v in (m.get("train_args") or {}).items() if k != "seed"}  # noqa: E731
    return bool(strip(a)) and strip(a) == strip(b)


def seed_stats(meta: dict | None) -> tuple[float, float, int] | None:
    """(mean, sample std, n) of a JSON's ``extra.seeds`` when it holds n ≥ 2 seeds; None otherwise."""
    extra = (meta or {}).get("extra")
    seeds = extra.get("seeds") if isinstance(extra, dict) else None
    if not isinstance(seeds, dict):
        return None
    errors, mean, std = seeds.get("errors"), seeds.get("mean"), seeds.get("std")
    if (not isinstance(errors, dict) or len(errors) < 2 or not isinstance(mean, (int, float))
            or not isinstance(std, (int, float))):
        return None
    return float(mean), float(std), len(errors)
