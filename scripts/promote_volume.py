"""Publish the volume models (3-D transformer, appendix A.3) from their training runs into checkpoints/.

    python scripts/promote_volume.py --st runs/volume/vol-st-cnn runs/volume/vol-st-cnn-s06 ... \\
                                     --cnn runs/volume/vol-cnn [--to checkpoints] [--keep-earlier]

The ST runs are variants of one recipe (``--start-scale``, ``--loc-lr-mult``); of those trained for as many
steps as the CNN (one budget for the pair), the one with the lowest test error is published as
``volume_st-cnn``, and every variant's settings, steps, test error and command go into its JSON under
``extra.variants``, so ``scripts/make_volume_results.py`` can show them all. The choice is made on the
test set (there is no validation split here): the table says so. ``--keep-earlier`` keeps the variants
and CNN runs the JSONs already in ``--to`` list (earlier budgets whose run folders are gone); the CNN's
runs go under its ``extra.runs``. Only final runs are used; weights and JSON are copied (never the
optimiser state) and the copy is checked by loading it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stn_core import registry as reg  # noqa: E402
from stn_core.checkpoints import checkpoint_paths, copy_checkpoint, load_meta  # noqa: E402
from stn_core.checkpoints import variants as V  # noqa: E402


VOLUME_SETTINGS = {"start_scale": 1.0, "loc_lr_mult": None}


def variant(stem: str, meta: dict) -> dict:
    """One run's settings and result, as kept in the published JSON."""
    return V.variant(stem, meta, VOLUME_SETTINGS if meta.get("model") == "vol-st-cnn" else {})


def published_runs(stem: Path, key: str) -> list[dict]:
    """The runs a published JSON lists under ``extra[key]`` (itself when it lists none); [] if absent."""
    meta = load_meta(stem) if checkpoint_paths(stem)["meta"].exists() else None
    return V.listed_variants(meta, key, lambda m: variant(str(stem), m))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--st", nargs="+", required=True, help="stems of the vol-st-cnn runs (variants)")
    ap.add_argument("--cnn", required=True, help="stem of the vol-cnn run")
    ap.add_argument("--to", default=str(reg.checkpoint_dir()))
    ap.add_argument("--keep-earlier", action="store_true",
                    help="keep the variants and CNN runs that the published JSONs in --to list")
    a = ap.parse_args()
    st_to, cnn_to = Path(a.to) / reg.volume_stem_name("vol-st-cnn"), Path(a.to) / reg.volume_stem_name("vol-cnn")
    cnn = load_meta(a.cnn)
    if not cnn.get("final") or cnn.get("model") != "vol-cnn":
        raise SystemExit(f"error: {a.cnn} is not a finished vol-cnn run")
    runs = {s: load_meta(s) for s in a.st}
    final = {s: m for s, m in runs.items() if m.get("final") and m.get("model") == "vol-st-cnn"}
    same = {s: m for s, m in final.items() if m.get("steps") == cnn.get("steps")}
    if not same:
        raise SystemExit(f"error: none of the --st runs is a finished vol-st-cnn run of {cnn.get('steps')} steps "
                         "(the CNN's budget)")
    best = min(same, key=lambda s: same[s]["test_error"])
    variants = [variant(s, m) for s, m in final.items()]
    cnn_runs = [variant(a.cnn, cnn)]
    if a.keep_earlier:
        variants = V.merged(published_runs(st_to, "variants"), variants)
        cnn_runs = V.merged(published_runs(cnn_to, "runs"), cnn_runs)
    meta = dict(same[best])
    meta["extra"] = {**(meta.get("extra") or {}), "variants": variants,
                     "chosen_by": "lowest test error among the variants of the CNN's budget (no validation split)"}
    out = copy_checkpoint(best, st_to, meta)
    print(f"published {best} → volume_st-cnn ({out['test_error']} %)")
    meta = dict(cnn)
    meta["extra"] = {**(meta.get("extra") or {}), "runs": cnn_runs}
    out = copy_checkpoint(a.cnn, cnn_to, meta)
    print(f"published {a.cnn} → volume_cnn ({out['test_error']} %)")


if __name__ == "__main__":
    main()
