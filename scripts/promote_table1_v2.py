"""Promote finished Table 1 v2 runs from the staging folder into checkpoints/ (issue #17).

Usage: python scripts/promote_table1_v2.py [--from runs/table1-v2] [--to checkpoints] [--tasks rts ...] [--dry-run]

For every cell ``mnist_<task>_<model>`` whose seed-0 run is final in the staging folder
(``scripts/train_table1.py --recipe v2``), this copies its weights (``.safetensors``; never the
optimiser state ``.train.safetensors``) and its JSON into ``--to``, with the other seeds' numbers
added to the JSON under ``extra.seeds``: ``errors`` (seed → test error %, finished seeds only) and,
with two or more, ``mean`` and ``std`` (sample standard deviation). Unfinished cells are listed and left
alone, except that a cell promoted earlier (its seed 0 no longer staged) gets the staged other seeds of
the same recipe added to its JSON. ``--tasks`` limits it to those columns (a column is promoted whole, and a column whose data
generator changes lands with that change). Files are written atomically, the JSON last, and the copy is checked by loading it
(``stn_core.checkpoints.load_model``). Afterwards run ``scripts/hash_checkpoints.py`` (weights
SHA-256 for checkpoints that lack it) and ``scripts/make_table1.py`` (results/table1.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from train_queue import read_meta  # noqa: E402
from train_table1 import MODELS, V2_OUT_DIR, stem_name  # noqa: E402

from stn_core.checkpoints import copy_checkpoint  # noqa: E402
from stn_core.checkpoints.seeds import seed_summary, with_other_seeds  # noqa: E402
from stn_core.registry import DISTORTIONS  # noqa: E402

MAX_SEEDS = 10


def _final_meta(stem: Path) -> dict | None:
    meta = read_meta(stem)
    return meta if meta is not None and meta.get("final") else None


def seed_errors(src: Path, task: str, name: str) -> dict[str, float]:
    """Test error of every finished seed of a cell in ``src`` (seed 0 included)."""
    out = {}
    for seed in range(MAX_SEEDS):
        meta = _final_meta(src / stem_name(task, name, seed))
        if meta is not None and isinstance(meta.get("test_error"), (int, float)):
            out[str(seed)] = float(meta["test_error"])
    return out


def add_seeds(src: Path, dst: Path, task: str, name: str, dry_run: bool = False) -> str | None:
    """A cell promoted earlier (seed 0 in ``dst``, not in ``src``): add the finished other seeds of ``src``
    that used the same recipe to its JSON's ``extra.seeds`` (weights unchanged). None when there are none."""
    stem = stem_name(task, name)
    meta = _final_meta(dst / stem)
    if meta is None:
        return None
    meta = with_other_seeds(meta, {str(seed): _final_meta(src / stem_name(task, name, seed))
                                   for seed in range(1, MAX_SEEDS)})
    if meta is None:
        return None
    errors = meta["extra"]["seeds"]["errors"]
    if dry_run:
        return f"would add seeds to {stem}: {errors}"
    copy_checkpoint(dst / stem, dst / stem, meta)  # the JSON rewritten atomically, the copy checked by loading
    return f"added seeds to {stem}: {errors}"


def promote(src: Path, dst: Path, task: str, name: str, dry_run: bool = False) -> str:
    """Promote one cell (or add its new seeds to the promoted one); returns a line saying what happened."""
    stem = stem_name(task, name)
    meta = _final_meta(src / stem)
    if meta is None:
        staged = (src / stem).with_suffix(".json").exists()
        return (add_seeds(src, dst, task, name, dry_run)
                or (f"not final yet: {stem}" if staged else f"nothing staged for {stem} in {src}"))
    errors = seed_errors(src, task, name)
    meta["extra"] = {**(meta.get("extra") or {}), "seeds": seed_summary(errors)}
    if dry_run:
        return f"would promote {stem}: seeds {errors}"
    copy_checkpoint(src / stem, dst / stem, meta)  # raises CheckpointError if the copy does not load
    return f"promoted {stem}: test error {meta['test_error']:.2f} %, seeds {errors}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="src", default=str(ROOT / V2_OUT_DIR))
    ap.add_argument("--to", dest="dst", default=str(ROOT / "checkpoints"))
    ap.add_argument("--tasks", nargs="+", choices=list(DISTORTIONS), default=list(DISTORTIONS),
                    help="columns to promote (default: all)")
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args(argv)
    for task in a.tasks:
        for name in MODELS:
            print(promote(Path(a.src), Path(a.dst), task, name, a.dry_run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
