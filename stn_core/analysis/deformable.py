"""Where a trained deformable-conv CNN (:class:`stn_core.models.DeformableCNN`) reads its input, for one
input ``x (1, 1, H, W)``:

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

Pixel coordinates: ``(x, y)`` = (column, row); pixel (x, y) is the centre of column x, row y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stn_core.dcn import DeformConv2d

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


def as_image_batch(x: np.ndarray | torch.Tensor) -> torch.Tensor:
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
    t = as_image_batch(x)
    want = getattr(model, "config", {}).get("input_size")
    if want is not None and tuple(t.shape[-2:]) != (want, want):
        raise ValueError(f"this model takes {want}×{want} digits, got {t.shape[-2]}×{t.shape[-1]}")
    stages: list[Stage] = []
    with torch.inference_mode():
        h = model.transformed(t)
        image_hw = tuple(h.shape[-2:])
        for m in model.classifier:
            in_hw = tuple(h.shape[-2:]) if h.dim() == 4 else None
            if isinstance(m, DeformConv2d):
                d = m.deform(h)
                offset, h = d.offset, d.output
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
