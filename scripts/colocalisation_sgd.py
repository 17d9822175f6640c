"""results/colocalisation-sgd.md: the paper's optimiser for co-localisation — SGD on a new localisation net.

    python scripts/colocalisation_sgd.py [--digits 0 1 ... 9] [--encoder checkpoints/mnist_r_cnn] [--seed 0]
                                         [--basin-offsets 10] [--basin-steps 500]

For each digit class, the same sets as ``scripts/colocalisation.py`` (the first 100 MNIST test digits of the
class on 84×84 canvases placed with ``--seed``; TC with 16 clutter crops): a localisation net trained from
scratch by SGD on the paper's triplet loss (:class:`stn_core.colocalisation.CoLocConfig`'s defaults, the
run the co-localisation page makes live), every window starting centred at half the canvas. Reports the
share of windows correct (IoU > 0.5) at the start and at the end, and the loss, beside the paper's numbers.
No label and no box is used. Then two probes of why: where the loss's descent points from a shared centred
start (``descent_alignment``), and whether SGD brings back windows that all start ``--basin-offsets`` px off
their digits (``basin_probe``; its start uses the true boxes). Needs the MNIST files.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stn_core import colocalisation as C  # noqa: E402
from stn_core.checkpoints import load_model  # noqa: E402
from stn_core.data import tasks as ds  # noqa: E402
from stn_core.data.common import atomic_write_bytes  # noqa: E402
from stn_core.registry import display_dir  # noqa: E402

PAPER = {"T": "100 %", "TC": "75–93 %"}
#: Shared starts at which the loss's lead is measured: SGD's (the centred half window) and a native 28-px window.
LEAD_SCALES = (C.S_START, C.CROP / C.CANVAS)


def _lead(cos: torch.Tensor) -> str:
    """'towards share (windows with a gradient)' of :func:`stn_core.colocalisation.descent_alignment`'s cosines."""
    share, moved = C.lead_share(cos)
    return f"{100 * share:.0f} % ({moved})" if moved else "– (0)"


def _basin_section(rows: list, offsets: list[float], steps: int) -> list[str]:
    """The markdown of :func:`stn_core.colocalisation.basin_probe`'s results: per class, setting and offset."""
    head = ["", "## How far the loss pulls: windows started near their digits", "",
            "The same loss and sets, but every window a free native-scale translation (no localisation net), started "
            "a fixed distance from its own digit's centre in a random direction, all images at once; "
            f"then {steps} steps of SGD (momentum {C.BASIN_MOMENTUM:g}, lr {C.BASIN_LR:g} per window, "
            "every image each step; `stn_core.colocalisation.basin_probe`). The true boxes set the start and score "
            "the end: a probe of the loss, not a method. Correct (IoU > 0.5) and mean distance to the digits' "
            "centres, at the start → after SGD. Windows that come back show the loss's pull reaching that far around "
            "windows that all lie near their digits; SGD from the shared centred start above begins outside it.", "",
            "| digit | " + " | ".join(f"{st} from {off:g} px: correct | {st}: distance (px)" for st in ("T", "TC")
                                      for off in offsets) + " |",
            "|---|" + "---|---|" * (2 * len(offsets))]
    pct = lambda v: f"{100 * v:.0f} %"  # noqa: E731
    cell = lambda b: f"{pct(b.correct_start)} → {pct(b.correct_end)} | {b.dist_start:.1f} → {b.dist_end:.1f}"  # noqa: E731
    body = [f"| {d} | " + " | ".join(cell(c[st][5][off]) for st in ("T", "TC") for off in offsets) + " |"
            for d, c in rows]
    mean = lambda st, off, f: sum(getattr(c[st][5][off], f) for _, c in rows) / len(rows)  # noqa: E731
    body.append("| **mean** | " + " | ".join(
        f"**{pct(mean(st, off, 'correct_start'))} → {pct(mean(st, off, 'correct_end'))}** | "
        f"**{mean(st, off, 'dist_start'):.1f} → {mean(st, off, 'dist_end'):.1f}**"
        for st in ("T", "TC") for off in offsets) + " |")
    return head + body


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digits", nargs="+", type=int, default=list(range(10)))
    ap.add_argument("--encoder", default=str(ROOT / "checkpoints" / "mnist_r_cnn"))
    ap.add_argument("--seed", type=int, default=0, help="seed of the canvases and of the SGD run")
    ap.add_argument("--steps", type=int, default=C.CoLocConfig.steps, help="SGD steps (default: CoLocConfig's)")
    ap.add_argument("--basin-offsets", nargs="*", type=float, default=[10.0],
                    help="px from each digit's centre at which basin_probe starts the windows (none: skip it)")
    ap.add_argument("--basin-steps", type=int, default=C.BASIN_STEPS, help="SGD steps of each basin probe")
    ap.add_argument("--out", default=str(ROOT / "results" / "colocalisation-sgd.md"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    encoder = load_model(a.encoder)[0].classifier.eval()
    x, y = ds.load_split("test")
    cfg = C.CoLocConfig(steps=a.steps, seed=a.seed, every=10 ** 6)  # history at the start and the end only
    t0 = time.time()
    cells: dict[int, dict[str, tuple]] = {}
    for d, setting, data in C.paper_sets(x, y, a.digits, a.seed):
        _, run = C.train(data, encoder, dataclasses.replace(cfg, track=data.x.shape[0]))
        start = run.history_correct(data)[0]  # every window centred, before the first step
        k = min(20, len(run.losses))
        first, last = sum(run.losses[:k]) / k, sum(run.losses[-k:]) / k
        lead = {scale: C.descent_alignment(data, encoder, scale, seed=a.seed) for scale in LEAD_SCALES}
        basin = {off: C.basin_probe(data, encoder, off, steps=a.basin_steps, seed=a.seed)
                 for off in a.basin_offsets}
        cells.setdefault(d, {})[setting] = (start, run.correct, first, last, lead, basin)
        print(f"digit {d} {setting}: correct {100 * start:.0f} % → {100 * run.correct:.0f} %, "
              f"loss {first:.3f} → {last:.3f}", flush=True)
    rows = list(cells.items())
    pct = lambda v: f"{100 * v:.0f} %"  # noqa: E731
    args = sys.argv[1:] if argv is None else argv
    cmd = "python scripts/colocalisation_sgd.py" + (" " + " ".join(args) if args else "")
    lines = ["# Co-localisation by the paper's optimiser: SGD on a localisation net from scratch", "",
             f"Made by `{cmd}` in {time.time() - t0:.0f} s, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. "
             f"Encoder: `{display_dir(Path(a.encoder).parent)}/{Path(a.encoder).name}`. The sets of "
             "results/colocalisation.md (per class, the first 100 MNIST test digits on 84×84 canvases, seed "
             f"{a.seed}; TC: 16 clutter crops). A new localisation net (the paper's: conv 8 × 9×9 stride 4, pool, FC 8, "
             "FC 8, FC 3; attention s, t; every window starting centred at half the canvas) trained by SGD on the "
             f"paper's triplet loss: {cfg.steps} steps, batches of {cfg.batch} images (every pair), lr {cfg.lr:g}, "
             f"momentum {cfg.momentum:g}, seed {a.seed} (`stn_core.colocalisation.CoLocConfig`, the run the "
             "co-localisation page makes live). Correct: IoU > 0.5 with the digit's box; loss: mean of the first "
             "and of the last 20 steps' batch losses.", "",
             "| digit | T: correct at start → end | T: loss first → last | TC: correct at start → end | "
             "TC: loss first → last |", "|---|---|---|---|---|"]
    for d, c in rows:
        lines.append(f"| {d} | {pct(c['T'][0])} → {pct(c['T'][1])} | {c['T'][2]:.3f} → {c['T'][3]:.3f} | "
                     f"{pct(c['TC'][0])} → {pct(c['TC'][1])} | {c['TC'][2]:.3f} → {c['TC'][3]:.3f} |")
    mean = {s: sum(c[s][1] for _, c in rows) / len(rows) for s in ("T", "TC")}
    lines += [f"| **mean** | **{100 * mean['T']:.1f} %** | | **{100 * mean['TC']:.1f} %** | |",
              f"| paper | {PAPER['T']} | | {PAPER['TC']} | |", "",
              "What this optimiser misses, the search of results/colocalisation.md finds on the same sets and loss "
              "(coordinate descent over windows); the module docstring of `stn_core/colocalisation.py` lists the "
              "SGD variants tried.", "",
              "## Where the loss sends the windows from a shared start", "",
              "Every window of a set centred at one scale (SGD's start: all images' windows are alike there, as "
              "the new net's zero last layer makes them): for each image, is the loss's steepest descent for its "
              "window's translation (−∂L/∂t, L over all pairs of the set, random crops averaged over 5 draws) "
              "pointing towards its digit (cosine > 0 with the direction to the digit's centre; "
              "`stn_core.colocalisation.descent_alignment`)? Share of windows pointing towards their digit, and "
              "in brackets how many of the 100 windows have a gradient at all (a window on empty canvas has "
              "none). Near 50 %: the loss gives descent no lead towards the digits; below: a lead away from them.",
              "",
              "| digit | " + " | ".join(f"{st}, start s = {sc:.2f}" for st in ("T", "TC") for sc in LEAD_SCALES) + " |",
              "|---|" + "---|" * (2 * len(LEAD_SCALES))]
    for d, c in rows:
        lines.append(f"| {d} | " + " | ".join(_lead(c[st][4][sc]) for st in ("T", "TC") for sc in LEAD_SCALES) + " |")
    allc = {(st, sc): torch.cat([c[st][4][sc] for _, c in rows]) for st in ("T", "TC") for sc in LEAD_SCALES}
    lines.append("| **all** | " + " | ".join(f"**{_lead(allc[st, sc])}**" for st in ("T", "TC") for sc in LEAD_SCALES)
                 + " |")
    if a.basin_offsets:
        lines += _basin_section(rows, a.basin_offsets, a.basin_steps)
    atomic_write_bytes(Path(a.out), ("\n".join(lines) + "\n").encode("utf-8"))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
