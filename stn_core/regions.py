"""Where a transform samples: output points mapped into the input, and the border of the sampled region.

Numpy helpers for drawing (Figure 1 (b), the playground's outline, the explorer's region). Parameters
are the raw forms of :mod:`stn_core.transforms`: affine 6, attention 3 (s, t_x, t_y), projective 8
(h33 = 1), TPS the K input control points. Coordinates normalised [-1, 1]; θ maps output → input.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from stn_core.transforms import HORIZON_EPS, tps_coefficients, tps_lattice


def params_matrix(kind: str, params: Sequence[float]) -> np.ndarray:
    """Raw parameters → the matrix the UI shows: A_θ ``(2, 3)`` or H ``(3, 3)``."""
    p = [float(v) for v in params]
    if kind == "attention":
        s, tx, ty = p
        return np.array([[s, 0.0, tx], [0.0, s, ty]])
    if kind == "affine":
        return np.array(p, dtype=np.float64).reshape(2, 3)
    return np.array(p + [1.0], dtype=np.float64).reshape(3, 3)


def map_points(kind: str, params: Sequence[float], pts: np.ndarray) -> np.ndarray:
    """Map target points ``(M, 2)`` (normalised) through T_θ → source points ``(M, 2)``;
    NaN where a projective map has w ≤ HORIZON_EPS."""
    m = params_matrix(kind, params)
    homo = np.concatenate([pts, np.ones((pts.shape[0], 1))], axis=1)
    src = homo @ m.T
    if kind != "projective":
        return src
    w = src[:, 2:3]
    ok = w > HORIZON_EPS
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = src[:, :2] / np.where(ok, w, 1.0)
    return np.where(ok, xy, np.nan)


def outline(kind: str, params: Sequence[float], per_edge: int = 64) -> np.ndarray:
    """The border of the output window (target square [-1, 1]², clockwise from the top-left
    corner) mapped into the input: ``(4·per_edge + 1, 2)`` normalised, NaN where undefined."""
    return map_points(kind, params, border_points(per_edge))


def border_points(per_edge: int) -> np.ndarray:
    """The output square's border, clockwise from the top-left corner: ``(4·per_edge + 1, 2)``."""
    t = np.linspace(-1.0, 1.0, per_edge, endpoint=False)
    one = np.ones_like(t)
    edges = [np.stack([t, -one], 1), np.stack([one, t], 1), np.stack([-t, one], 1), np.stack([-one, -t], 1)]
    return np.concatenate(edges + [np.array([[-1.0, -1.0]])], axis=0)


def tps_map_points(ctrl_in: np.ndarray, pts: np.ndarray, ctrl_out: np.ndarray | None = None) -> np.ndarray:
    """Map output points ``(M, 2)`` through the TPS whose output control points ``ctrl_out``
    (default: the √K×√K lattice) land on ``ctrl_in (K, 2)`` → input points ``(M, 2)``."""
    c_in = torch.as_tensor(np.asarray(ctrl_in), dtype=torch.float64)[None]
    k = c_in.shape[1]
    c_out = tps_lattice(k, torch.float64) if ctrl_out is None else torch.as_tensor(ctrl_out, dtype=torch.float64)
    w, a = tps_coefficients(c_in, c_out)
    p = torch.as_tensor(np.asarray(pts), dtype=torch.float64)
    d2 = (p[:, None, :] - c_out[None]).square().sum(-1)
    u = torch.where(d2 > 0, d2 * torch.log(d2.clamp_min(1e-300)), torch.zeros_like(d2))
    out = a[0, 0] + p[:, :1] * a[0, 1] + p[:, 1:2] * a[0, 2] + u @ w[0]
    return out.numpy()


def region_outline(kind: str, theta: np.ndarray, per_edge: int = 32) -> np.ndarray:
    """Border of the region a transformer samples: the output square mapped into the input.
    ``theta``: affine ``(2, 3)``, projective ``(3, 3)`` or TPS input control points ``(K, 2)``.
    Returns ``(4·per_edge + 1, 2)`` normalised (NaN where a projective map has no finite point)."""
    th = np.asarray(theta, dtype=np.float64)
    if kind == "affine":
        return outline("affine", th.reshape(-1)[:6], per_edge)
    if kind == "projective":
        h = th.reshape(3, 3)
        h = h / h[2, 2] if abs(h[2, 2]) > 1e-12 else h
        return outline("projective", h.reshape(-1)[:8], per_edge)
    if kind == "tps":
        return tps_map_points(th.reshape(-1, 2), border_points(per_edge))
    raise ValueError(f"no sampled region for transform {kind!r}")
