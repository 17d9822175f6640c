"""Spatial transformer vs deformable convolution (issue 7): size, sampling numbers, CPU cost.

Usage: python bench/stn_vs_dcn.py [--repeats 5] [--batch 256] [--threads 1] [--out results/bench-stn-vs-dcn.md]

For cnn, st-cnn affine, st-cnn tps, dcn and dcn modulated (each DCN with both backends of
stn_core.dcn: torchvision's deform_conv2d and the sampled grid_sample + matmul path) at 28×28
and 42×42 inputs: the
parameter count, how many numbers the sampling machinery predicts per image (6 for affine,
2K = 32 for TPS, 2·k·k·H'·W' offsets per deformable layer, plus k·k·H'·W' masks when
modulated), how many bilinear reads it makes per image, and the forward (no_grad, eval) and
forward+backward (cross-entropy, train mode) time of one batch — all models of one input size
timed round-robin in one run (bench/timing.py's interleaved_median_ms), as ratios to the
plain CNN. Then the cost of the TPS grid generator vs the affine one for a batch. Models run
channels-last, as the training CLI does by default.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import interleaved_median_ms  # noqa: E402
import stn_core as S  # noqa: E402
from stn_core.dcn import set_backend  # noqa: E402
from stn_core.models import TPS_POINTS, build_model, count_params  # noqa: E402

MODELS = [  # (label, name, transform, modulated, DeformConv2d backend)
    ("cnn", "cnn", None, False, None),
    ("st-cnn affine", "st-cnn", "affine", False, None),
    ("st-cnn tps", "st-cnn", "tps", False, None),
    ("dcn (torchvision)", "dcn", None, False, "torchvision"),
    ("dcn (sampled)", "dcn", None, False, "sampled"),
    ("dcn modulated (torchvision)", "dcn", None, True, "torchvision"),
    ("dcn modulated (sampled)", "dcn", None, True, "sampled"),
]
SIZES = (28, 42)


def sampling_numbers(model: torch.nn.Module, side: int) -> tuple[int, int, str]:
    """(numbers predicted per image, bilinear reads per image, how) of a model's sampling machinery."""
    x = torch.zeros(1, 1, side, side)
    with torch.no_grad():
        views = model.eval().views(x)
    if model.transformer is not None:
        p = S.num_params(model.transformer.transform, TPS_POINTS)
        h, w = views.grid.shape[1:3]
        return p, h * w, f"{p} {'= 2K' if model.transformer.transform == 'tps' else 'θ'}; one warp of {h}×{w}"
    layers = getattr(model, "deform_layers", [])
    if not layers:
        return 0, 0, "—"
    total, reads, parts = 0, 0, []
    for i, (layer, offset) in enumerate(zip(layers, views.offsets), 1):
        _, c, h, w = offset.shape
        k2 = layer.taps
        n = (c + (k2 if layer.modulated else 0)) * h * w
        total += n
        reads += k2 * h * w * layer.in_channels
        parts.append(f"conv{i}: {'3' if layer.modulated else '2'}·{k2}·{h}·{w} = {n:,}")
    return total, reads, "; ".join(parts)


def _forward(model: torch.nn.Module, x: torch.Tensor):
    def run():
        with torch.no_grad():
            model(x)
    return run


def _forward_backward(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    def run():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
    return run


def grid_costs(batch: int, side: int, repeats: int) -> dict[str, float]:
    """Median ms of the affine and TPS grid generators (and the sampler) for one batch."""
    g = torch.Generator().manual_seed(0)
    aff = S.identity_params("affine").repeat(batch, 1) + 0.05 * torch.randn(batch, 6, generator=g)
    tps = S.identity_params("tps", TPS_POINTS).repeat(batch, 1) + 0.05 * torch.randn(batch, 2 * TPS_POINTS, generator=g)
    u = torch.rand(batch, 1, side, side, generator=g)
    grid = S.make_grid("tps", tps, (side, side))
    return interleaved_median_ms({
        "affine grid": lambda: S.make_grid("affine", aff, (side, side)),
        "tps grid": lambda: S.make_grid("tps", tps, (side, side)),
        "bilinear sampling": lambda: S.sample(u, grid),
    }, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/bench-stn-vs-dcn.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    command = "python bench/stn_vs_dcn.py " + shlex.join(sys.argv[1:])

    lines = [
        "# Spatial transformer vs deformable convolution: size and CPU cost",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, shared with "
        f"other jobs (training runs) while this ran, so absolute times are noisy; the ratios, measured "
        f"round-robin in the same rounds, are the numbers to read. {args.threads} torch thread(s), torch {torch.__version__}. Batch {args.batch}, "
        f"median of {args.repeats} round-robin repeats after {args.warmup} warm-up(s); models channels-last "
        f"as in training. Ratios are to the plain CNN of the same input size, measured in the same rounds.",
        "",
        "*predicted/img*: numbers the sampling machinery predicts per image (θ, TPS control points, or "
        "offsets and masks); *reads/img*: bilinear reads per image (an ST warps the one-channel image once; a "
        "deformable conv reads k·k taps per output position and input channel).",
        "",
        "DCN backends (stn_core.dcn): *torchvision* = `torchvision.ops.deform_conv2d` (the reference); "
        "*sampled* = the k·k·H'·W' taps read with one `grid_sample` into columns, then one matmul (batch "
        "chunked, backward recomputes each chunk's columns). Same weights, same function; `backend=\"auto\"` "
        "uses *sampled* on CPU and torchvision on CUDA.",
        "",
    ]
    for side in SIZES:
        g = torch.Generator().manual_seed(side)
        x = torch.rand(args.batch, 1, side, side, generator=g)
        y = torch.randint(0, 10, (args.batch,), generator=g)
        models, info = {}, {}
        for label, name, tr, mod, backend in MODELS:
            torch.manual_seed(0)
            m = build_model(name, tr, side, **({"modulated": True} if mod else {}))
            if backend is not None:
                set_backend(m, backend)
            info[label] = (count_params(m), m.config["width"], *sampling_numbers(m, side))
            models[label] = m.use_channels_last()
        print(f"{side}×{side}: timing forward ...", flush=True)
        fwd = interleaved_median_ms({k: _forward(m.eval(), x) for k, m in models.items()}, args.repeats,
                                    warmup=args.warmup)
        print(f"{side}×{side}: timing forward+backward ...", flush=True)
        fb = interleaved_median_ms({k: _forward_backward(m.train(), x, y) for k, m in models.items()},
                                   args.repeats, warmup=args.warmup)
        lines += [f"## {side}×{side} input" + (" (RTS: the ST output is average-pooled to 21×21)" if side == 42 else ""),
                  "",
                  "| model | params | conv width | predicted/img | reads/img | forward ms | ×cnn | fwd+bwd ms | ×cnn | "
                  "what is predicted |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for label in models:
            n, width, pred, reads, how = info[label]
            lines.append(f"| {label} | {n:,} | {width} | {pred:,} | {reads:,} | {fwd[label]:.1f} | "
                         f"{fwd[label] / fwd['cnn']:.2f} | {fb[label]:.1f} | {fb[label] / fb['cnn']:.2f} | {how} |")
        lines.append("")
        for kind in ("dcn", "dcn modulated"):
            tv, sa = f"{kind} (torchvision)", f"{kind} (sampled)"
            lines.append(f"- {kind}: the sampled backend is {fwd[tv] / fwd[sa]:.1f}× faster than torchvision's "
                         f"forward and {fb[tv] / fb[sa]:.1f}× faster forward+backward.")
        lines.append("")

    lines += ["## Grid generation: TPS vs affine",
              "",
              f"One batch of {args.batch}, output = input size, K = {TPS_POINTS} control points (the lattice's "
              "inverse system is solved once and cached, as in training); the bilinear sampling of the same "
              "batch for scale.",
              "",
              "| input | affine grid ms | TPS grid ms | TPS / affine | bilinear sampling ms |",
              "|---|---:|---:|---:|---:|"]
    for side in SIZES:
        print(f"{side}×{side}: timing grid generators ...", flush=True)
        c = grid_costs(args.batch, side, max(20, 4 * args.repeats))
        lines.append(f"| {side}×{side} | {c['affine grid']:.2f} | {c['tps grid']:.2f} | "
                     f"{c['tps grid'] / c['affine grid']:.1f} | {c['bilinear sampling']:.2f} |")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
