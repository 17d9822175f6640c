"""Which training signal makes the CUB boxes follow each bird? Validation runs → results/cub-box-signal.md

    python scripts/cub_box_signal.py [--settings exact spsa-loc1 ...] [--epochs 5] [--jobs 2] [--time-limit S]
    python scripts/cub_box_signal.py --report                   # only write the report from finished runs

results/cub-pull.md found that the gradient training follows (the paper's exact bilinear sampler gradient)
does not point to each bird's parts, not even when taken on a blurred image, while the loss's slope over a
coarser shift of the box does. This trains the 448-px 2×ST-CNN of ``scripts/train_cub.py``'s protocol (MLP
head, tiled start; the 4×ST-CNN for settings named ``4st-…``) with each box signal of ``SETTINGS``: the paper's exact gradient; the gradient on the
image blurred by σ px (``--grad-blur``, ``stn_core.grad_smoothing``, ours); an SPSA estimate of the loss's
slope over ±δ (``--box-grad spsa``, ``stn_core.train.box_spsa``, ours), whose smaller magnitude is met with a
larger localisation lr. Each run trains on 80 % of each class's training images and is scored on the other
20 % (``--val-fraction 0.2``; the official test split is never read): validation accuracy, the box-centre
spread over birds, and the part analysis of ``results/cub.md`` on the validation birds (head-hit of the best
head transformer against its own mean box given to every bird, paired bootstrap CI). Runs live in
``runs/cub-box-signal/`` (resumable; finished ones are skipped). The report names the best setting of each
model for accuracy and the best for localisation; ``VARIANT_OF`` maps those to the variants of
``scripts/train_cub.py`` trained on all training images for the test split (results/cub.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from make_cub_results import birds_of  # noqa: E402
from cub_search import VAL_FRACTION  # noqa: E402  (the one validation split of the CUB protocol)
from train_cub import protocol_args, with_overrides  # noqa: E402
from train_queue import read_meta, run_queue  # noqa: E402

from stn_core.analysis.cub import centre_spread, mean_boxes, paired_diff_ci, part_stats  # noqa: E402
from stn_core.checkpoints import load_model  # noqa: E402
from stn_core.data.cub import load_cub  # noqa: E402
from stn_core.checkpoints.prediction_cache import cache_path, load_cached, save_cached  # noqa: E402
from stn_core.fileio import atomic_write_bytes  # noqa: E402
from stn_core.train.cub import carve_validation, decode_records, predict  # noqa: E402

OUT_DIR = ROOT / "runs" / "cub-box-signal"
RESULTS = ROOT / "results" / "cub-box-signal.md"
EPOCHS = 5.0
#: setting → (what the boxes learn from, the flags added to the 448 protocol); "baseline": no boxes.
#: Settings are 2×ST-CNN runs unless their name starts with "4st-".
SETTINGS = {
    "exact": ("the paper's exact sampler gradient", ["--grad-blur", "0"]),
    "blur8": ("gradient on the image blurred by σ = 8 px [ours]", ["--grad-blur", "8"]),
    "blur16": ("gradient on the image blurred by σ = 16 px [ours]", ["--grad-blur", "16"]),
    "spsa-loc1": ("SPSA slope over ±0.1, localisation lr × 1 [ours]",
                  ["--box-grad", "spsa", "--spsa-delta", "0.1", "--loc-lr-mult", "1"]),
    "spsa-loc3": ("SPSA slope over ±0.1, localisation lr × 3 [ours]",
                  ["--box-grad", "spsa", "--spsa-delta", "0.1", "--loc-lr-mult", "3"]),
    "spsa-loc10": ("SPSA slope over ±0.1, localisation lr × 10 [ours]",
                   ["--box-grad", "spsa", "--spsa-delta", "0.1", "--loc-lr-mult", "10"]),
    "spsa-loc3-s035": ("SPSA slope over ±0.1, localisation lr × 3, boxes at scale 0.35 (the protocol: 0.5) [ours]",
                       ["--box-grad", "spsa", "--spsa-delta", "0.1", "--loc-lr-mult", "3", "--crop-scale", "0.35"]),
    "4st-spsa-loc3": ("4×ST-CNN: SPSA slope over ±0.1, localisation lr × 3 [ours]",
                      ["--box-grad", "spsa", "--spsa-delta", "0.1", "--loc-lr-mult", "3"]),
    "baseline": ("(no transformer: the 448-px baseline)", None),
}
DEFAULT = ("exact", "spsa-loc1", "spsa-loc3", "spsa-loc10", "spsa-loc3-s035", "4st-spsa-loc3", "baseline")
COLOURS = ("red", "green", "blue", "orange")
MODEL_NAMES = {"cub-2st": "2×ST-CNN", "cub-4st": "4×ST-CNN"}


#: the settings trained on all training images for the test split: setting → variant of scripts/train_cub.py
#: (same flags; a test checks), reported in results/cub.md
VARIANT_OF = {"spsa-loc10": "2st-spsa", "4st-spsa-loc3": "4st-spsa", "spsa-loc3-s035": "2st-spsa-s035"}


def trained_as(setting: str) -> str:
    """The report's pointer from a chosen setting to the variant trained for the test split (or that none is)."""
    if setting not in VARIANT_OF:
        return " Not trained for the test split."
    return (f" `python scripts/train_cub.py --models --variants {VARIANT_OF[setting]}` trains it on all training "
            "images for the test split (results/cub.md).")


def stem_of(setting: str, epochs: float) -> Path:
    if setting == "baseline":
        name = "cub50_baseline_448"
    else:
        n_st, _, rest = setting.partition("-") if setting.startswith("4st-") else ("2st", "", setting)
        name = f"cub50_{n_st}_448_{rest}"
    return OUT_DIR / f"{name}_e{epochs:g}"


def model_of(setting: str) -> str:
    """The model a setting trains: ``cub-baseline``, ``cub-4st`` for "4st-…" settings, else ``cub-2st``."""
    return "cub-baseline" if setting == "baseline" else "cub-4st" if setting.startswith("4st-") else "cub-2st"


def command(setting: str, epochs: float, threads: int) -> list[str]:
    stem, flags = stem_of(setting, epochs), SETTINGS[setting][1]
    model = ["--model", "cub-baseline", *protocol_args("448", epochs=epochs)] if flags is None else \
        ["--model", model_of(setting), *with_overrides(protocol_args("448", epochs=epochs), flags)]
    cmd = [sys.executable, "-m", "stn_core.train", "--task", "cub50", *model, "--val-fraction", str(VAL_FRACTION),
           "--threads", str(threads), "--out", str(stem.relative_to(ROOT)), "--log-every", "10", "--no-progress"]
    if read_meta(stem) is not None:
        cmd.append("--resume")
    return cmd


def val_cache_path(stem: Path, checkpoint_id: str) -> Path:
    """``runs/cub_eval/val_<stem>_<checkpoint_id>.npz``: a finished run's validation boxes (a new checkpoint, a
    new file, so a stale cache is never read)."""
    return cache_path(stem, checkpoint_id, prefix="val_")


def val_boxes(stem: Path, meta: dict, val: list) -> np.ndarray:
    """Boxes ``(N, K, 4)`` of the run ``stem`` on its validation records ``val``, cached by checkpoint id."""
    cache, ids = val_cache_path(stem, meta["checkpoint_id"]), [r.image_id for r in val]
    hit = load_cached(cache, ids)
    if hit is not None:
        return hit["boxes"]
    model, _ = load_model(stem)
    x, _, _ = decode_records(val, meta["input_size"])
    boxes = predict(model, x, torch.device("cpu"))[1].numpy()
    save_cached(cache, ids, boxes=boxes)
    return boxes


def val_parts(stem: Path) -> dict:
    """Part analysis of a finished run on its validation birds (boxes from the weights, cached per checkpoint)."""
    meta = read_meta(stem)
    root = (meta.get("extra") or {}).get("data_root")
    recs = load_cub(Path(root) if root and Path(root).is_dir() else None,
                    classes=",".join(str(c) for c in meta["classes"]), split="train")
    _, val = carve_validation(recs, VAL_FRACTION)
    boxes = val_boxes(stem, meta, val)
    birds = birds_of(val)
    stats, ctrl = part_stats(boxes, birds), part_stats(mean_boxes(boxes), birds)
    rates = [r["head_hit"] or 0.0 for r in stats.rates()]
    best = int(np.argmax(rates))
    d, lo, hi = paired_diff_ci(stats.head[:, best], ctrl.head[:, best])
    return {"n": len(birds), "rates": stats.rates(), "mean_box_rates": ctrl.rates(), "best": best,
            "per_bird": (d, lo, hi), "spread": centre_spread(boxes).tolist()}


def report(settings: tuple[str, ...], epochs: float) -> str:
    cmd = "python scripts/cub_box_signal.py" + (f" --settings {' '.join(settings)}" if tuple(settings) != DEFAULT
                                                else "") + (f" --epochs {epochs:g}" if epochs != EPOCHS else "")
    lines = ["# CUB ST-CNNs at 448 px: what the boxes learn from (validation experiment)", "",
             f"Made by `{cmd}`; the docstring says how. Each row: one run of the 448-px protocol of "
             f"`scripts/train_cub.py` for {epochs:g} epochs on 80 % of each class's training images, scored on the "
             "other 20 % (the official test split is never read); only the boxes' training signal (and, where "
             "the row says so, the number of transformers) differs. "
             "Head-hit: a box holds at least half of the bird's visible head parts. *Mean box*: each "
             "transformer's average box given to every bird, the control for boxes that sit where heads usually "
             "are; *per bird*: head-hit of the best head transformer minus that of its mean box (paired bootstrap "
             "95 % CI over birds; results/cub.md's goal is ≥ 10 points, CI above 0). One seed per row.", "",
             "| boxes learn from | validation accuracy (%) | box-centre spread (std x, y) per transformer | head-hit "
             "per transformer (%) | mean box: head-hit (%) | per bird: best − its mean box (points, 95 % CI) | steps |",
             "|---|---|---|---|---|---|---|"]
    scored = []  # (validation accuracy, per-bird gain, its CI's lower end, setting) of the finished ST settings
    for setting in settings:
        m = read_meta(stem_of(setting, epochs))
        label = SETTINGS[setting][0]
        if m is None or not m.get("final"):
            lines.append(f"| {label} | {'not run' if m is None else 'unfinished (step %s)' % m.get('steps')} "
                         "| | | | | |")
            continue
        acc = f"**{100.0 - m['test_error']:.2f}**"
        if setting == "baseline":
            lines.append(f"| {label} | {acc} | | | | | {m['steps']} |")
            continue
        p = val_parts(stem_of(setting, epochs))
        spread = "; ".join(f"{sx:.3f}, {sy:.3f}" for sx, sy in p["spread"])
        hits = "; ".join(f"{100 * r['head_hit']:.1f}" for r in p["rates"])
        ctrl = "; ".join(f"{100 * r['head_hit']:.1f}" for r in p["mean_box_rates"])
        d, lo, hi = p["per_bird"]
        lines.append(f"| {label} | {acc} | {spread} | {hits} | {ctrl} | {COLOURS[p['best']]}: {100 * d:+.1f} "
                     f"[{100 * lo:+.1f}, {100 * hi:+.1f}] | {m['steps']} |")
        scored.append((round(100.0 - m["test_error"], 2), d, lo, setting))
    for model in sorted({model_of(st) for _, _, _, st in scored}):
        best = max((acc, d, st) for acc, d, _, st in scored if model_of(st) == model)
        lines += ["", f"Best {MODEL_NAMES[model]} setting for accuracy: **{SETTINGS[best[2]][0]}** (rule: the "
                  "highest validation accuracy of that model's settings, a tie going to the larger per-bird gain over "
                  f"the mean box).{trained_as(best[2])}"]
    if scored:
        lo, st = max((lo, st) for _, _, lo, st in scored)
        lines += ["", f"Best setting for localisation: **{SETTINGS[st][0]}** (rule: the largest lower end of the "
                  f"per-bird CI, whatever its accuracy).{trained_as(st)}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", default=list(DEFAULT), choices=list(SETTINGS))
    ap.add_argument("--epochs", type=float, default=EPOCHS)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=None)
    ap.add_argument("--report", action="store_true", help="only write the report")
    a = ap.parse_args(argv)
    if not a.report:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        jobs = [(stem_of(s, a.epochs), lambda s=s: command(s, a.epochs, a.threads)) for s in a.settings]
        t0 = time.time()
        run_queue(jobs, a.time_limit, parallel=a.jobs, log_dir=ROOT / "runs" / "logs" / "cub-box-signal")
        print(f"training: {time.time() - t0:.0f} s")
    torch.set_num_threads(a.threads)
    atomic_write_bytes(RESULTS, report(tuple(a.settings), a.epochs).encode())
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
