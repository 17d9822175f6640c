"""Benchmark the Trained model explorer's per-digit work on the CPU: inference and one redraw.

Usage: python bench/explorer.py [--repeats 30] [--threads 1] [--out results/bench-explorer.md]

For each of the 8 models of Table 1 (built with ``stn_core.build_model`` at the checkpoint sizes:
28×28 for R/P/E, 42×42 for RTS; random weights — the time does not depend on their values) it
times what the page computes when a control changes:

* *predict* = ``pages.lab.explorer.predict`` on one digit: forward pass (localisation net, grid
  generator, sampler, classifier), softmax, and the sampled region's border from θ — the
  interactive target is under 30 ms;
* *redraw* = hand distortion (``explorer.distort`` with a rotation) + predict with the model
  + predict with the plain CNN for contrast + Figure 1 as one picture (``figures.figure1_digit_scene``)
  written as SVG (``figures.scene_svg``), i.e. everything the page computes per change except
  Streamlit's own overhead and the browser's drawing (the galleries are cached).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stn_core import build_model  # noqa: E402
from pages.lab import explorer as ex  # noqa: E402
from pages.lab import figures as viz  # noqa: E402
from stn_core.data.common import atomic_write_bytes  # noqa: E402
from stn_core import registry as reg  # noqa: E402
from stn_core.analysis import inspect as insp  # noqa: E402

TARGET_MS = 30.0


def _median_ms(fn, repeats: int) -> float:
    """Median wall time of fn() in milliseconds (after 3 warm-up calls)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def _digit(size: int) -> np.ndarray:
    """A stroke-like test digit (a "7") on a size×size canvas."""
    a = np.zeros((28, 28), np.float32)
    a[6:9, 7:21] = 1.0
    for r in range(9, 23):
        c = 20 - (r - 9) // 2
        a[r, c - 1:c + 2] = 1.0
    return ex.to_canvas(a, size)


_TURN = iter(range(10 ** 9))


def redraw(model, cnn, base: np.ndarray) -> int:
    """Everything the page computes for one change of a control; returns the SVG size in bytes. Every
    call turns the rotation slider to a new angle, so every changing picture is encoded, as after a real
    slider move."""
    x, _ = ex.distort(base, {"rot": 20.0 + 0.1 * (next(_TURN) % 997), "sx": 0.9, "sy": 0.9})
    p = insp.predict(model, x)[0]
    series = [("model", p.probs)]
    if cnn is not None:
        series.append(("CNN", insp.predict(cnn, x)[0].probs))
    titles = ("(a)", "(b)", "(c)", "(d)") if p.output is not None else ("(a)", "(d)")
    scene = viz.figure1_digit_scene(x, series, titles, region=p.region, output=p.output,
                                    grid=p.grid if p.kind == "tps" else None, ctrl=p.ctrl, true_label=7)
    return len(viz.scene_svg(scene))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/bench-explorer.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for size, dist in ((28, "r"), (42, "rts")):
        cnn = build_model("cnn", None, size).eval()
        base = _digit(size)
        for key in reg.MODEL_KEYS:
            name, transform = reg.model_spec(key)
            model = build_model(name, transform, size).eval()
            if model.transformer is not None:  # move θ away from the identity, like a trained net
                with torch.no_grad():
                    model.transformer.regression.weight.normal_(0.0, 0.02)
            x, _ = ex.distort(base, {"rot": 20.0})
            t_pred = _median_ms(lambda: insp.predict(model, x), args.repeats)
            contrast = cnn if key != "cnn" else None
            t_redraw = _median_ms(lambda: redraw(model, contrast, base), args.repeats)
            kib = redraw(model, contrast, base) / 1024
            rows.append((f"{reg.MODEL_LABELS[key]}, {size}×{size} ({reg.DIST_SHORT[dist]}"
                         f"{'' if size == 42 else '/P/E'})", t_pred, t_redraw, kib))
            print(rows[-1])

    cmd = "python bench/explorer.py" + "".join(f" {a}" for a in sys.argv[1:])
    worst_pred = max(r[1] for r in rows)
    lines = [
        "# Trained model explorer: per-digit inference and redraw (server side, CPU)",
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {args.threads} torch thread(s), "
        f"torch {torch.__version__}, numpy {np.__version__}; median of {args.repeats} runs after 3 warm-ups; "
        f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end of the run "
        "(a shared machine: other work inflates the numbers).",
        "",
        "Models built with `build_model` at the checkpoint sizes (≈400k weights each, random weights: the time does "
        "not depend on their values). *predict* = `pages.lab.explorer.predict` on one digit (forward pass, softmax, "
        "the sampled region's border); *redraw* = hand distortion + predict + the plain CNN's predict for contrast + "
        "Figure 1 as one SVG picture (`figures.figure1_digit_scene` + `scene_svg`), i.e. everything the page computes per change except "
        "Streamlit's own overhead and the browser's drawing (galleries are cached per batch). Every redraw uses a new "
        "rotation, so none of its pictures is found in the page's encoding memo.",
        "",
        "| model, input | predict ms | redraw total ms | figure SVG KiB |",
        "|---|---|---|---|",
    ]
    lines += [f"| {label} | {p:.2f} | {r:.2f} | {kb:.0f} |" for label, p, r, kb in rows]
    verdict = "meets" if worst_pred < TARGET_MS else "misses"
    lines += ["", f"Slowest single-digit inference: {worst_pred:.1f} ms ({verdict} the {TARGET_MS:.0f} ms target); "
                  f"slowest redraw: {max(r[2] for r in rows):.1f} ms."]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, ("\n".join(lines) + "\n").encode())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
