"""Publish the digit-string readers (Table 2's analogue) from their training runs into checkpoints/.

    python scripts/promote_sequences.py [--from runs/seq] [--to checkpoints] [--crops tight loose]
    python scripts/promote_sequences.py --add-seeds [--from runs/seq] [--to checkpoints]

A crop's three readers are published together or not at all (they share one sample budget, and the
results compare them), and only finished runs (``"final": true``) with that budget. Weights and JSON are
copied (never the optimiser state) and each copy is checked by loading it.

``--add-seeds``: other seeds of the published readers (runs ``<stem>_s<seed>`` in ``--from``, finished,
same recipe but the seed) add their test errors to the published JSON under ``extra.seeds``
(:mod:`stn_core.checkpoints.seeds`); the shipped weights stay those of seed 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stn_core import registry as reg  # noqa: E402
from stn_core.checkpoints import CheckpointError, copy_checkpoint, load_meta  # noqa: E402
from stn_core.checkpoints.seeds import with_other_seeds  # noqa: E402


def ready_runs(folder: Path, crop: str) -> dict[str, Path] | str:
    """The crop's runs by key, or why they cannot be published."""
    runs = {}
    for key in reg.SEQUENCE_KEYS:
        stem = folder / reg.sequence_stem_name(key, crop)
        try:
            meta = load_meta(stem.with_suffix(".json"))
        except (CheckpointError, OSError) as e:
            return f"{stem}: {e}"
        steps = (meta.get("train_args") or {}).get("steps")
        if not meta.get("final"):
            return f"{stem} is not finished (step {meta.get('steps')} of {steps})"
        if steps != reg.SEQUENCE_STEPS[crop] or meta.get("model") != key:
            return f"{stem} is a {meta.get('model')} run of {steps} steps, not {key} with {reg.SEQUENCE_STEPS[crop]}"
        runs[key] = stem
    return runs


def add_seeds(src: Path, dst: Path, crop: str, key: str, max_seeds: int = 10) -> str | None:
    """Add the finished other seeds in ``src`` of the reader published in ``dst`` to its JSON's
    ``extra.seeds``; a line saying so, or None when there is nothing new."""
    stem = reg.sequence_stem_name(key, crop)
    try:
        meta = load_meta(dst / stem)
    except (CheckpointError, OSError):
        return None
    if not meta.get("final"):
        return None
    runs = {str(seed): src / f"{stem}_s{seed}" for seed in range(1, max_seeds)}
    meta = with_other_seeds(meta, {seed: load_meta(run) if run.with_suffix(".json").exists() else None
                                   for seed, run in runs.items()})
    if meta is None:
        return None
    errors = meta["extra"]["seeds"]["errors"]
    copy_checkpoint(dst / stem, dst / stem, meta)  # the JSON rewritten atomically, the copy checked by loading
    return f"added seeds to {stem}: {errors}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="src", default=str(ROOT / "runs" / "seq"))
    ap.add_argument("--to", default=str(reg.checkpoint_dir()))
    ap.add_argument("--crops", nargs="+", default=list(reg.SEQUENCE_STEPS), choices=list(reg.SEQUENCE_STEPS))
    ap.add_argument("--add-seeds", action="store_true", help="add other seeds' test errors to the published JSONs")
    a = ap.parse_args(argv)
    if a.add_seeds:
        lines = [add_seeds(Path(a.src), Path(a.to), crop, key) for crop in a.crops for key in reg.SEQUENCE_KEYS]
        print("\n".join(line for line in lines if line) or "no new seeds to add")
        return 0
    status = 0
    for crop in a.crops:
        runs = ready_runs(Path(a.src), crop)
        if isinstance(runs, str):
            print(f"{crop}: not published: {runs}")
            status = 1
            continue
        for key, stem in runs.items():
            out = copy_checkpoint(stem, Path(a.to) / reg.sequence_stem_name(key, crop))
            print(f"published {stem} → {reg.sequence_stem_name(key, crop)} ({out['test_error']} %)")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
