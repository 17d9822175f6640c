"""View logic of the 3-D transformer page (no Streamlit): the page's state in the URL, the volume of a
shipped digit in a seeded pose, the hand-driven θ and the θ that undoes the pose, and the figures.
Data and models: :mod:`stn_core.data.volumes`, :mod:`stn_core.models.volume`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np
import torch

from pages.lab import figures as viz
from pages.lab import links
from stn_core.data import tasks as ds
from stn_core.data import volumes as V
from stn_core.models.volume import OUT
from stn_core.sampling3d import sample_3d
from stn_core.transforms3d import affine_grid_3d, box_corners_3d, rotation_matrix_3d, theta_3d

#: Seed key of the page's poses (independent of the training and test streams).
_PAGE_SEED_KEY = 31
MAX_SEED = 10**6
MODES = {"learned": "learned by the 3-D ST-CNN", "hand": "by hand"}
#: Hand θ slider ranges: rotations (degrees), scale, translation (normalised).
ROT_MAX, SCALE_RANGE, SHIFT_MAX = 90, (0.2, 1.0), 0.6
BOX_COLOURS = {"learned": "#f76707", "hand": "#1f5fbf", "undo": "#37b24d"}


@dataclass(frozen=True)
class PageState:
    """What the page shows; every field is in the URL (:meth:`query`)."""

    index: int = 0
    seed: int = 0
    mode: str = "learned"
    rx: float = 0.0
    ry: float = 0.0
    rz: float = 0.0
    scale: float = 1.0
    tx: float = 0.0
    ty: float = 0.0
    tz: float = 0.0

    def query(self) -> dict[str, str]:
        q = {k: (f"{v:g}" if isinstance(v, float) else str(v)) for k, v in asdict(self).items()}
        if self.mode != "hand":  # the hand θ only matters in hand mode
            for k in ("rx", "ry", "rz", "scale", "tx", "ty", "tz"):
                q.pop(k)
        return q


def _number(query: Mapping[str, str], name: str, default, lo, hi, warns: list[str]):
    """``query[name]`` as a number in [lo, hi] (int when ``default`` is), else ``default`` and a warning."""
    raw = query.get(name)
    if raw in (None, ""):
        return default
    parse = links.parse_int if isinstance(default, int) else links.parse_float
    v = parse(raw, lo, hi)
    if v is None:
        warns.append(f"Ignored {name}={str(raw)[:20]!r}: must be a number between {lo:g} and {hi:g}.")
        return default
    return v


def parse_state(query: Mapping[str, str], n_digits: int) -> tuple[PageState, list[str]]:
    """The state a link asks for, each bad value replaced by its default with a warning sentence."""
    warns: list[str] = []
    d = PageState()
    mode = query.get("mode") or d.mode
    if mode not in MODES:
        warns.append(f"Ignored mode={str(mode)[:20]!r}: choose one of {', '.join(MODES)}.")
        mode = d.mode
    lims = {"rx": (-ROT_MAX, ROT_MAX), "ry": (-ROT_MAX, ROT_MAX), "rz": (-ROT_MAX, ROT_MAX), "scale": SCALE_RANGE,
            "tx": (-SHIFT_MAX, SHIFT_MAX), "ty": (-SHIFT_MAX, SHIFT_MAX), "tz": (-SHIFT_MAX, SHIFT_MAX)}
    f = {k: float(_number(query, k, float(getattr(d, k)), lo, hi, warns)) for k, (lo, hi) in lims.items()}
    return PageState(_number(query, "index", d.index, 0, max(0, n_digits - 1), warns),
                     _number(query, "seed", d.seed, 0, MAX_SEED, warns), mode, **f), warns


# --------------------------------------------------------------------------- volumes and θ

def page_pose(seed: int) -> dict[str, torch.Tensor]:
    """The pose (one row) of the page's volume for ``seed`` (deterministic)."""
    return V.sample_pose(1, torch.Generator().manual_seed(ds.derive_seed(int(seed), _PAGE_SEED_KEY)))


def make_volume(digit: np.ndarray, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A 28×28 digit (float in [0, 1]) in the pose of ``seed`` → ``(1, 1, 60, 60, 60)`` and the pose."""
    pose = page_pose(seed)
    d = torch.as_tensor(np.asarray(digit, dtype=np.float32)).clamp(0, 1)
    if tuple(d.shape) != (V.DIGIT, V.DIGIT):
        raise ValueError(f"the digit must be a 28×28 image, got shape {tuple(d.shape)}")
    return V.make_volumes(d[None], pose), pose


def hand_theta(s: PageState) -> torch.Tensor:
    """θ ``(1, 3, 4)`` = [scale · R(rx, ry, rz) | (tx, ty, tz)] from the sliders (degrees, normalised)."""
    r = rotation_matrix_3d(torch.deg2rad(torch.tensor([[s.rx, s.ry, s.rz]], dtype=torch.float64)))
    return theta_3d(r * s.scale, torch.tensor([[s.tx, s.ty, s.tz]], dtype=torch.float64)).float()


def undo_state(state: PageState, pose: dict[str, torch.Tensor]) -> PageState:
    """The hand θ that undoes ``pose``: the output cube reads exactly the digit's 28³ block, turned back
    to face the viewer: θ = [(14/30)·R | shift/30] (R, shift: the pose's rotation and translation)."""
    deg = [math.degrees(float(a)) for a in pose["angles"][0]]
    t = [float(v) / (V.VOLUME / 2) for v in pose["shift"][0]]
    return PageState(state.index, state.seed, "hand", *deg, scale=V.DIGIT / V.VOLUME, tx=t[0], ty=t[1], tz=t[2])


def output_projection(volume: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The transformer's 28³ output for θ, flattened along depth ``(1, 1, 28, 28)`` (no model needed)."""
    with torch.no_grad():
        return V.projection(sample_3d(volume, affine_grid_3d(theta, (OUT, OUT, OUT))))


# --------------------------------------------------------------------------- figures

def volume_points(volume: torch.Tensor, threshold: float = 0.25, max_points: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """The voxels of ``volume (1, 1, D, H, W)`` brighter than ``threshold``: centres ``(M, 3)`` in voxel
    units (x, y, z), and their values; at most ``max_points`` (evenly thinned, brightest kept first)."""
    v = volume[0, 0].numpy()
    zz, yy, xx = np.nonzero(v > threshold)
    vals = v[zz, yy, xx]
    if vals.size > max_points:
        keep = np.sort(np.argsort(-vals, kind="stable")[:max_points])
        zz, yy, xx, vals = zz[keep], yy[keep], xx[keep], vals[keep]
    return np.stack([xx, yy, zz], 1).astype(np.float32) + 0.5, vals.astype(np.float32)


_EDGES = ((0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7))


def box_lines(theta: torch.Tensor, side: int = V.VOLUME) -> np.ndarray:
    """The 12 edges of the box θ ``(1, 3, 4)`` reads, as one polyline ``(36, 3)`` in voxel units with NaN
    rows between edges (corner order of :func:`stn_core.transforms3d.box_corners_3d`)."""
    c = ((box_corners_3d(theta.double())[0].numpy() + 1) * side / 2)
    gap = np.full((1, 3), np.nan)
    return np.concatenate([np.concatenate([c[[a, b]], gap]) for a, b in _EDGES])


def volume_figure(points: np.ndarray, values: np.ndarray, boxes: list[tuple[np.ndarray, str, str]],
                  height: int = 520):
    """The volume's bright voxels as points (the viewer looks along +z, as the projection does) and each
    box ``(lines, name, colour)``."""
    traces = [viz._trace("scatter3d", x=points[:, 0], y=points[:, 1], z=points[:, 2], mode="markers",
                         name="the digit's voxels", hoverinfo="skip",
                         marker=dict(size=2.5, color=values, colorscale="Greys", cmin=0, cmax=1, opacity=0.8))]
    for lines, name, colour in boxes:
        traces.append(viz._trace("scatter3d", x=lines[:, 0], y=lines[:, 1], z=lines[:, 2], mode="lines", name=name,
                                 hoverinfo="skip", line=dict(color=colour, width=5), connectgaps=False))
    ends = [np.nanmin(b[0], 0) for b in boxes] + [np.nanmax(b[0], 0) for b in boxes]
    lo = np.minimum(0.0, np.min(ends, 0) - 1) if ends else np.zeros(3)
    hi = np.maximum(float(V.VOLUME), np.max(ends, 0) + 1) if ends else np.full(3, float(V.VOLUME))
    span = float(np.max(hi - lo))  # one scale on every axis: the volume stays a cube, the boxes fit
    lo = (lo + hi) / 2 - span / 2
    axes = [dict(range=[float(lo[i]), float(lo[i] + span)], showbackground=True, backgroundcolor="#f3f5f9")
            for i in range(3)]
    layout = dict(
        height=height, margin=dict(l=0, r=0, t=10, b=0), font=dict(size=viz.FONT_SIZE),
        legend=dict(orientation="h", yanchor="top", y=-0.02, x=0.0),
        scene=dict(xaxis=dict(axes[0], title=dict(text="x")),
                   yaxis=dict(axes[1], title=dict(text="y"), range=axes[1]["range"][::-1]),
                   zaxis=dict(axes[2], title=dict(text="z (depth)")), aspectmode="cube",
                   camera=dict(eye=dict(x=1.3, y=-1.1, z=-1.5), up=dict(x=0, y=-1, z=0))),
    )
    return viz._figure(traces, layout)


def image_png(image: torch.Tensor | np.ndarray, size_px: int = 240) -> bytes:
    """A projection ``(S, S)`` (or ``(1, 1, S, S)``) → a crisp PNG about ``size_px`` wide, scaled to its own
    maximum (a projection is a mean along depth, so it is dimmer than the digit)."""
    a = np.asarray(image, dtype=np.float32).reshape(image.shape[-2], image.shape[-1])
    peak = float(a.max())
    a = a / peak if peak > 0 else a
    return viz.png_bytes(a, upscale=max(1, size_px // a.shape[0]))


def trained_summary(metas: Mapping[str, dict | None]) -> str:
    """One sentence on the shipped pair, from their JSONs (``vol-st-cnn``, ``vol-cnn``): steps, test errors
    and which is lower ('' when either is missing or not final); whether the gap is beyond chance is
    results/3d.md's (a paired test on the test set)."""
    st_m, cnn_m = metas.get("vol-st-cnn"), metas.get("vol-cnn")
    if not (st_m and cnn_m and st_m.get("final") and cnn_m.get("final")):
        return ""
    st_e, cnn_e = st_m.get("test_error"), cnn_m.get("test_error")
    if not isinstance(st_e, (int, float)) or not isinstance(cnn_e, (int, float)):
        return ""
    verb = "below" if st_e < cnn_e else "not below"
    return (f"Ours, trained for {int(st_m.get('steps') or 0):,} steps on a CPU: {st_e:g} % test error, {verb} the "
            f"plain CNN's {cnn_e:g} %; `results/3d.md` tests whether the gap is beyond chance and measures whether "
            "the transformer undoes the tilt.")


def probabilities(logits: torch.Tensor) -> np.ndarray:
    """``(1, 10)`` logits → class probabilities ``(10,)``."""
    return torch.softmax(logits.float(), 1)[0].numpy()


__all__ = ["BOX_COLOURS", "MODES", "PageState", "box_lines", "hand_theta", "image_png", "make_volume", "output_projection",
           "page_pose",
           "parse_state", "probabilities", "undo_state", "volume_figure", "volume_points"]
