"""STN against deformable convolution on distorted MNIST: the checkpoints compared, the STN side's view of
an image (θ, the sampled region, the canonical output), what each model's sampling machinery predicts
and how many numbers per image (computed from the models themselves), test errors from the checkpoint
JSONs and costs from ``results/stn-vs-dcn.json`` (``scripts/make_stn_vs_dcn.py``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn

from stn_core import registry as reg
from stn_core.analysis import inspect as insp
from stn_core.analysis.deformable import as_image_batch
from stn_core.data.common import repo_root
from stn_core.data.tasks import input_size
from stn_core.models import TPS_POINTS, build_model

#: The models the page and the results compare: key → (label, model name, transform).
COMPARE_KEYS = ("cnn", "st-cnn-aff", "st-cnn-tps", "dcn")
COMPARE_LABELS = {"cnn": "CNN", "st-cnn-aff": "ST-CNN Aff", "st-cnn-tps": "ST-CNN TPS", "dcn": "DCN"}
COMPARE_SPECS = {"cnn": ("cnn", None), "st-cnn-aff": ("st-cnn", "affine"), "st-cnn-tps": ("st-cnn", "tps"),
                 "dcn": ("dcn", None)}
RESULTS_JSON = "results/stn-vs-dcn.json"


# --------------------------------------------------------------------------- checkpoints

def stem(dist: str, key: str, directory: str | os.PathLike | None = None) -> Path:
    """``<dir>/mnist_<dist>_<key>`` (no suffix); ``key`` one of :data:`COMPARE_KEYS`."""
    if key not in COMPARE_KEYS:
        raise ValueError(f"unknown model key {key!r}; choose one of {', '.join(COMPARE_KEYS)}")
    return reg.stem(reg.stem_name(dist, key), directory)


def read_meta(dist: str, key: str, directory: str | os.PathLike | None = None) -> tuple[dict | None, str | None]:
    """(JSON metadata, None) of a usable checkpoint; (None, why) when it is missing or broken."""
    stem(dist, key)
    e = reg.read_entry(reg.checkpoint_dir() if directory is None else directory, dist, key)
    if e is None:
        return None, "not trained yet"
    return (e.meta, None) if e.usable else (None, e.error)

def default_distortion(directory: str | os.PathLike | None = None) -> str:
    """The distortion a page opens on: the first of RTS, R, P, E with a usable, finished DCN
    checkpoint, else the first with any usable DCN checkpoint, else RTS."""
    order = ("rts",) + tuple(d for d in reg.TABLE1_DISTORTIONS if d != "rts")
    metas = {d: read_meta(d, "dcn", directory)[0] for d in order}
    for want_final in (True, False):
        for d in order:
            if metas[d] is not None and (bool(metas[d].get("final")) or not want_final):
                return d
    return "rts"


# --------------------------------------------------------------------------- STN side

def stn_view(model: nn.Module, x: np.ndarray | torch.Tensor) -> insp.Prediction:
    """An ST-CNN's view of one image: θ (``theta``), the sampled region (``region``, normalised),
    the grid, TPS control points (``ctrl``), the canonical output and the prediction
    (:func:`pages.lab.explorer.predict`)."""
    if getattr(model, "transformer", None) is None:
        raise ValueError("this model has no spatial transformer")
    return insp.predict(model, as_image_batch(x))[0]


def theta_rows(p: insp.Prediction) -> list[list[float]]:
    """θ as rows for a table: affine 2×3, projective 3×3, TPS K rows of (x, y) control points."""
    th = np.asarray(p.theta, dtype=np.float64)
    if p.kind == "affine":
        return th.reshape(2, 3).round(4).tolist()
    if p.kind == "projective":
        return th.reshape(3, 3).round(4).tolist()
    return th.reshape(-1, 2).round(4).tolist()


# --------------------------------------------------------------------------- comparison

def predicted_numbers(model: nn.Module, side: int | None = None) -> tuple[int, str]:
    """(numbers the sampling machinery predicts per image, how) — 6 for affine, 2K for TPS,
    Σ over deformable layers of 2·k·k·H'·W' offsets (+ k·k·H'·W' masks when modulated), 0 for
    the CNN. Computed by one forward pass on a zero image."""
    side = int(side or model.config["input_size"])
    st = getattr(model, "transformer", None)
    if st is not None:
        n = {"affine": 6, "projective": 8, "tps": 2 * st.tps_points if hasattr(st, "tps_points") else 2 * TPS_POINTS}[
            st.transform]
        return n, ("6 numbers: the affine θ" if st.transform == "affine" else
                   f"{n} numbers: 2K for K = {n // 2} TPS control points" if st.transform == "tps" else
                   "8 numbers: the projective matrix")
    layers = getattr(model, "deform_layers", [])
    if not layers:
        return 0, "nothing (fixed sampling grid)"
    with torch.inference_mode():
        offsets = model.eval().views(torch.zeros(1, 1, side, side)).offsets
    shapes = [(l.taps, l.modulated, *off.shape[2:]) for l, off in zip(layers, offsets)]
    total, parts = 0, []
    for i, (k2, mod, h, w) in enumerate(shapes, 1):
        n = (3 if mod else 2) * k2 * h * w
        total += n
        parts.append(f"conv {i}: {'3' if mod else '2'}·{k2}·{h}·{w} = {n:,}")
    return total, "offsets per position and tap: " + "; ".join(parts)


def compare_model(dist: str, key: str) -> nn.Module:
    """A freshly initialised model of :data:`COMPARE_KEYS` at the input size of ``dist``
    (same architecture as the trained checkpoint; for counting, not for predictions)."""
    name, transform = COMPARE_SPECS[key]
    return build_model(name, transform, input_size(reg.DIST_TASK[dist]))


_NUMBERS: dict[tuple[str, str], int] = {}


def numbers_per_image(dist: str, key: str) -> int:
    """:func:`predicted_numbers` of model ``key`` on distortion ``dist`` (cached; DCNv1)."""
    if (dist, key) not in _NUMBERS:
        _NUMBERS[(dist, key)] = predicted_numbers(compare_model(dist, key))[0]
    return _NUMBERS[(dist, key)]


WHAT_PREDICTED = {
    "cnn": "—",
    "st-cnn-aff": "one global affine θ per image",
    "st-cnn-tps": "one global TPS warp per image (K = 16 control points)",
    "dcn": "an offset (dx, dy) for every kernel tap at every output position",
}
WARPED_MAP = {"cnn": "no", "st-cnn-aff": "yes: the canonical image V", "st-cnn-tps": "yes: the canonical image V",
              "dcn": "no: the sampling is folded into the convolution"}


def load_results(path: str | os.PathLike | None = None) -> dict | None:
    """The measurements written by ``scripts/make_stn_vs_dcn.py`` (``results/stn-vs-dcn.json``),
    or None when it has not been run yet (or the file is unreadable)."""
    p = Path(path) if path is not None else repo_root() / RESULTS_JSON
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _fmt_ratio(v) -> str:
    return f"{float(v):.2f}×" if isinstance(v, (int, float)) and math.isfinite(v) else "not measured"


def trained_on(meta: dict | None) -> str:
    """The training samples of a checkpoint, e.g. "15,625 × 256 = 4 M" (steps × batch from its JSON's
    train_args; "–" when not recorded): models of one distortion may have had different budgets."""
    n = reg.training_samples(meta)
    if n is None:
        return "–"
    args = meta["train_args"]
    count = f"{n / 1e6:.3g} M" if n >= 1e6 else f"{n / 1e3:.3g} k" if n >= 1e3 else str(n)
    return f"{args['steps']:,} × {args['batch']} = {count}"


def comparison_rows(dist: str, results: Mapping | None = None,
                    directory: str | os.PathLike | None = None) -> list[dict[str, str]]:
    """The page's side-by-side table for distortion ``dist``: one dict per model of
    :data:`COMPARE_KEYS` with "model", "predicts", "numbers per image", "warped map",
    "fwd+bwd vs CNN (CPU)" (and "(GPU)" when the results have CUDA timings), "test error", "trained on
    (steps × batch)" —
    numbers from ``results`` (:func:`load_results`) and the checkpoint JSONs, never typed by hand."""
    res = (results or {}).get("tasks", {}).get(dist, {}) if results else {}
    gpu = isinstance(res, Mapping) and any(isinstance(v, Mapping) and "fwd_bwd_ratio_cuda" in v for v in res.values())
    rows = []
    for key in COMPARE_KEYS:
        meta, why = read_meta(dist, key, directory)
        err = reg.training_status(meta)[0] if meta is not None else None
        r = res.get(key, {}) if isinstance(res, Mapping) else {}
        n = numbers_per_image(dist, key)
        rows.append({  # the order: what is predicted, how many numbers, warped map?, cost; then the error
            "model": COMPARE_LABELS[key],
            "predicts": WHAT_PREDICTED[key],
            "numbers per image": f"{n:,}",
            "warped map": WARPED_MAP[key],
            "fwd+bwd vs CNN (CPU)": _fmt_ratio(r.get("fwd_bwd_ratio_cpu")),
            **({"fwd+bwd vs CNN (GPU)": _fmt_ratio(r.get("fwd_bwd_ratio_cuda"))} if gpu else {}),
            "test error": f"{err:.2f} %" if err is not None else (why or "not trained yet"),
            "trained on (steps × batch)": trained_on(meta),
        })
    return rows


