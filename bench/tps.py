"""Benchmark one Thin-plate spline page update on the server (target: < 100 ms for 256×256).

Usage: python bench/tps.py [--repeats 30] [--size 256] [--out results/bench-tps.md]

Times what pages/tps.py computes after every drag, preset or slider change, for a size×size
RGB image with output "same as input": ``pages.lab.tps_editor.compute`` (TPS solve, grid,
bilinear sampling, bending energy, fold check, best affine fit and its warp), then the drawing
data: the point-drag component's payload (grid polylines, PNG data URI of U — memoised by the
page, re-encoded here —, JSON) and the three plotly figures with ``fig.to_json()``. Streamlit's
own overhead and the browser's drawing are not included. torch runs on one thread inside
``compute`` (``tps_editor.single_thread``), as on the page. "Drawing, U memoised" cycles through
results of distinct drags (jittered control points), so only U's encoding is reused, as on the page.

A second table compares the library's thin-plate spline alone (grid generator + bilinear sampler, one
image) with kornia's (``get_tps_transform`` + ``warp_image_tps``), interleaved round by round:
*first solve* = a lattice not seen before (the library's caches cleared before every call; kornia
keeps none), *cached* = the same lattice again (the library reuses its system inverse and design
matrix). Needs ``pip install kornia`` (not a dependency of the app); without it the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import interleaved_median_ms, median_ms, write_report  # noqa: E402
from components.point_drag import payload  # noqa: E402
from pages.lab import tps_editor as te  # noqa: E402
from stn_core import transforms  # noqa: E402
from stn_core.sampling import sample  # noqa: E402
from pages.lab import figures as viz  # noqa: E402

CASES = [  # (label, lattice side, preset or None, reg)
    ("4×4 identity", 4, None, 0.0),
    ("3×3 bend", 3, "bend", 0.0),
    ("4×4 twist", 4, "twist", 0.0),
    ("5×5 random", 5, "random", 0.0),
    ("5×5 random, reg 0.1", 5, "random", 0.1),
]


def drawing(image: np.ndarray, res: te.TpsResult, points) -> int:
    """Build everything the page draws from one update; returns the bytes sent (JSON)."""
    uri = viz.display_uri(image)[0]
    data = payload(uri, image.shape[:2], points, side=te.side_of(points), lines=te.grid_lines(res.grid),
                   marks=[{"kind": "landed", "points": res.landed.tolist()}], view=te.view_extent(points))
    figs = [viz.lattice_output_figure(res.output, res.ctrl_out, title="V"),
            viz.affine_fit_figure(image, res.affine_grid, res.affine.mapped, points, title="fit"),
            viz.lattice_output_figure(res.affine_output, res.ctrl_out, title="fit V")]
    return len(json.dumps(data)) + sum(len(f.to_json()) for f in figs)


def kornia_rows(image: np.ndarray, repeats: int) -> list[str]:
    """Table rows: the library's TPS warp, first solve and cached, against kornia's, on ``image``."""
    try:
        from kornia.geometry.transform import get_tps_transform, warp_image_tps
        import kornia
    except ImportError:
        return ["kornia is not installed (`pip install kornia`): no comparison in this run."]
    u = torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()
    h, w = image.shape[:2]
    rows = [f"kornia {kornia.__version__}; one {h}×{w} RGB image, output the same size, one thread, median of "
            f"{repeats} interleaved rounds.", "",
            "| lattice | library, first solve ms | kornia ms | first solve / kornia | library, cached ms | "
            "kornia / cached |", "|---|---|---|---|---|---|"]
    torch.set_num_threads(1)
    for side in (3, 4, 5):
        ctrl_out = transforms.tps_lattice(side * side, torch.float32)
        ctrl_in = (ctrl_out + 0.08 * torch.randn(ctrl_out.shape, generator=torch.Generator().manual_seed(side)))[None]

        def ours_cold():
            transforms._tps_design_cached.cache_clear()
            transforms._tps_inverse_cached.cache_clear()
            return sample(u, transforms.tps_grid(ctrl_in, (h, w), ctrl_out))

        def ours_cached():
            return sample(u, transforms.tps_grid(ctrl_in, (h, w), ctrl_out))

        def theirs():
            kernel, affine = get_tps_transform(ctrl_out[None], ctrl_in)
            return warp_image_tps(u, ctrl_in, kernel, affine, align_corners=False)

        ms = interleaved_median_ms({"cold": ours_cold, "cached": ours_cached, "kornia": theirs}, repeats)
        rows.append(f"| {side}×{side} | {ms['cold']:.2f} | {ms['kornia']:.2f} | **{ms['cold'] / ms['kornia']:.2f}×** | "
                    f"{ms['cached']:.2f} | **{ms['kornia'] / ms['cached']:.1f}×** |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", default="results/bench-tps.md")
    args = ap.parse_args()
    viz._URI_CACHE_SIZE = 0  # encode U and V on every call (the page reuses U's encoding): the worst case
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:args.size, 0:args.size] / args.size
    image = np.stack([xx, yy, 0.5 + 0.5 * np.sin(8 * xx) * np.cos(6 * yy)], -1)
    image = np.clip(image + 0.05 * rng.standard_normal(image.shape), 0, 1).astype(np.float32)
    size = (args.size, args.size)

    rows = []
    for label, side, preset, reg in CASES:
        points = te.lattice_points(side) if preset is None else te.preset_points(preset, side, seed=1)
        transforms._tps_design_cached.cache_clear()  # first update after a lattice / output-size change
        transforms._tps_inverse_cached.cache_clear()
        t = time.perf_counter()
        res = te.compute(image, points, size, reg=reg)
        cold = (time.perf_counter() - t) * 1e3
        t_compute = median_ms(lambda: te.compute(image, points, size, reg=reg), args.repeats)
        t_draw = median_ms(lambda: drawing(image, res, points), args.repeats)
        # as on the page: U's PNG is encoded once and reused; every V is new (distinct drags, more of them
        # than the cache holds, so no V is found there)
        drags = []
        for i in range(24):
            moved = np.asarray(points, dtype=np.float64) + 0.01 * rng.standard_normal(np.shape(points))
            moved = [tuple(map(float, p)) for p in moved]
            drags.append((te.compute(image, moved, size, reg=reg), moved))
        viz._URI_CACHE_SIZE = 16
        turn = iter(range(10 ** 9))
        t_page = median_ms(lambda: drawing(image, *drags[next(turn) % len(drags)]), args.repeats)
        viz._URI_CACHE_SIZE = 0
        kib = drawing(image, res, points) / 1024
        rows.append((label, cold, t_compute, t_draw, t_page, t_compute + t_draw, kib))
        print(f"{label}: compute {t_compute:.1f} ms (cold {cold:.1f}), drawing {t_draw:.1f} ms "
              f"({t_page:.1f} with U memoised), total {t_compute + t_draw:.1f} ms, {kib:.0f} KiB", flush=True)

    cmd = "python bench/tps.py " + " ".join(sys.argv[1:])
    worst = max(r[2] for r in rows)
    worst_total = max(r[5] for r in rows)
    lines = [
        "# Thin-plate spline page: server time per update",
        "",
        f"Command: `{cmd.strip()}`  ",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__} "
        f"(one intra-op thread inside `compute`), numpy {np.__version__}; median of {args.repeats} runs after "
        f"3 warm-ups; {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end of the run "
        "(a shared machine: other work inflates the numbers).",
        "",
        f"Input: one {args.size}×{args.size} RGB float32 image, output the same size. *compute* = "
        "`pages.lab.tps_editor.compute` (TPS solve, sampling grid, bilinear sampling, bending energy, fold check "
        "on a 64×64 grid, least-squares affine fit and its warp); *cold* = the same right after a lattice or "
        "output-size change (the cached system inverse and design matrix are rebuilt); *drawing* = the "
        "point-drag payload (grid lines, PNG data URI of U, JSON) and the three plotly figures with "
        "`fig.to_json()` (PNG encoding of both outputs and, twice, of U); *drawing, U memoised* = the same with "
        "U's encoding reused, as the page does (`viz.display_uri`), over 24 distinct drags (jittered control "
        "points: every V is new, and busier than the one result the *drawing* column redraws, so its PNG encoding can "
        "cost more); *total* = compute + drawing (worst case). "
        "Streamlit's own overhead and the browser are not included.",
        "",
        "| case | compute ms | compute ms (cold) | drawing ms | drawing ms, U memoised | total ms | sent KiB |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {label} | {c:.1f} | {cold:.1f} | {d:.1f} | {dp:.1f} | {t:.1f} | {kib:.0f} |"
              for label, cold, c, d, dp, t, kib in rows]
    verdict = "meets" if worst < 100 else "misses"
    lines += ["", f"Slowest compute: {worst:.1f} ms per update ({verdict} the 100 ms target); slowest total "
                  f"with drawing: {worst_total:.1f} ms.", "",
              "## The thin-plate spline alone against kornia", ""]
    lines += kornia_rows(image, args.repeats)
    lines += ["", "Targets (issue #21): first solve ≤ kornia's (ratio ≤ 1); cached ≥ 5× faster than kornia."]
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
