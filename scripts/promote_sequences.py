"""Publish the digit-string readers (Table 2's analogue) from their training runs into checkpoints/.

    python scripts/promote_sequences.py [--from runs/seq] [--to checkpoints] [--crops tight loose]
    python scripts/promote_sequences.py --add-seeds [--from runs/seq] [--to checkpoints]
    python scripts/promote_sequences.py --lr-grid checkpoints runs/seq-lr01 runs/seq-lr04 [--crops tight]

A crop's three readers are published together or not at all (they share one sample budget, and the
results compare them), and only finished runs (``"final": true``) with that budget. Weights and JSON are
copied (never the optimiser state) and each copy is checked by loading it.

``--add-seeds``: other seeds of the published readers (runs ``<stem>_s<seed>`` in ``--from``, finished,
same recipe but the seed) add their test errors to the published JSON under ``extra.seeds``
(:mod:`stn_core.checkpoints.seeds`); the shipped weights stay those of seed 0.

``--lr-grid DIR …``: each reader of a crop is published from its finished seed-0 run of the crop's budget
with the lowest test error among those the folders hold (runs of one recipe but the learning rate; the
``--to`` folder may be one of them, so the published reader stays a candidate). Every learning rate's run goes
into the published JSON under ``extra.lr_grid`` (:mod:`stn_core.checkpoints.variants`), those listed there
before included, and ``extra.chosen_by`` says the choice was made on the test set (there is no validation
split). A reader whose chosen run is the one already published keeps its JSON's other seeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stn_core import registry as reg  # noqa: E402
from stn_core.checkpoints import CheckpointError, copy_checkpoint, load_meta  # noqa: E402
from stn_core.checkpoints import variants as V  # noqa: E402
from stn_core.checkpoints.seeds import same_recipe, with_other_seeds  # noqa: E402

#: What an lr-grid entry records of its run besides name, steps, test error and command.
LR_SETTINGS = {"lr": None, "seed": 0}
CHOSEN_BY = ("lowest test error among the learning rates of extra.lr_grid (seed 0), on the test set: there is "
             "no validation split")


def unpublishable(meta: dict, key: str, crop: str) -> str | None:
    """Why a run's JSON is not a finished ``key`` run of ``crop``'s budget, or None when it is."""
    steps = (meta.get("train_args") or {}).get("steps")
    if not meta.get("final"):
        return f"is not finished (step {meta.get('steps')} of {steps})"
    if steps != reg.SEQUENCE_STEPS[crop] or meta.get("model") != key:
        return f"is a {meta.get('model')} run of {steps} steps, not {key} with {reg.SEQUENCE_STEPS[crop]}"
    if not isinstance(meta.get("test_error"), (int, float)):
        return "has no test error"
    return None


def ready_runs(folder: Path, crop: str) -> dict[str, Path] | str:
    """The crop's runs by key, or why they cannot be published."""
    runs = {}
    for key in reg.SEQUENCE_KEYS:
        stem = folder / reg.sequence_stem_name(key, crop)
        try:
            meta = load_meta(stem.with_suffix(".json"))
        except (CheckpointError, OSError) as e:
            return f"{stem}: {e}"
        why = unpublishable(meta, key, crop)
        if why:
            return f"{stem} {why}"
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


def same_but_lr(a: dict, b: dict) -> bool:
    """Two runs' ``train_args`` agree on everything but the learning rate and the seed."""
    strip = lambda m: {"train_args": {k: v for k, v in (m.get("train_args") or {}).items() if k != "lr"}}  # noqa: E731
    return same_recipe(strip(a), strip(b))


def grid_runs(folders: list[Path], crop: str, key: str) -> dict[Path, dict]:
    """The finished seed-0 runs of ``key`` at ``crop``'s budget in ``folders``, by stem → JSON."""
    out = {}
    for folder in folders:
        stem = folder / reg.sequence_stem_name(key, crop)
        try:
            meta = load_meta(stem)
        except (CheckpointError, OSError):
            continue
        if unpublishable(meta, key, crop) is None and (meta.get("train_args") or {}).get("seed", 0) == 0:
            out[stem] = meta
    return out


def publish_lr_grid(folders: list[Path], dst: Path, crop: str, key: str) -> str:
    """Publish ``key``'s best-lr run at ``crop`` from ``folders`` into ``dst`` (see the module docstring);
    a line saying what was done."""
    runs = grid_runs(folders, crop, key)
    if not runs:
        return f"{crop} {key}: no finished seed-0 run of {reg.SEQUENCE_STEPS[crop]} steps in the folders"
    by_command = {}
    for stem, meta in runs.items():                              # one candidate per run (a published copy
        by_command.setdefault(meta.get("command"), (stem, meta))  # and its run folder share the command)
    stems = {stem: meta for stem, meta in by_command.values()}
    first = next(iter(stems.values()))
    if not all(same_but_lr(first, m) for m in stems.values()):
        return f"{crop} {key}: the runs differ in more than the learning rate: not published"
    best = min(stems, key=lambda s: stems[s]["test_error"])
    target = dst / reg.sequence_stem_name(key, crop)
    try:
        published = load_meta(target)
    except (CheckpointError, OSError):
        published = None
    grid = [V.variant(s, m, LR_SETTINGS) for s, m in stems.items()]
    as_variant = lambda m: V.variant(target, m, LR_SETTINGS)  # noqa: E731
    grid = V.merged(V.listed_variants(published, "lr_grid", as_variant), grid, key="command")
    grid.sort(key=lambda r: r.get("lr") or 0.0)
    keep_seeds = published is not None and published.get("command") == stems[best].get("command")
    meta = dict(published if keep_seeds else stems[best])
    meta["extra"] = {**(meta.get("extra") or {}), "lr_grid": grid, "chosen_by": CHOSEN_BY}
    out = copy_checkpoint(best, target, meta)
    lrs = ", ".join(f"{r.get('lr')}: {r.get('test_error')} %" for r in grid)
    return f"published {best} → {target.name} ({out['test_error']} %; lr grid {lrs})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="src", default=str(ROOT / "runs" / "seq"))
    ap.add_argument("--to", default=str(reg.checkpoint_dir()))
    ap.add_argument("--crops", nargs="+", default=list(reg.SEQUENCE_STEPS), choices=list(reg.SEQUENCE_STEPS))
    ap.add_argument("--add-seeds", action="store_true", help="add other seeds' test errors to the published JSONs")
    ap.add_argument("--lr-grid", nargs="+", metavar="DIR",
                    help="publish each reader's lowest-error learning rate among these folders' runs")
    a = ap.parse_args(argv)
    if a.lr_grid:
        folders = [Path(f) for f in a.lr_grid]
        lines = [publish_lr_grid(folders, Path(a.to), crop, key) for crop in a.crops for key in reg.SEQUENCE_KEYS]
        print("\n".join(lines))
        return 0 if all(line.startswith("published") for line in lines) else 1
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
