"""Benchmark one playground redraw on the server: warp + figure build (+ JSON serialisation).

Usage: python bench/playground.py [--repeats 30] [--threads 1] [--size 256] [--out results/bench-playground.md]

Times what the Transform playground page computes for every change of a control, for a
size×size RGB image with output "same as input": ``pages.lab.playground.warp`` (grid generator +
sampler), building the two plotly figures (``pages.lab.figures``: PNG encoding of U and V, grid lines,
outline) and ``fig.to_json()`` (what ``st.plotly_chart`` sends). Streamlit's own overhead and the
browser's drawing are not included.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import median_ms, write_report  # noqa: E402
from pages.lab import playground as pg  # noqa: E402
from pages.lab import figures as viz  # noqa: E402

CASES = [  # (label, kind, intuitive controls, sampling)
    ("affine: rotate 30°, zoom 0.7", "affine", dict(rot=30.0, sx=0.7, sy=0.7, tx=0.1), "bilinear"),
    ("affine, nearest", "affine", dict(rot=30.0, sx=0.7, sy=0.7, tx=0.1), "nearest"),
    ("attention: s 0.5", "attention", dict(sx=0.5, tx=0.2, ty=-0.1), "bilinear"),
    ("projective: tilt p_y 0.5", "projective", dict(sx=0.9, sy=0.9, py=0.5), "bilinear"),
    ("projective past the horizon", "projective", dict(px=0.5, py=1.0), "bilinear"),
]


def redraw(image: np.ndarray, state: pg.PlaygroundState) -> tuple[str, str]:
    """Everything the page computes for one redraw, as the page does it; returns the figures' JSON."""
    in_size = image.shape[:2]
    params, _, _ = pg.resolve_params(state.kind, pg.current_params(state, in_size))
    res = pg.warp(image, state.kind, params, pg.output_size(state.out, in_size), state.sampling)
    fig_in = viz.input_figure(image, res.grid, pg.outline(state.kind, params), res.valid, title="U")
    fig_out = viz.output_figure(res.output, res.valid, title="V")
    return fig_in.to_json(), fig_out.to_json()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", default="results/bench-playground.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    viz._URI_CACHE_SIZE = 0  # encode both PNGs on every call (the page reuses U's; this is the worst case)
    rng = np.random.default_rng(0)
    # A photo-like test image: smooth colour gradients plus noise (PNG size depends on content).
    yy, xx = np.mgrid[0:args.size, 0:args.size] / args.size
    image = np.stack([xx, yy, 0.5 + 0.5 * np.sin(8 * xx) * np.cos(6 * yy)], -1)
    image = np.clip(image + 0.05 * rng.standard_normal(image.shape), 0, 1).astype(np.float32)

    rows = []
    for label, kind, controls, sampling in CASES:
        state = pg.PlaygroundState(kind=kind, sampling=sampling, **controls)
        in_size = image.shape[:2]
        params, _, _ = pg.resolve_params(kind, pg.current_params(state, in_size))
        out_size = pg.output_size(state.out, in_size)
        res = pg.warp(image, kind, params, out_size, sampling)
        t_warp = median_ms(lambda: pg.warp(image, kind, params, out_size, sampling), args.repeats)
        t_figs = median_ms(lambda: (viz.input_figure(image, res.grid, pg.outline(kind, params), res.valid),
                                     viz.output_figure(res.output, res.valid)), args.repeats)
        t_total = median_ms(lambda: redraw(image, state), args.repeats)
        kb = sum(len(j) for j in redraw(image, state)) / 1024
        rows.append((label, t_warp, t_figs, t_total, kb))
        print(f"{label}: warp {t_warp:.2f} ms, figures {t_figs:.2f} ms, redraw total {t_total:.2f} ms, "
              f"{kb:.0f} KiB JSON", flush=True)

    cmd = "python bench/playground.py " + " ".join(sys.argv[1:])
    lines = [
        "# Playground redraw benchmark (server side)",
        "",
        f"Command: `{cmd.strip()}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {args.threads} torch thread(s), "
        f"torch {torch.__version__}, numpy {np.__version__}; median of {args.repeats} runs after 3 warm-ups; "
        f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end of the run "
        "(a shared machine: other work inflates the numbers).",
        "",
        f"Input: one {args.size}×{args.size} RGB float32 image, output same size. *warp* = "
        "`pages.lab.playground.warp` (grid generator + sampler + validity mask); *figures* = building both "
        "plotly figures (nearest upscaling, PNG encoding of U and V — the page reuses U's encoding between redraws, "
        "the benchmark does not —, grid lines, outline); *redraw total* = θ from the "
        "controls + warp + figures + `fig.to_json()` for both, i.e. everything the page computes per change "
        "except Streamlit's own overhead and the browser's drawing.",
        "",
        "| case | warp ms | figures ms | redraw total ms | figure JSON KiB |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {label} | {w:.2f} | {f:.2f} | {t:.2f} | {kb:.0f} |" for label, w, f, t, kb in rows]
    worst = max(r[3] for r in rows)
    lines += ["", f"Slowest case: {worst:.1f} ms per redraw on this machine."]
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
