"""Train the CUB birds models (baseline, 2×ST-CNN, 4×ST-CNN) at 224 and 448 px.

    python scripts/train_cub.py [--sizes 224 448] [--models baseline 2st 4st] [--jobs 2] [--threads 1] [--time-limit S]

Skips finished runs (``final: true`` in the JSON), resumes unfinished ones. Every run is one
``python -m stn_core.train --task cub50 ...`` command; all models of one size share ONE protocol
(:func:`protocol_args`): same epochs, batch, learning rates, augmentation (flip + 85-100 % crop) and
input resolution, so the baseline gets exactly the ST models' budget. Runs are written to
``runs/cub/cub50_<name>`` (224) and ``runs/cub/cub50_<name>_448``; ``--promote`` copies the finished
ones to ``checkpoints/`` (the app's defaults) with their JSON unchanged.

* 224: the image at 224 px; ST crops of 112 px at scale 0.5 (native resolution of a half-size box).
* 448: the image at 448 px (``../shared/data/cub448``, made from the full-resolution originals); the
  localisation net sees it down-sampled to 224; each ST crop is sampled at 224 px from the 448-px image
  (the paper's setting: a half-size box carries 224 px of real detail). The 448 baseline sees the
  whole image at 448 px: the same pixels the ST models may crop from.

Reduced scale for a 2-core CPU: 50 classes (the images on hand), MobileNetV2 backbone shared by the
branches, ``EPOCHS`` epochs of 1,500 training images, batch 16, seed 0. The localisation learning-rate
multiplier and the box start were chosen on a validation split carved from train
(``scripts/cub_search.py`` → ``results/cub-search.md``). The paper's full scale (200 classes, GPU) is
``FULL_SCALE`` below, printed by ``--print-full``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from train_queue import is_final, read_meta, run_queue  # noqa: E402

from stn_core import registry as reg  # noqa: E402
from stn_core.checkpoints import copy_checkpoint  # noqa: E402
from stn_core.train.cub import FULL_SCALE_COMMAND as FULL_SCALE  # noqa: E402

MODELS = {"baseline": "cub-baseline", "2st": "cub-2st", "4st": "cub-4st"}
#: 448-px variants, reported separately (``--variants``): 2×ST-CNNs with the learned scale (s, tx, ty), the
#: heatmap localisation head at its best validation setting (loc lr × 0.1, results/cub-search.md) and the
#: paper's separate backbone per transformer (not trained yet: ~2× the shared model's weights); and [ours] the
#: 2× and 4×ST-CNN whose boxes train on an SPSA estimate of the loss's coarse slope instead of the sampler's
#: exact gradient, each at its validation setting for accuracy (±0.1; localisation lr × 10 and × 3), and the
#: 2×ST-CNN at that signal's best setting for localisation (boxes at scale 0.35, lr × 3; below the baseline's
#: validation accuracy): results/cub-box-signal.md, after results/cub-pull.md
#: (flags, labels and order: ``stn_core.registry.CUB_VARIANTS``, the one table of them)
VARIANTS = {k: list(v.train_flags) for k, v in reg.CUB_VARIANTS.items()}
SIZES = ("224", "448")
EPOCHS = 5
#: chosen on the validation split by scripts/cub_search.py (results/cub-search.md): × 1 and × 0.1 tied there,
#: the tie went to × 1 (larger box spread), but in the full-length 448 run (5 epochs, the lr decaying later)
#: × 1 pinned both boxes at the top corners of their range within 120 steps (where tanh's gradient
#: vanishes), so the protocol takes the other setting of the tie, × 0.1
LOC_LR_MULT = 0.1
LOC_INIT = "tiled"
LOC_HEAD = "mlp"
DATA_448 = "../shared/data/cub448"
RUN_DIR = ROOT / "runs" / "cub"


def protocol_args(size: str, epochs: float = EPOCHS, loc_lr_mult: float = LOC_LR_MULT) -> list[str]:
    """The shared training flags of one input size (every model of that size gets exactly these)."""
    common = ["--epochs", f"{epochs:g}", "--batch", "16", "--optimizer", "sgd", "--lr", "0.001", "--momentum", "0.9",
              "--weight-decay", "1e-4", "--head-lr-mult", "10", "--loc-lr-mult", f"{loc_lr_mult:g}",
              "--crop-scale", "0.5", "--seed", "0", "--data-root", DATA_448]
    if size == "224":
        return [*common, "--input-size", "224", "--crop-size", "112"]
    if size == "448":
        return [*common, "--input-size", "448", "--crop-size", "224", "--loc-size", "224"]
    raise ValueError(f"size must be one of {SIZES}, got {size!r}")


def stem_of(name: str, size: str, folder: Path = RUN_DIR) -> Path:
    """``cub50_<name>`` (224) / ``cub50_<name>_448``; a variant ``2st-x`` → ``cub50_2st_448_x`` (the registry's names)."""
    return folder / reg.cub_stem_name(name, int(size))


def with_overrides(flags: list[str], extra: list[str]) -> list[str]:
    """``flags`` + ``extra``, where a ``--name value`` pair of ``extra`` replaces the same flag's pair in ``flags``."""
    out = list(flags)
    for i, tok in enumerate(extra):
        valued = i + 1 < len(extra) and not extra[i + 1].startswith("--")
        if tok.startswith("--") and valued and tok in out:
            j = out.index(tok)
            del out[j:j + 2]
    return out + extra


def command(name: str, size: str, threads: int) -> list[str]:
    stem = stem_of(name, size)
    flags = with_overrides(protocol_args(size), VARIANTS.get(name, []))
    model = MODELS[name.partition("-")[0]]
    cmd = [sys.executable, "-m", "stn_core.train", "--task", "cub50", "--model", model, *flags,
           "--threads", str(threads), "--out", str(stem.relative_to(ROOT)), "--log-every", "10", "--no-progress"]
    if name != "baseline" and LOC_INIT != "tiled":
        cmd += ["--loc-init", LOC_INIT]
    if name != "baseline" and LOC_HEAD != "mlp":
        cmd += ["--loc-head", LOC_HEAD]
    if read_meta(stem) is not None:
        cmd.append("--resume")
    return cmd


def promote(names: list[str], sizes: list[str]) -> None:
    """Publish finished runs to checkpoints/ (``checkpoints.copy_checkpoint``: weights + JSON, atomically, the
    copy loaded as a check); unfinished ones are refused."""
    for size in sizes:
        for name in names:
            src = stem_of(name, size)
            if not is_final(src):
                print(f"not final, not promoted: {src.relative_to(ROOT)}")
                continue
            dst = stem_of(name, size, ROOT / "checkpoints")
            copy_checkpoint(src, dst)
            print(f"promoted {src.relative_to(ROOT)} -> {dst.relative_to(ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS),
                    help="the models to train (none: only --variants)")
    ap.add_argument("--variants", nargs="*", default=[], choices=list(VARIANTS),
                    help="448-px variants to train after the models (reported separately)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (logs in runs/logs/cub/)")
    ap.add_argument("--time-limit", type=float, default=None, help="stop starting/continuing runs after this many s")
    ap.add_argument("--print-full", action="store_true", help="print the documented full-scale command and exit")
    ap.add_argument("--promote", action="store_true", help="copy the finished runs to checkpoints/ and exit")
    args = ap.parse_args()
    if args.print_full:
        print(FULL_SCALE)
        return
    if args.promote:
        promote(args.models, args.sizes)
        promote(args.variants, ["448"])
        return
    runs = [(name, size) for size in reversed(sorted(args.sizes)) for name in args.models]  # the long 448 runs first
    runs += [(v, "448") for v in args.variants]
    jobs = [(stem_of(name, size), lambda name=name, size=size: command(name, size, args.threads)) for name, size in runs]
    run_queue(jobs, args.time_limit, parallel=args.jobs, log_dir=ROOT / "runs" / "logs" / "cub")


if __name__ == "__main__":
    main()
