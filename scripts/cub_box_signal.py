"""Does a smoothed box gradient make the CUB boxes follow each bird? Validation runs → results/cub-grad-blur.md

    python scripts/cub_grad_blur.py [--sigmas 0 8 16] [--epochs 5] [--jobs 2] [--threads 1] [--time-limit S]
    python scripts/cub_grad_blur.py --report                       # only write the report from finished runs

results/cub-pull.md found that the gradient training follows (the paper's exact bilinear sampler gradient)
does not point to each bird's parts, while the loss's slope over a coarser shift does. This trains the
448-px 2×ST-CNN of ``scripts/train_cub.py``'s protocol (MLP head, tiled start, the protocol's localisation
lr) with the boxes' gradient taken on the image blurred by σ px (``--grad-blur``, ``stn_core.grad_smoothing``,
ours; σ = 0 is the paper's sampler), on 80 % of each class's training images, and scores each run on the
other 20 % (``--val-fraction 0.2``; the official test split is never read): validation accuracy, the
box-centre spread over birds, and the part analysis of ``results/cub.md`` on the validation birds
(head-hit of the best head transformer against its own mean box given to every bird, paired bootstrap CI).
Runs live in ``runs/cub-grad-blur/`` (resumable; finished ones are skipped).
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
from train_cub import protocol_args  # noqa: E402
from train_queue import read_meta, run_queue  # noqa: E402

from stn_core.analysis.cub import centre_spread, mean_boxes, paired_diff_ci, part_stats  # noqa: E402
from stn_core.checkpoints import load_model  # noqa: E402
from stn_core.data.cub import load_cub  # noqa: E402
from stn_core.fileio import atomic_write_bytes  # noqa: E402
from stn_core.train.cub import carve_validation, decode_records, predict  # noqa: E402

OUT_DIR = ROOT / "runs" / "cub-grad-blur"
RESULTS = ROOT / "results" / "cub-grad-blur.md"
VAL_FRACTION = 0.2
SIGMAS = (0.0, 8.0, 16.0)
EPOCHS = 5.0
COLOURS = ("red", "green", "blue", "orange")


def stem_of(sigma: float | None, epochs: float) -> Path:
    name = "cub50_baseline_448" if sigma is None else f"cub50_2st_448_blur{sigma:g}"
    return OUT_DIR / f"{name}_e{epochs:g}"


def command(sigma: float | None, epochs: float, threads: int) -> list[str]:
    stem = stem_of(sigma, epochs)
    model = ["--model", "cub-baseline", *protocol_args("448", epochs=epochs)] if sigma is None else \
        ["--model", "cub-2st", *protocol_args("448", epochs=epochs), "--grad-blur", f"{sigma:g}"]
    cmd = [sys.executable, "-m", "stn_core.train", "--task", "cub50", *model, "--val-fraction", str(VAL_FRACTION),
           "--threads", str(threads), "--out", str(stem.relative_to(ROOT)), "--log-every", "10", "--no-progress"]
    if read_meta(stem) is not None:
        cmd.append("--resume")
    return cmd


def val_parts(stem: Path) -> dict:
    """Part analysis of a finished run on its validation birds (boxes recomputed from the weights)."""
    model, meta = load_model(stem)
    root = (meta.get("extra") or {}).get("data_root")
    recs = load_cub(Path(root) if root and Path(root).is_dir() else None,
                    classes=",".join(str(c) for c in meta["classes"]), split="train")
    _, val = carve_validation(recs, VAL_FRACTION)
    x, _, val = decode_records(val, meta["input_size"])
    _, boxes = predict(model, x, torch.device("cpu"))
    boxes = boxes.numpy()
    birds = birds_of(val)
    stats, ctrl = part_stats(boxes, birds), part_stats(mean_boxes(boxes), birds)
    rates = [r["head_hit"] or 0.0 for r in stats.rates()]
    best = int(np.argmax(rates))
    d, lo, hi = paired_diff_ci(stats.head[:, best], ctrl.head[:, best])
    return {"n": len(birds), "rates": stats.rates(), "mean_box_rates": ctrl.rates(), "best": best,
            "per_bird": (d, lo, hi), "spread": centre_spread(boxes).tolist()}


def report(sigmas: tuple[float, ...], epochs: float) -> str:
    cmd = "python scripts/cub_grad_blur.py" + (f" --sigmas {' '.join(f'{s:g}' for s in sigmas)}"
                                               if tuple(sigmas) != SIGMAS else "") + \
        (f" --epochs {epochs:g}" if epochs != EPOCHS else "")
    lines = ["# CUB 2×ST-CNN at 448 px: the boxes' gradient smoothed (validation experiment)", "",
             f"Made by `{cmd}`; the docstring says how. Each row: one run of the 448-px protocol of "
             f"`scripts/train_cub.py` for {epochs:g} epochs on 80 % of each class's training images, scored on the "
             "other 20 % (the official test split is never read). σ: `--grad-blur`, the boxes' gradient taken on "
             "the image blurred by σ px of the 448-px input (ours; 0 is the paper's exact sampler gradient; the "
             "crops the classifier sees are the same). Head-hit: a box holds at least half of the bird's visible "
             "head parts. *Mean box*: each transformer's average box given to every bird, the control for boxes "
             "that sit where heads usually are; *per bird*: head-hit of the best head transformer minus that of "
             "its mean box (paired bootstrap 95 % CI over birds; results/cub.md's goal is ≥ 10 points, CI above 0).",
             "", "| σ (px) | validation accuracy (%) | box-centre spread (std x, y) per transformer | head-hit per "
             "transformer (%) | mean box: head-hit (%) | per bird: best − its mean box (points, 95 % CI) | steps |",
             "|---|---|---|---|---|---|---|"]
    for sigma in (None, *sigmas):
        m = read_meta(stem_of(sigma, epochs))
        label = "(baseline)" if sigma is None else f"{sigma:g}"
        if m is None or not m.get("final"):
            lines.append(f"| {label} | {'not run' if m is None else 'unfinished (step %s)' % m.get('steps')} "
                         "| | | | | |")
            continue
        acc = f"**{100.0 - m['test_error']:.2f}**"
        if sigma is None:
            lines.append(f"| {label} | {acc} | | | | | {m['steps']} |")
            continue
        p = val_parts(stem_of(sigma, epochs))
        spread = "; ".join(f"{sx:.3f}, {sy:.3f}" for sx, sy in p["spread"])
        hits = "; ".join(f"{100 * r['head_hit']:.1f}" for r in p["rates"])
        ctrl = "; ".join(f"{100 * r['head_hit']:.1f}" for r in p["mean_box_rates"])
        d, lo, hi = p["per_bird"]
        lines.append(f"| {label} | {acc} | {spread} | {hits} | {ctrl} | {COLOURS[p['best']]}: {100 * d:+.1f} "
                     f"[{100 * lo:+.1f}, {100 * hi:+.1f}] | {m['steps']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sigmas", type=float, nargs="+", default=list(SIGMAS))
    ap.add_argument("--epochs", type=float, default=EPOCHS)
    ap.add_argument("--baseline", action="store_true", help="also train the 448-px baseline on the same split")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=None)
    ap.add_argument("--report", action="store_true", help="only write the report")
    a = ap.parse_args(argv)
    if not a.report:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        todo = ([None] if a.baseline else []) + list(a.sigmas)
        jobs = [(stem_of(s, a.epochs), lambda s=s: command(s, a.epochs, a.threads)) for s in todo]
        t0 = time.time()
        run_queue(jobs, a.time_limit, parallel=a.jobs, log_dir=ROOT / "runs" / "logs" / "cub-grad-blur")
        print(f"training: {time.time() - t0:.0f} s")
    torch.set_num_threads(a.threads)
    atomic_write_bytes(RESULTS, report(tuple(a.sigmas), a.epochs).encode())
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
