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


def with_other_seeds(meta: dict, others: dict[str, dict | None]) -> dict | None:
    """``meta`` (a published run's JSON) with the test errors of ``others`` (seed → JSON, None if absent) that
    are finished and of the same recipe merged into its ``extra.seeds``; None when that adds nothing."""
    if not isinstance(meta.get("test_error"), (int, float)):
        return None
    errors = {str((meta.get("train_args") or {}).get("seed", 0)): float(meta["test_error"])}
    for seed, other in others.items():
        if (other is not None and other.get("final") and same_recipe(meta, other)
                and isinstance(other.get("test_error"), (int, float))):
            errors[seed] = float(other["test_error"])
    old = ((meta.get("extra") or {}).get("seeds") or {}).get("errors") or {}
    errors = {**old, **errors}
    if len(errors) < 2 or errors == old:
        return None
    return {**meta, "extra": {**(meta.get("extra") or {}), "seeds": seed_summary(errors)}}
