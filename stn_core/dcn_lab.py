"""Logic of the "STN vs deformable convolution" page (issue 7), of the Tour, and of
``scripts/make_stn_vs_dcn.py``.

DCN side (a trained ``dcn`` model, :class:`stn_core.models.DeformableCNN`, one input
``x (1, 1, H, W)``):

* :func:`sampling_points` — where one deformable layer's k×k taps read its input for one output
  location, ``p0 + p_k + Δp_k``, in pixels of *that layer's* input; :func:`regular_points` the
  same without the offsets (``p0 + p_k``).
* :func:`image_points` — those taps drawn over the input image: positions in a pooled feature map
  are mapped back through the earlier layers by their *regular* centres (a max-pool position to
  the centre of its pool window, a convolution output to the centre of its undeformed kernel).
* :func:`receptive_points` — the taps of the last deformable layer traced back through the earlier
  deformable layer(s) to image pixels: each tap of the last layer, mapped through the max-pool to
  the centre of its pool window (documented simplification: max-pool picks one of the window's
  positions, which we do not know without the activations), fans out into the k×k deformed taps
  of the earlier layer there; the earlier layer's offsets at that fractional position are read by
  bilinear interpolation of its offset field (border-clamped). Taps of the last layer that read
  only zero padding (outside the map by a pixel or more) are dropped.
* :func:`offset_magnitude_map` — the mean length ``|Δp_k|`` of a layer's k·k offsets at every
  output position, in pixels of the layer's input.

STN side: :func:`stn_view` (θ, the sampled quadrilateral or TPS grid, the canonical output and
the prediction — :func:`stn_core.explorer.predict`).

Comparison (:func:`comparison_rows`): what each model's sampling machinery predicts and how many
numbers per image, computed from the models themselves; test errors from the checkpoint JSONs;
costs from ``results/stn-vs-dcn.json`` written by ``scripts/make_stn_vs_dcn.py``.

Pixel coordinates: ``(x, y)`` = (column, row); pixel (x, y) is the centre of column x, row y.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import explorer as ex
from .checkpoints import CheckpointError, checkpoint_paths, load_meta
from .dcn import DeformConv2d
from .models import TPS_POINTS

#: The models the page and the results compare: key → (label, model name, transform).
COMPARE_KEYS = ("cnn", "st-cnn-aff", "st-cnn-tps", "dcn")
COMPARE_LABELS = {"cnn": "CNN", "st-cnn-aff": "ST-CNN Aff", "st-cnn-tps": "ST-CNN TPS", "dcn": "DCN"}
COMPARE_SPECS = {"cnn": ("cnn", None), "st-cnn-aff": ("st-cnn", "affine"), "st-cnn-tps": ("st-cnn", "tps"),
                 "dcn": ("dcn", None)}
RESULTS_JSON = "results/stn-vs-dcn.json"


# --------------------------------------------------------------------------- checkpoints

def stem(dist: str, key: str, directory: str | os.PathLike | None = None) -> Path:
    """``<dir>/mnist_<dist>_<key>`` (no suffix); ``key`` one of :data:`COMPARE_KEYS`."""
    if dist not in ex.DISTORTIONS:
        raise ValueError(f"unknown distortion {dist!r}; choose one of {', '.join(ex.DISTORTIONS)}")
    if key not in COMPARE_KEYS:
        raise ValueError(f"unknown model key {key!r}; choose one of {', '.join(COMPARE_KEYS)}")
    folder = ex.checkpoint_dir() if directory is None else Path(directory)
    return folder / f"mnist_{dist}_{key}"


def train_command(dist: str, key: str, folder: str = "checkpoints") -> str:
    """The CLI command that trains ``mnist_<dist>_<key>`` with the paper's schedule."""
    model, transform = COMPARE_SPECS[key]
    tr = f" --transform {transform}" if transform else ""
    return f"python -m stn_core.train --task {ex.DIST_TASK[dist]} --model {model}{tr} --out {folder}/mnist_{dist}_{key}"


def read_meta(dist: str, key: str, directory: str | os.PathLike | None = None) -> tuple[dict | None, str | None]:
    """(JSON metadata, None) of a usable checkpoint; (None, why) when it is missing or broken."""
    paths = checkpoint_paths(stem(dist, key, directory))
    if not paths["meta"].is_file() and not paths["weights"].is_file():
        return None, "not trained yet"
    try:
        meta = load_meta(paths["meta"])
    except CheckpointError as e:
        return None, str(e)
    want = COMPARE_SPECS[key]
    if meta.get("task") != ex.DIST_TASK[dist] or (meta.get("model"), meta.get("transform")) != want:
        return None, f"{paths['meta']}: metadata says {meta.get('task')} / {meta.get('model')}, not {key}"
    if not paths["weights"].is_file():
        return None, f"{paths['weights']}: weights missing"
    return meta, None


def default_distortion(directory: str | os.PathLike | None = None) -> str:
    """The distortion a page opens on: the first of RTS, R, P, E with a usable, finished DCN
    checkpoint, else the first with any usable DCN checkpoint, else RTS."""
    order = ("rts",) + tuple(d for d in ex.DISTORTIONS if d != "rts")
    metas = {d: read_meta(d, "dcn", directory)[0] for d in order}
    for want_final in (True, False):
        for d in order:
            if metas[d] is not None and (bool(metas[d].get("final")) or not want_final):
                return d
    return "rts"


# --------------------------------------------------------------------------- DCN: one forward pass

@dataclass
class Stage:
    """One spatial module of the classifier, as seen in one forward pass: ``kind`` "deform" |
    "conv" | "pool" | "other"; ``in_hw`` / ``out_hw`` its input / output sizes; ``k``, ``stride``,
    ``padding``; for "deform" ``offset (2·k·k, H', W')`` (float64, this image) and ``layer``."""

    kind: str
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    k: int = 1
    stride: int = 1
    padding: int = 0
    offset: torch.Tensor | None = None
    layer: DeformConv2d | None = None


@dataclass
class DcnView:
    """A DCN's view of one image: ``stages`` of the classifier, ``probs (C,)``, ``pred``."""

    stages: list[Stage]
    probs: np.ndarray
    pred: int
    image_hw: tuple[int, int] = field(default=(0, 0))

    @property
    def deform_stages(self) -> list[int]:
        """Indices into ``stages`` of the deformable layers, in order."""
        return [i for i, s in enumerate(self.stages) if s.kind == "deform"]


def _pair(v) -> int:
    v = v[0] if isinstance(v, (tuple, list)) else v
    return int(v)


def _as_image_batch(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
    while t.dim() < 4:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[0] != 1 or t.shape[1] != 1:
        raise ValueError(f"expected one grey image (H, W) or (1, 1, H, W), got {tuple(t.shape)}")
    return t


@torch.inference_mode()
def dcn_view(model: nn.Module, x: np.ndarray | torch.Tensor) -> DcnView:
    """Run ``model`` (a DCN) on one image ``x (1, 1, H, W)`` module by module and record every
    spatial stage (sizes, the deformable layers' offsets). One forward pass."""
    layers = getattr(model, "deform_layers", None)
    if not layers:
        raise ValueError("this model has no deformable convolution layers (expected a dcn model)")
    t = _as_image_batch(x)
    want = getattr(model, "config", {}).get("input_size")
    if want is not None and tuple(t.shape[-2:]) != (want, want):
        raise ValueError(f"this model takes {want}×{want} digits, got {t.shape[-2]}×{t.shape[-1]}")
    stages: list[Stage] = []
    with ex._FORWARD_LOCK:  # a cached model is shared by all sessions
        h = model.transformed(t)
        image_hw = tuple(h.shape[-2:])
        for m in model.classifier:
            in_hw = tuple(h.shape[-2:]) if h.dim() == 4 else None
            if isinstance(m, DeformConv2d):
                offset, _ = m.offsets_and_mask(h)
                h = m(h)
                stages.append(Stage("deform", in_hw, tuple(h.shape[-2:]), m.kernel_size, 1, m.padding,
                                    offset[0].double().clone(), m))
                continue
            h = m(h)
            if in_hw is None or h.dim() != 4:
                continue
            if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
                stages.append(Stage("pool", in_hw, tuple(h.shape[-2:]), _pair(m.kernel_size), _pair(m.stride),
                                    _pair(m.padding)))
            elif isinstance(m, nn.Conv2d):
                stages.append(Stage("conv", in_hw, tuple(h.shape[-2:]), _pair(m.kernel_size), _pair(m.stride),
                                    _pair(m.padding)))
            elif tuple(h.shape[-2:]) != in_hw:
                stages.append(Stage("other", in_hw, tuple(h.shape[-2:])))
    probs = torch.softmax(h.float(), 1)[0].numpy()
    return DcnView(stages, probs, int(probs.argmax()), image_hw)


def _deform_stage(view: DcnView, layer: int) -> tuple[int, Stage]:
    idx = view.deform_stages
    if not 0 <= int(layer) < len(idx):
        raise ValueError(f"layer must be 0 … {len(idx) - 1} (the model has {len(idx)} deformable layers), "
                         f"got {layer}")
    i = idx[int(layer)]
    return i, view.stages[i]


def _check_out(stage: Stage, out_yx: tuple[int, int]) -> tuple[int, int]:
    r, c = int(out_yx[0]), int(out_yx[1])
    ho, wo = stage.out_hw
    if not (0 <= r < ho and 0 <= c < wo):
        raise ValueError(f"output location (row {r}, col {c}) is outside this layer's {ho}×{wo} output")
    return r, c


def _taps(stage: Stage, rows: torch.Tensor, cols: torch.Tensor, offsets: torch.Tensor | None) -> torch.Tensor:
    """Tap positions (x, y) in the stage's input pixels for output positions (rows, cols) ``(M,)``
    (fractional allowed) with offsets ``(M, 2·k·k)`` (None: regular grid) → ``(M, k·k, 2)``."""
    k, p = stage.k, stage.padding
    ty, tx = torch.meshgrid(torch.arange(k, dtype=torch.float64), torch.arange(k, dtype=torch.float64), indexing="ij")
    x = cols[:, None] - p + tx.reshape(1, -1)
    y = rows[:, None] - p + ty.reshape(1, -1)
    if offsets is not None:
        off = offsets.reshape(-1, k * k, 2)
        y, x = y + off[..., 0], x + off[..., 1]
    return torch.stack([x, y], -1)


def _offsets_at(stage: Stage, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The stage's offset field read at fractional output positions by bilinear interpolation
    (border-clamped): ``(M, 2·k·k)``."""
    ho, wo = stage.out_hw
    gx = (2 * cols + 1) / wo - 1
    gy = (2 * rows + 1) / ho - 1
    grid = torch.stack([gx, gy], -1).view(1, 1, -1, 2)
    out = F.grid_sample(stage.offset[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].T


def regular_points(view: DcnView, layer: int, out_yx: tuple[int, int]) -> np.ndarray:
    """The undeformed taps ``p0 + p_k`` of deformable layer ``layer`` (0-based) for output
    location ``out_yx`` (row, col): ``(k·k, 2)`` (x, y) in pixels of the layer's input."""
    _, st = _deform_stage(view, layer)
    r, c = _check_out(st, out_yx)
    return _taps(st, torch.tensor([float(r)], dtype=torch.float64), torch.tensor([float(c)], dtype=torch.float64),
                 None)[0].numpy()


def sampling_points(model: nn.Module | DcnView, x: np.ndarray | torch.Tensor | None, layer: int,
                    out_yx: tuple[int, int]) -> np.ndarray:
    """Where deformable layer ``layer`` (0-based) samples its input for output location
    ``out_yx`` (row, col): ``p0 + p_k + Δp_k`` as ``(k·k, 2)`` (x, y) in pixels of that layer's
    input, taps row-major. ``model`` may be a :class:`DcnView` already computed (then ``x`` is ignored)."""
    view = model if isinstance(model, DcnView) else dcn_view(model, x)
    _, st = _deform_stage(view, layer)
    r, c = _check_out(st, out_yx)
    off = st.offset[:, r, c][None]
    return _taps(st, torch.tensor([float(r)], dtype=torch.float64), torch.tensor([float(c)], dtype=torch.float64),
                 off)[0].numpy()


def _back_to_image(view: DcnView, stage_index: int, pts: np.ndarray) -> np.ndarray:
    """Map (x, y) points in the input of ``stages[stage_index]`` back to image pixels through the
    earlier stages by their regular centres: pool window centre ``s·u + (k − 1)/2 − pad``; a
    convolution output ``q`` → the centre of its undeformed kernel ``q − pad + (k − 1)/2``."""
    p = np.asarray(pts, dtype=np.float64).copy()
    for st in reversed(view.stages[:stage_index]):
        if st.kind in ("pool", "conv", "deform"):
            p = st.stride * p + (st.k - 1) / 2.0 - st.padding
        elif st.kind == "other":
            p = (p + 0.5) * np.array([st.in_hw[1] / st.out_hw[1], st.in_hw[0] / st.out_hw[0]]) - 0.5
    return p


def image_points(view: DcnView, layer: int, out_yx: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(deformed, regular) taps of ``layer`` for ``out_yx`` in image pixels, each ``(k·k, 2)``
    (positions in feature maps mapped back by regular centres, see :func:`_back_to_image`)."""
    i, _ = _deform_stage(view, layer)
    return (_back_to_image(view, i, sampling_points(view, None, layer, out_yx)),
            _back_to_image(view, i, regular_points(view, layer, out_yx)))


def output_centres(view: DcnView, layer: int) -> np.ndarray:
    """Image position of every output location of ``layer``: ``(H', W', 2)`` (x, y), the centre of
    its undeformed kernel mapped back to the image (where to draw a clickable marker)."""
    i, st = _deform_stage(view, layer)
    ho, wo = st.out_hw
    ys, xs = np.mgrid[0:ho, 0:wo].astype(np.float64)
    pts = np.stack([xs, ys], -1).reshape(-1, 2) - st.padding + (st.k - 1) / 2.0
    return _back_to_image(view, i, pts).reshape(ho, wo, 2)


def _trace(view: DcnView, out_yx: tuple[int, int], deformed: bool) -> np.ndarray:
    idx = view.deform_stages
    last = idx[-1]
    st = view.stages[last]
    r, c = _check_out(st, out_yx)
    rows = torch.tensor([float(r)], dtype=torch.float64)
    cols = torch.tensor([float(c)], dtype=torch.float64)
    off = st.offset[:, r, c][None] if deformed else None
    pts = _taps(st, rows, cols, off).reshape(-1, 2)  # (x, y) in the last layer's input
    h, w = st.in_hw
    keep = (pts[:, 0] > -1) & (pts[:, 0] < w) & (pts[:, 1] > -1) & (pts[:, 1] < h)
    pts = pts[keep]
    for s in reversed(view.stages[:last]):
        if s.kind == "deform":
            rows, cols = pts[:, 1], pts[:, 0]
            off = _offsets_at(s, rows, cols) if deformed else None
            pts = _taps(s, rows, cols, off).reshape(-1, 2)
        elif s.kind in ("pool", "conv"):
            pts = s.stride * pts + (s.k - 1) / 2.0 - s.padding
        elif s.kind == "other":
            scale = torch.tensor([s.in_hw[1] / s.out_hw[1], s.in_hw[0] / s.out_hw[0]], dtype=torch.float64)
            pts = (pts + 0.5) * scale - 0.5
    return pts.numpy()


def receptive_points(model: nn.Module | DcnView, x: np.ndarray | torch.Tensor | None,
                     out_yx: tuple[int, int], deformed: bool = True) -> np.ndarray:
    """The taps of the last deformable layer for its output location ``out_yx`` (row, col), traced
    back through the pools and earlier deformable layers to image pixels: ``(P, 2)`` (x, y) with
    ``P = k_last² · k_first² …`` less the taps dropped outside the map (module docstring).
    ``deformed=False`` gives the same construction with all offsets zero (the plain CNN's field)."""
    view = model if isinstance(model, DcnView) else dcn_view(model, x)
    return _trace(view, out_yx, deformed)


def offset_magnitude_map(model: nn.Module | DcnView, x: np.ndarray | torch.Tensor | None, layer: int) -> np.ndarray:
    """Mean offset length ``mean_k |Δp_k|`` of deformable layer ``layer`` at every output
    position: ``(H', W')`` in pixels of the layer's input."""
    view = model if isinstance(model, DcnView) else dcn_view(model, x)
    _, st = _deform_stage(view, layer)
    k2 = st.k * st.k
    off = st.offset.reshape(k2, 2, *st.out_hw)
    return off.square().sum(1).sqrt().mean(0).numpy()


def chain_locations(view: DcnView, out_yx: tuple[int, int]) -> list[tuple[int, int]]:
    """For an output location of the last deformable layer, one output location per deformable
    layer (first → last): each earlier layer's is the one its successor's *centre* tap reads
    (deformed), mapped back through the pools to the nearest output position, clamped to the map."""
    idx = view.deform_stages
    locs = [(int(out_yx[0]), int(out_yx[1]))]
    _check_out(view.stages[idx[-1]], out_yx)
    for n in range(len(idx) - 1, 0, -1):
        st = view.stages[idx[n]]
        r, c = locs[0]
        centre = _taps(st, torch.tensor([float(r)], dtype=torch.float64), torch.tensor([float(c)], dtype=torch.float64),
                       st.offset[:, r, c][None])[0, (st.k * st.k) // 2].numpy()
        for s in reversed(view.stages[idx[n - 1] + 1:idx[n]]):
            if s.kind in ("pool", "conv"):
                centre = s.stride * centre + (s.k - 1) / 2.0 - s.padding
        ho, wo = view.stages[idx[n - 1]].out_hw
        near = [int(np.clip(math.ceil(float(v) - 0.5), 0, n - 1)) for v, n in ((centre[1], ho), (centre[0], wo))]
        locs.insert(0, (near[0], near[1]))  # nearest position, halves rounded down (a pool window's centre)
    return locs


def layer_names(view: DcnView) -> list[str]:
    """Human names of the deformable layers: "conv 1 (9×9)", …"""
    return [f"conv {n + 1} ({view.stages[i].k}×{view.stages[i].k})" for n, i in enumerate(view.deform_stages)]


# --------------------------------------------------------------------------- figures

LAYER_COLOURS = ("#ff4b2b", "#ffd400", "#38d9a9", "#845ef7")
REGULAR_COLOUR = "#adb5bd"
FIELD_COLOUR = "#ff922b"
CLICK_TRACE = "output locations (click one)"


def sampling_figure(image: np.ndarray, view: DcnView, out_yx: tuple[int, int], title: str,
                    height: int = 460) -> "go.Figure":
    """The input with, for output location ``out_yx`` of the last deformable layer: each layer's
    k×k taps (:func:`chain_locations`), deformed (filled, coloured) against regular (hollow grey),
    and clickable markers at every output location of the last layer (trace named
    :data:`CLICK_TRACE`; a point's index is ``row·W' + col``)."""
    import plotly.graph_objects as go

    from . import viz

    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape[:2]
    names = layer_names(view)
    traces: list = [viz._image_trace(img, name="input")]
    pts = [np.zeros((0, 2))]
    centres = output_centres(view, len(view.deform_stages) - 1).reshape(-1, 2)
    wo = view.stages[view.deform_stages[-1]].out_hw[1]
    traces.append(go.Scatter(x=centres[:, 0], y=centres[:, 1], mode="markers", name=CLICK_TRACE,
                             customdata=[[i // wo, i % wo] for i in range(len(centres))],
                             marker=dict(color="rgba(255,255,255,0.25)", size=14, symbol="square",
                                         line=dict(color="#ffffff", width=1)),
                             hovertemplate="output row %{customdata[0]}, column %{customdata[1]}<extra></extra>"))
    for n, loc in enumerate(chain_locations(view, out_yx)):
        deformed, regular = image_points(view, n, loc)
        colour = LAYER_COLOURS[n % len(LAYER_COLOURS)]
        links = np.full((3 * len(regular), 2), np.nan)
        links[0::3], links[1::3] = regular, deformed
        traces.append(go.Scatter(x=links[:, 0], y=links[:, 1], mode="lines", name=f"{names[n]} offsets",
                                 line=dict(color=colour, width=1), opacity=0.6, hoverinfo="skip", showlegend=False))
        traces.append(go.Scatter(x=regular[:, 0], y=regular[:, 1], mode="markers", name=f"{names[n]} regular grid",
                                 marker=dict(color="rgba(0,0,0,0)", size=7, line=dict(color=REGULAR_COLOUR, width=1.5)),
                                 hoverinfo="skip"))
        traces.append(go.Scatter(x=deformed[:, 0], y=deformed[:, 1], mode="markers",
                                 name=f"{names[n]} taps at row {loc[0]}, col {loc[1]}",
                                 marker=dict(color=colour, size=8 if n else 6, line=dict(color="black", width=1)),
                                 hovertemplate=f"{names[n]}: x %{{x:.2f}}, y %{{y:.2f}}<extra></extra>"))
        pts += [deformed, regular]
    xr, yr = viz.view_range((h, w), np.concatenate(pts, 0), max_extra=0.3, margin=0.01)
    return viz._figure(traces, title, xr, yr, height)


def receptive_figure(image: np.ndarray, view: DcnView, out_yx: tuple[int, int], title: str,
                     height: int = 460) -> "go.Figure":
    """The input with the stacked receptive field of ``out_yx`` (:func:`receptive_points`):
    deformed (orange) against the plain CNN's (grey, all offsets zero)."""
    import plotly.graph_objects as go

    from . import viz

    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape[:2]
    reg = receptive_points(view, None, out_yx, deformed=False)
    dfm = receptive_points(view, None, out_yx)
    traces = [viz._image_trace(img, name="input"),
              go.Scatter(x=reg[:, 0], y=reg[:, 1], mode="markers", name=f"regular ({len(reg):,} taps)",
                         marker=dict(color=REGULAR_COLOUR, size=3), opacity=0.5, hoverinfo="skip"),
              go.Scatter(x=dfm[:, 0], y=dfm[:, 1], mode="markers", name=f"deformed ({len(dfm):,} taps)",
                         marker=dict(color=FIELD_COLOUR, size=3), opacity=0.55, hoverinfo="skip")]
    xr, yr = viz.view_range((h, w), np.concatenate([reg, dfm], 0), max_extra=0.3, margin=0.01)
    return viz._figure(traces, title, xr, yr, height)


def offset_figure(view: DcnView, layer: int, title: str, height: int = 360) -> "go.Figure":
    """Heat map of :func:`offset_magnitude_map` of ``layer`` (pixels of the layer's input)."""
    from . import viz

    return viz.heatmap_panel(offset_magnitude_map(view, None, layer), title, colorscale="Viridis", zmin=0.0,
                             colorbar_title="px", height=height)


def clicked_location(selection, view: DcnView) -> tuple[int, int] | None:
    """The (row, col) of the last-layer output marker picked in a plotly selection event
    (``st.plotly_chart(on_select=...)``'s value, or its ``selection`` dict); None if none."""
    if isinstance(selection, Mapping):
        sel = selection.get("selection", selection)
    else:
        sel = getattr(selection, "selection", None)
    points = (sel or {}).get("points", []) if isinstance(sel, Mapping) else []
    ho, wo = view.stages[view.deform_stages[-1]].out_hw
    for pt in reversed(list(points)):
        cd = pt.get("customdata") if isinstance(pt, Mapping) else None
        if isinstance(cd, (list, tuple)) and len(cd) == 2:
            r, c = int(cd[0]), int(cd[1])
            if 0 <= r < ho and 0 <= c < wo:
                return r, c
    return None


# --------------------------------------------------------------------------- STN side

def stn_view(model: nn.Module, x: np.ndarray | torch.Tensor) -> ex.Prediction:
    """An ST-CNN's view of one image: θ (``theta``), the sampled region (``region``, normalised),
    the grid, TPS control points (``ctrl``), the canonical output and the prediction
    (:func:`stn_core.explorer.predict`)."""
    if getattr(model, "transformer", None) is None:
        raise ValueError("this model has no spatial transformer")
    return ex.predict(model, _as_image_batch(x))[0]


def theta_rows(p: ex.Prediction) -> list[list[float]]:
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
    with torch.inference_mode(), ex._FORWARD_LOCK:
        model.eval()(torch.zeros(1, 1, side, side))
        shapes = [(l.taps, l.modulated, *l.last_offset.shape[2:]) for l in layers]
    total, parts = 0, []
    for i, (k2, mod, h, w) in enumerate(shapes, 1):
        n = (3 if mod else 2) * k2 * h * w
        total += n
        parts.append(f"conv {i}: {'3' if mod else '2'}·{k2}·{h}·{w} = {n:,}")
    return total, "offsets per position and tap: " + "; ".join(parts)


def compare_model(dist: str, key: str) -> nn.Module:
    """A freshly initialised model of :data:`COMPARE_KEYS` at the input size of ``dist``
    (same architecture as the trained checkpoint; for counting, not for predictions)."""
    from .datasets import input_size
    from .models import build_model

    name, transform = COMPARE_SPECS[key]
    return build_model(name, transform, input_size(ex.DIST_TASK[dist]))


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
    p = Path(path) if path is not None else ex.repo_root() / RESULTS_JSON
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _fmt_ratio(v) -> str:
    return f"{float(v):.2f}×" if isinstance(v, (int, float)) and math.isfinite(v) else "not measured"


def comparison_rows(dist: str, results: Mapping | None = None,
                    directory: str | os.PathLike | None = None) -> list[dict[str, str]]:
    """The page's side-by-side table for distortion ``dist``: one dict per model of
    :data:`COMPARE_KEYS` with "model", "predicts", "numbers per image", "warped map",
    "fwd+bwd vs CNN (CPU)" (and "(GPU)" when the results have CUDA timings), "test error" —
    numbers from ``results`` (:func:`load_results`) and the checkpoint JSONs, never typed by hand."""
    res = (results or {}).get("tasks", {}).get(dist, {}) if results else {}
    gpu = isinstance(res, Mapping) and any(isinstance(v, Mapping) and "fwd_bwd_ratio_cuda" in v for v in res.values())
    rows = []
    for key in COMPARE_KEYS:
        meta, why = read_meta(dist, key, directory)
        err = ex.training_status(meta)[0] if meta is not None else None
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
        })
    return rows


__all__ = ["COMPARE_KEYS", "COMPARE_LABELS", "DcnView", "Stage", "chain_locations", "clicked_location",
           "compare_model", "comparison_rows", "dcn_view", "image_points", "layer_names", "load_results",
           "numbers_per_image", "offset_figure", "offset_magnitude_map", "output_centres",
           "predicted_numbers", "read_meta", "receptive_figure", "receptive_points", "regular_points",
           "sampling_figure", "sampling_points", "stem", "stn_view", "theta_rows", "train_command"]
