"""Benchmark the sampler: forward+backward of stn_core.sample (both backends) against grid_sample.

Usage: python bench/sampler.py [--repeats 20] [--threads 2] [--out results/bench-sampler.md]

Every ratio in the output table comes from this one run, on this machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import interleaved_median_ms, write_report  # noqa: E402
import stn_core as S  # noqa: E402

CASES = [  # (N, C, H, W) input, output size
    ((256, 1, 28, 28), (28, 28)),     # an MNIST batch through an ST
    ((64, 1, 42, 42), (42, 42)),      # RTS canvas
    ((1, 3, 256, 256), (256, 256)),   # one playground image
    ((8, 3, 224, 224), (224, 224)),   # a CUB mini-batch
]


def _fwd_bwd(sampler, u: torch.Tensor, theta: torch.Tensor, out_size):
    def run():
        uu = u.detach().requires_grad_()
        th = theta.detach().requires_grad_()
        v = sampler(uu, S.affine_grid(th, out_size))
        v.sum().backward()
    return run


def kornia_sampler():
    """kornia.geometry.warp_affine over the same normalised θ (None when kornia is absent)."""
    try:
        import kornia.geometry as kg  # type: ignore
    except ImportError:
        return None

    def run_factory(u, theta, out_size):
        h, w = u.shape[2:]
        ho, wo = out_size
        # normalised (align_corners=False) θ → kornia's pixel-space forward matrix
        # (checked against stn_core.sample: max difference 3e-6 on a random 20×30 image)
        in_pix_to_norm = torch.tensor([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]], dtype=u.dtype)
        out_norm_to_pix = torch.tensor([[wo / 2, 0, (wo - 1) / 2], [0, ho / 2, (ho - 1) / 2], [0, 0, 1]],
                                       dtype=u.dtype)

        def run():
            uu = u.detach().requires_grad_()
            th = theta.detach().requires_grad_()
            full = torch.cat([th, torch.tensor([[[0, 0, 1.0]]], dtype=u.dtype).expand(th.shape[0], 1, 3)], 1)
            # θ maps output→input; kornia wants the forward (input→output) pixel map
            pix = torch.linalg.inv(in_pix_to_norm.inverse() @ full @ out_norm_to_pix.inverse())
            v = kg.warp_affine(uu, pix[:, :2], (ho, wo), align_corners=False)
            v.sum().backward()
        return run
    return run_factory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default="results/bench-sampler.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    kornia = kornia_sampler()
    rows = []
    for shape, out_size in CASES:
        u = torch.rand(*shape, generator=gen).to(device)
        theta = (S.compose_affine(20, (0.8, 0.9), 0.1, (0.1, -0.05)).float().expand(shape[0], 2, 3)).to(device)
        fns = {
            "grid_sample": _fwd_bwd(lambda a, g: F.grid_sample(a, g, align_corners=False), u, theta, out_size),
            "fast": _fwd_bwd(lambda a, g: S.sample(a, g, backend="fast"), u, theta, out_size),
            "reference": _fwd_bwd(lambda a, g: S.sample(a, g, backend="reference"), u, theta, out_size),
        }
        if kornia and device.type == "cpu":
            fns["kornia"] = kornia(u, theta, out_size)
        t = interleaved_median_ms(fns, args.repeats, device=device)
        t_gs, t_fast, t_ref, t_k = t["grid_sample"], t["fast"], t["reference"], t.get("kornia")
        rows.append((shape, out_size, t_gs, t_fast, t_ref, t_k))
        print(f"{shape} -> {out_size}: grid_sample {t_gs:.2f} ms, fast {t_fast:.2f} ms, reference {t_ref:.2f} ms"
              + (f", kornia {t_k:.2f} ms" if t_k else ""), flush=True)

    cmd = "python bench/sampler.py " + " ".join(sys.argv[1:])
    lines = [
        "# Sampler benchmark: forward + backward",
        "",
        f"Command: `{cmd.strip()}`  ",
        f"Device: {device} ({platform.processor() or platform.machine()}, {args.threads} threads), "
        f"torch {torch.__version__}; load average at start {os.getloadavg()[0]:.2f} (other work on the "
        "machine inflates all columns alike; compare ratios); "
        f"median of {args.repeats} rounds after 3 warm-up rounds, the variants timed round-robin; float32; "
        "an affine grid (rotation 20°, scale 0.8/0.9, shear 0.1) is generated inside each timed call; "
        "backward = `.sum().backward()` to U and θ.",
        "",
        "| input (N, C, H, W) | output | grid_sample ms | stn_core fast ms (× grid_sample) | "
        "stn_core reference ms (× grid_sample) | kornia warp_affine ms (× grid_sample) |",
        "|---|---|---|---|---|---|",
    ]
    for shape, out_size, t_gs, t_fast, t_ref, t_k in rows:
        k = f"{t_k:.2f} ({t_k / t_gs:.2f}×)" if t_k else "not installed"
        lines.append(f"| {shape} | {out_size} | {t_gs:.2f} | {t_fast:.2f} ({t_fast / t_gs:.2f}×) | "
                     f"{t_ref:.2f} ({t_ref / t_gs:.2f}×) | {k} |")
    lines += ["", "The fast backend is `grid_sample` plus argument checks; the reference backend is the paper's "
              "kernel sum (4 gathers) with a hand-written backward in Python, kept for clarity and for checking "
              "the paper's gradients, not for speed."]
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
