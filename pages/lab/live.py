"""Pictures of a live training run (no Streamlit): the displayed batch as mosaics with each
transformer's sampled region, the training replay (GIF) and the loss / error curves. The run itself:
:mod:`stn_core.train.live`."""

from __future__ import annotations

import math

import cv2
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pages.lab.export import training_replay_gif
from stn_core.regions import region_outline
from stn_core.train.live import LiveRun
from stn_core.train.live_state import ReplayFrame, Snapshot

# --------------------------------------------------------------------------- drawing (no UI)

GOOD, BAD, REGION = (40, 170, 70), (220, 50, 50), (255, 60, 60)


def region_pixels(kind: str, theta: np.ndarray, size: int, scale: int, per_edge: int = 16) -> np.ndarray:
    """Border of the region sampled by θ, in pixel coordinates of an image ``size·scale`` wide:
    ``(M, 2)`` float (x, y). θ maps output → input, normalised, align_corners=False."""
    pts = region_outline(kind, np.asarray(theta), per_edge)
    return (pts + 1.0) * 0.5 * size * scale


def mosaic(images: np.ndarray, cols: int = 4, scale: int = 3, gap: int = 4, borders: list | None = None,
           regions: list[np.ndarray | None] | None = None) -> np.ndarray:
    """Tile ``images (n, S, S)`` float in [0, 1] into a uint8 RGB picture: ``cols`` per row,
    each enlarged ``scale``× (nearest), ``gap`` px apart on white; ``borders`` an optional
    RGB colour per tile (a 2-px frame); ``regions`` optional pixel polylines ``(M, 2)`` per
    tile (from :func:`region_pixels`) drawn in red."""
    imgs = np.asarray(images, dtype=np.float32)
    n, s = imgs.shape[0], imgs.shape[1]
    rows = max(1, math.ceil(n / cols))
    t = s * scale
    pitch = t + gap
    out = np.full((gap + rows * pitch, gap + cols * pitch, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y0, x0 = gap + r * pitch, gap + c * pitch
        tile = np.clip(np.nan_to_num(imgs[i]), 0, 1)
        tile = np.repeat(np.repeat((tile * 255 + 0.5).astype(np.uint8), scale, 0), scale, 1)
        tile = np.ascontiguousarray(np.repeat(tile[:, :, None], 3, 2))
        if regions is not None and regions[i] is not None:
            pts = np.asarray(regions[i], dtype=np.float64)
            ok = np.isfinite(pts).all(1)
            if ok.sum() >= 2:
                poly = np.round(pts[ok] * 16).astype(np.int32).reshape(-1, 1, 2)
                cv2.polylines(tile, [poly], False, REGION, thickness=max(1, scale // 2), lineType=cv2.LINE_AA,
                              shift=4)
        if borders is not None and borders[i] is not None:
            cv2.rectangle(tile, (0, 0), (t - 1, t - 1), tuple(int(v) for v in borders[i]), thickness=2)
        out[y0:y0 + t, x0:x0 + t] = tile
    return out


def batch_pictures(snap: Snapshot, cols: int = 4, scale: int = 3) -> tuple[np.ndarray, np.ndarray] | None:
    """(inputs with the sampled regions, transformer outputs framed green/red by the ST-CNN's
    prediction) as uint8 RGB mosaics; None before the first display update."""
    if snap.inputs is None:
        return None
    st = snap.lanes[0] if snap.lanes else None
    return _pictures(snap.config.transform, snap.inputs, snap.labels, snap.outputs, snap.thetas,
                     None if st is None else st.display_pred, cols, scale)


def _pictures(kind: str, inputs: np.ndarray, labels: np.ndarray | None, outputs: np.ndarray | None,
              thetas: np.ndarray | None, pred: np.ndarray | None, cols: int, scale: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """(inputs ``(n, S, S)`` with the regions sampled by ``thetas``, ``outputs`` framed by
    ``pred`` vs ``labels``) as uint8 RGB mosaics (see :func:`batch_pictures`)."""
    n, s = inputs.shape[0], inputs.shape[1]
    regions = None
    if thetas is not None:
        regions = [region_pixels(kind, thetas[i], s, scale) for i in range(n)]
    borders = None
    if pred is not None and labels is not None:
        borders = [GOOD if int(p) == int(y) else BAD for p, y in zip(pred, labels)]
    left = mosaic(inputs, cols, scale, regions=regions)
    right = mosaic(outputs if outputs is not None else np.zeros_like(inputs), cols, scale, borders=borders)
    return left, right


REPLAY_GAP = 12  # px between (a)+(b) and (c) in a replay frame


def replay_picture(snap: Snapshot, frame: ReplayFrame, cols: int = 4, scale: int = 2) -> np.ndarray:
    """One frame of the training replay: the inputs with the sampled regions (red) | the
    transformer's outputs framed green/red by the ST-CNN's prediction, as at ``frame.step``.
    uint8 ``(H, W, 3)`` (W = 2 mosaics + :data:`REPLAY_GAP`)."""
    if snap.inputs is None:
        raise ValueError("no displayed batch yet: start the training first")
    outputs = frame.outputs.astype(np.float32) / 255.0
    left, right = _pictures(snap.config.transform, snap.inputs, snap.labels, outputs, frame.thetas, frame.pred,
                            cols, scale)
    gap = np.full((left.shape[0], REPLAY_GAP, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], 1)


def replay_caption(frame: ReplayFrame) -> str:
    """"step N · error E %" (E: the latest test error measured by then)."""
    err = "–" if frame.error is None else f"{frame.error:.1f}"
    return f"step {frame.step:,} · error {err} %"


def replay_gif(snap: Snapshot, fps: float = 4.0, side: int = 512) -> bytes:
    """Animated GIF of ``snap.replay`` (at most :data:`pages.lab.export.MAX_FRAMES` frames, from
    step 0 to the latest display update): :func:`replay_picture` per frame, scaled so its longer
    side is ``side`` px, captioned "step N · error E %". ValueError with fewer than 2 frames."""
    frames = snap.replay
    if len(frames) < 2:
        raise ValueError("the training replay needs at least two recorded steps: let the training run a little")
    pics = [replay_picture(snap, f) for f in frames]
    return training_replay_gif(pics, fps=fps, captions=[replay_caption(f) for f in frames], side=side)


def curves_figure(snap: Snapshot, height: int = 330):
    """Plotly figure: training loss (left axis) and test error % (right panel) per step, one
    colour per model."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.09, subplot_titles=(
        "Training loss (cross-entropy) per step", f"Test error (%) on {snap.eval_size:,} held-out digits per step"))
    colours = {"ST-CNN": "#d62728", "CNN": "#7f7f7f"}
    for lane in snap.lanes:
        c = colours.get(lane.name, "#1f77b4")
        label = f"{lane.name} ({lane.params:,} weights)"
        fig.add_trace(go.Scatter(x=lane.loss_steps, y=lane.loss, mode="lines", name=label,
                                 line=dict(color=c, width=3), legendgroup=lane.name), 1, 1)
        fig.add_trace(go.Scatter(x=lane.eval_steps, y=lane.eval_error, mode="lines+markers", name=label,
                                 line=dict(color=c, width=3), marker=dict(size=7), legendgroup=lane.name,
                                 showlegend=False), 1, 2)
    fig.update_xaxes(rangemode="tozero")
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[0, 100], row=1, col=2)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), font=dict(size=16),
                      legend=dict(orientation="h", yanchor="top", y=-0.12, x=0), showlegend=True,
                      template="plotly_white", uirevision="live")
    return fig


def run_replay_gif(run: LiveRun, snap: Snapshot | None = None, fps: float = 4.0) -> bytes:
    """:func:`replay_gif` of ``snap`` (default: a fresh snapshot of ``run``); the last GIF is kept on the
    run, so redrawing a still page does not encode it again."""
    snap = run.snapshot() if snap is None else snap
    key = (tuple(f.serial for f in snap.replay), snap.config.transform, float(fps))
    memo = getattr(run, "_gif", None)
    if memo is not None and memo[0] == key:
        return memo[1]
    data = replay_gif(snap, fps)
    run._gif = (key, data)
    return data
