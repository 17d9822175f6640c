"""Does the classification loss pull each CUB attention box towards that bird's head? → results/cub-pull.md

    python scripts/cub_box_pull.py [--checkpoints cub50_2st_448 ...] [--split train] [--limit N] [--threads 1]

Issue #18's boxes move to where heads usually are, not to each bird's head (results/cub.md: head-hit no
better than the mean box). Training moves a box only along −∂L/∂(tx, ty), so this asks whether that
signal carries per-bird information at all: for every bird of the split and every transformer of a
shipped model, the cosine between the descent direction −∂L_i/∂(tx, ty) at the box the model predicts
and the way from the box centre to the bird's head (mean of its visible head parts; the same for the
body). The control gives each bird the head of another bird (a seeded derangement) at its own box: a
pull towards where heads usually are scores the same on both, a pull towards this bird's head scores
higher on its own. Paired bootstrap 95 % intervals over birds (``stn_core.analysis.cub``). Gradients in
float32, eval mode (``stn_core.analysis.box_pull``); the training split by default, since it is the
signal the localisation net learns from. No model is trained or changed.
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

from stn_core.analysis.cub import (BODY_PARTS, HEAD_PARTS, derangement, group_centroid,  # noqa: E402
                                   paired_diff_ci, pull_cosines)
from stn_core.checkpoints import load_model  # noqa: E402
from stn_core.data.cub import load_cub  # noqa: E402
from stn_core.fileio import atomic_write_bytes  # noqa: E402
from stn_core.analysis.box_pull import box_pull, box_slope  # noqa: E402
from stn_core.train.cub import decode_records  # noqa: E402

DEFAULT = ("cub50_2st_448", "cub50_2st_448_heatmap", "cub50_2st")
COLOURS = ("red", "green", "blue", "orange")


def alignment(centres: np.ndarray, descent: np.ndarray, birds: list, other: np.ndarray, seed: int = 0) -> dict:
    """For one transformer: cosines of ``descent`` (N, 2) with the way from ``centres`` (N, 2) to each bird's
    own / another bird's head and body centroid, and their paired difference."""
    row = {"grad_norm": float(np.median(np.linalg.norm(descent, axis=1)))}
    for name, group in (("head", HEAD_PARTS), ("body", BODY_PARTS)):
        target = np.stack([group_centroid(b, group) for b in birds])
        own = pull_cosines(descent, centres, target)
        ctrl = pull_cosines(descent, centres, target[other])
        d, lo, hi = paired_diff_ci(own, ctrl, seed=seed)
        row[name] = {"own": float(np.nanmean(own)), "other": float(np.nanmean(ctrl)),
                     "towards": float(np.nanmean(own[np.isfinite(own)] > 0)), "n": int(np.isfinite(own).sum()),
                     "diff": d, "ci": (lo, hi)}
    return row


def probe(stem: Path, split: str, limit: int | None, fd_step: float, blurs: tuple[float, ...] = (),
          seed: int = 0) -> dict:
    """The gradient's (and, with ``fd_step``, the coarse slope's) alignment with each bird's parts."""
    model, meta = load_model(stem)
    root = (meta.get("extra") or {}).get("data_root")
    root = root if root and Path(root).is_dir() else None
    classes = ",".join(str(c) for c in meta["classes"])
    recs = load_cub(Path(root) if root else None, classes=classes, split=split)
    if limit is not None and limit < len(recs):  # an even stride keeps every class in
        recs = [recs[i] for i in np.linspace(0, len(recs) - 1, limit).round().astype(int)]
    x, y, recs = decode_records(recs, meta["input_size"])
    index = {c: i for i, c in enumerate(meta["classes"])}
    y_idx = torch.tensor([index[int(c)] for c in y])
    t0 = time.time()
    params, grads, losses = box_pull(model, x, y_idx, torch.device("cpu"))
    birds = birds_of(recs)
    other = derangement(len(birds), seed)
    out = {"n": len(birds), "loss": float(losses.mean()), "fd_step": fd_step,
           "transformers": [alignment(params[:, k, 1:].numpy(), -grads[:, k, 1:].numpy(), birds, other, seed)
                            for k in range(params.shape[1])]}
    out["smoothed"] = {}
    for sigma in blurs:  # the gradient with the boxes' smoothed-gradient option (stn_core.grad_smoothing)
        model.grad_blur = sigma
        ps, gs, _ = box_pull(model, x, y_idx, torch.device("cpu"))
        out["smoothed"][sigma] = [alignment(ps[:, k, 1:].numpy(), -gs[:, k, 1:].numpy(), birds, other, seed)
                                  for k in range(ps.shape[1])]
    model.grad_blur = 0.0
    if fd_step > 0:
        p2, slopes = box_slope(model, x, y_idx, torch.device("cpu"), fd_step)
        out["slope"] = [alignment(p2[:, k, 1:].numpy(), -slopes[:, k].numpy(), birds, other, seed)
                        for k in range(p2.shape[1])]
    out["seconds"] = time.time() - t0
    return out


def summary(results: dict[str, dict]) -> list[str]:
    """One line per signal: its mean cosine with each bird's own part and with another bird's, over every
    model × transformer × part row, and how many rows show a per-bird pull (CI above 0)."""
    exact = "the exact gradient (what training follows)"
    signals: dict[str, list[dict]] = {exact: []}
    for r in results.values():
        signals[exact] += [t[p] for t in r["transformers"] for p in ("head", "body")]
        for sigma, rows in (r.get("smoothed") or {}).items():
            signals.setdefault(f"the gradient on the image blurred by σ = {sigma:g} px", []).extend(
                t[p] for t in rows for p in ("head", "body"))
        if r.get("slope"):
            signals.setdefault(f"the loss's slope over ±{r['fd_step']:g}", []).extend(
                t[p] for t in r["slope"] for p in ("head", "body"))
    out = ["**Summary** (means over every model × transformer × part row below):", ""]
    for name, rows in signals.items():
        if rows:
            out.append(f"- {name}: cosine with the bird's own part {np.mean([x['own'] for x in rows]):+.3f}, with "
                       f"another bird's {np.mean([x['other'] for x in rows]):+.3f}; points towards the own part for "
                       f"{100 * np.mean([x['towards'] for x in rows]):.1f} % of birds; per-bird pull (CI above 0) in "
                       f"{sum(x['ci'][0] > 0 for x in rows)} of {len(rows)} rows.")
    return out


def report(results: dict[str, dict], split: str, command: str) -> str:
    lines = ["# CUB: does the loss pull each attention box towards that bird's head?", "",
             f"Made by `{command}` (the docstring says how). Split: **{split}**. For each shipped model, each "
             "transformer and each bird: the cosine between the descent direction −∂L/∂(tx, ty) at the box the "
             "model predicts and the way from that box's centre to the bird's head (or body) centroid. "
             "*own*: this bird's part; *another bird's*: the part of another bird (a seeded derangement) "
             "measured from this box, the control for a pull towards where heads usually are. A localisation "
             "net can learn per-bird boxes from this signal only if *own* exceeds *another bird's* (its 95 % "
             "paired bootstrap interval above 0).", ""]
    lines += summary(results) + [""]
    threads = torch.get_num_threads()
    for name, r in results.items():
        lines += [f"## {name}", "", f"{r['n']} birds, mean loss {r['loss']:.3f}, {r['seconds']:.0f} s ({threads} CPU "
                  f"thread{'s' if threads > 1 else ''}, float32).", ""]
        tables = [("The gradient training follows, −∂L/∂(tx, ty) (bilinear sampler):", r["transformers"])]
        for sigma, rows in (r.get("smoothed") or {}).items():
            tables.append((f"The same gradient on the image blurred by σ = {sigma:g} px (the crops unchanged: "
                           "`stn_core.grad_smoothing`, ours):", rows))
        if r.get("slope"):
            tables.append((f"The loss's coarse slope, central differences over ±{r['fd_step']:g} (normalised units; "
                           "the box moved, the rest held):", r["slope"]))
        for title, rows in tables:
            lines += [title, "", "| transformer | part | cos, own | cos, another bird's | own − another (95 % CI) | "
                      "points towards own (%) | birds | median ‖slope‖ |", "|---|---|---|---|---|---|---|---|"]
            for k, t in enumerate(rows):
                for part in ("head", "body"):
                    p = t[part]
                    lines.append(f"| {k + 1} ({COLOURS[k]}) | {part} | {p['own']:+.3f} | {p['other']:+.3f} | "
                                 f"{p['diff']:+.3f} [{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}] | "
                                 f"{100 * p['towards']:.1f} | {p['n']} | {t['grad_norm']:.2e} |")
            per_bird = [(k, part) for k, t in enumerate(rows) for part in ("head", "body") if t[part]["ci"][0] > 0]
            lines += ["", "Per-bird pull (own above another bird's, CI above 0): " + (
                ", ".join(f"transformer {k + 1} towards the {part}" for k, part in per_bird) if per_bird
                else "**none**."), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", nargs="+", default=list(DEFAULT), help="names in checkpoints/")
    ap.add_argument("--split", choices=["train", "test"], default="train")
    ap.add_argument("--limit", type=int, default=None, help="this many birds, evenly spread over the split")
    ap.add_argument("--fd-step", type=float, default=0.1,
                    help="also the loss's slope by central differences over ±this (normalised units; 0: skip)")
    ap.add_argument("--grad-blur", type=float, nargs="*", default=[],
                    help="also the gradient on the image blurred by these σ (px of the model input)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "results" / "cub-pull.md"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    results = {}
    for name in a.checkpoints:
        stem = ROOT / "checkpoints" / name
        if not stem.with_suffix(".json").is_file():
            raise SystemExit(f"error: no checkpoint {name} in checkpoints/")
        results[name] = probe(stem, a.split, a.limit, a.fd_step, tuple(a.grad_blur))
        print(f"{name}: {results[name]['n']} birds in {results[name]['seconds']:.0f} s", flush=True)
    cmd = "python scripts/cub_box_pull.py" + ("" if a.checkpoints == list(DEFAULT) else
                                              " --checkpoints " + " ".join(a.checkpoints))
    cmd += ("" if a.split == "train" else f" --split {a.split}") + ("" if a.limit is None else f" --limit {a.limit}")
    cmd += "" if a.fd_step == 0.1 else f" --fd-step {a.fd_step:g}"
    cmd += (" --grad-blur " + " ".join(f"{b:g}" for b in a.grad_blur)) if a.grad_blur else ""
    atomic_write_bytes(Path(a.out), (report(results, a.split, cmd) + "\n").encode())
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
