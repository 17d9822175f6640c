"""The distorted-MNIST data sets of the paper (Table 1), built on stn_core itself.

Every distortion is a *backward* warp: random parameters → a sampling grid from
:func:`stn_core.affine_grid` / :func:`stn_core.projective_grid` / :func:`stn_core.tps_grid`
→ bilinear :func:`stn_core.sample` with zero padding. Images are float in [0, 1] with a
black (0) background, so zero padding is background (no mean/std normalisation).

Parameters (``[paper]`` = the paper's appendix, ``[notes]`` = less certain, from secondary
notes, ``[ours]`` = an implementation choice where the paper says nothing):

* ``R``   — 28×28; rotation uniform in [−90°, +90°] about the centre [paper].
* ``RTS`` — 42×42 canvas [paper]; rotation uniform in [−45°, +45°] [paper], isotropic scale
  uniform in [0.7, 1.2] [paper], placed at a random position [paper]: the digit centre is
  uniform over the positions that keep the digit's *ink* (bounding box of its non-zero
  pixels, +1 px for the bilinear kernel) fully inside the canvas [ours].
* ``P``   — 28×28; the image is scaled by s ~ U[0.75, 1.0] about the centre [paper], then its
  four corners are moved by i.i.d. N(0, σ = 3 px) in x and y [paper: Gaussian corner noise; σ ours],
  the noise of a corner set drawn again until the moved quad is convex [ours: no camera sees a
  non-convex view of a square]; the warp is the homography that maps the 4 moved corners onto the
  original corners (exact 4-point fit), so the image's corners appear at the moved corners. σ is the
  value whose FCN error matches the paper's FCN on P at our budget, the same FCN matching the paper
  on R (``scripts/p_fidelity.py`` → results/p-fidelity.md; the v1 checkpoints used σ = 5 px without
  the redraw, 3.3× the paper's FCN error).
* ``E``   — 28×28; scale s ~ U[0.75, 1.0] [notes], then a 16-point (4×4 lattice over the
  canvas) thin-plate spline whose control points are moved by N(0, σ = 1.5 px) [notes]. The
  noise is put on the *sampling* side: output lattice point L_k reads the input at
  (L_k + ε_k)/s — distributed like a forward perturbation to first order [ours].
* ``TC``  — translated and cluttered (the paper's Figure 1, third row; its errors are in the text): a
  60×60 black canvas [paper], the 28×28 digit pasted at a uniform random integer position [paper],
  and clutter: 6×6 crops of other digits [notes], 6 of them [ours: the count of the widely used
  ``mnist_cluttered_60x60_6distortions`` set; the paper gives none for this experiment], each cut at
  a uniform random position from a randomly chosen digit of a *pool* (the whole training or test
  split: ``warp(..., pool=...)``; by default the batch itself) and pasted at a uniform random position.
  Where pieces and the digit overlap the brighter pixel wins (max) [ours]. A piece may come from the
  digit itself (chance 1 / pool size) [ours].

All functions are vectorised over a batch and deterministic given a ``torch.Generator``.
Random numbers are always drawn on the CPU (in float64) and then moved to the images'
device, so a seed gives the same parameters on CPU and CUDA.
"""

from __future__ import annotations

import hashlib

import torch

from stn_core.sampling import sample
from stn_core.transforms import affine_grid, projective_grid, tps_grid, tps_lattice

#: Distortion kinds of Table 1, and TC (the paper's text). The index of a kind seeds its fixed test set,
#: so new kinds are appended.
KINDS = ("R", "RTS", "P", "E", "TC")
#: Output canvas side (pixels) of each kind.
CANVAS = {"R": 28, "RTS": 42, "P": 28, "E": 28, "TC": 60}
#: Side of the source digits.
DIGIT = 28

# ---- parameter ranges (see the module docstring for their provenance)
R_ANGLE = 90.0            # degrees, [paper]
RTS_ANGLE = 45.0          # degrees, [paper]
RTS_SCALE = (0.7, 1.2)    # [paper]
RTS_MARGIN_PX = 1.0       # ink margin kept inside the canvas, [ours]
P_SCALE = (0.75, 1.0)     # [notes]
P_SIGMA_PX = 3.0          # corner noise, [ours: results/p-fidelity.md; the v1 checkpoints: 5.0]
P_CONVEX = True           # redraw corner noise until the moved quad is convex, [ours] (results/p-fidelity.md)
E_SCALE = (0.75, 1.0)     # [notes]
E_SIGMA_PX = 1.5          # control point noise, [notes]
E_POINTS = 16             # 4×4 lattice, [paper]
TC_PIECES = 6             # clutter pieces, [ours]
TC_PIECE = 6              # side of a piece (px), [notes]


def _check_kind(kind: str) -> str:
    k = kind.upper()
    if k not in KINDS:
        raise ValueError(f"unknown distortion {kind!r}; choose one of {', '.join(KINDS)}")
    return k


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def sample_params(kind: str, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Draw the random parameters of ``n`` distortions (CPU, float64).

    Returns a dict of tensors, all with leading dimension n:
    R: ``angle`` (deg); RTS: ``angle``, ``scale``, ``pos`` (n, 2) uniforms in [0, 1) that
    pick the position inside the allowed range; P: ``scale``, ``noise`` (n, 4, 2) px;
    E: ``scale``, ``noise`` (n, 16, 2) px; TC: ``pos`` (n, 2), ``src`` (n, 6), ``crop`` (n, 6, 2),
    ``place`` (n, 6, 2), uniforms in [0, 1) that pick the digit's position, each piece's source digit
    in the pool, the crop inside it and the piece's position. Independent of the images, so the
    same stream of parameters can be split across processes.
    """
    k = _check_kind(kind)
    g = generator
    if k == "R":
        return {"angle": _uniform(n, -R_ANGLE, R_ANGLE, g)}
    if k == "RTS":
        return {"angle": _uniform(n, -RTS_ANGLE, RTS_ANGLE, g),
                "scale": _uniform(n, *RTS_SCALE, g),
                "pos": torch.rand(n, 2, generator=g, dtype=torch.float64)}
    if k == "TC":
        return {"pos": torch.rand(n, 2, generator=g, dtype=torch.float64),
                "src": torch.rand(n, TC_PIECES, generator=g, dtype=torch.float64),
                "crop": torch.rand(n, TC_PIECES, 2, generator=g, dtype=torch.float64),
                "place": torch.rand(n, TC_PIECES, 2, generator=g, dtype=torch.float64)}
    if k == "P":
        return projective_params(n, g)
    return {"scale": _uniform(n, *E_SCALE, g),
            "noise": E_SIGMA_PX * torch.randn(n, E_POINTS, 2, generator=g, dtype=torch.float64)}


def quad_is_convex(quads: torch.Tensor) -> torch.Tensor:
    """``(n,)`` bool: the quadrilaterals ``(n, 4, 2)`` (corners in order) are strictly convex, i.e. every
    turn along the boundary has the same sign (a self-intersecting or re-entrant quad fails)."""
    e = quads.roll(-1, 1) - quads                        # edge k: corner k → k+1
    f = e.roll(-1, 1)
    cross = e[..., 0] * f[..., 1] - e[..., 1] * f[..., 0]
    return (cross > 0).all(1) | (cross < 0).all(1)


def projective_params(n: int, generator: torch.Generator | None = None, sigma_px: float | None = None,
                      convex: bool | None = None, max_rounds: int = 100) -> dict[str, torch.Tensor]:
    """P's parameters: ``scale (n,)`` ~ U[P_SCALE], corner ``noise (n, 4, 2)`` ~ N(0, sigma_px) px.

    With ``convex`` the noise of every row whose moved quad (:func:`projective_corners`) is not convex is
    drawn again from the same generator, round after round (deterministic given the generator). The
    defaults are the module's ``P_SIGMA_PX`` and ``P_CONVEX``.
    """
    sigma = P_SIGMA_PX if sigma_px is None else float(sigma_px)
    g = generator
    params = {"scale": _uniform(n, *P_SCALE, g),
              "noise": sigma * torch.randn(n, 4, 2, generator=g, dtype=torch.float64)}
    if not (P_CONVEX if convex is None else convex):
        return params
    for _ in range(max_rounds):
        bad = (~quad_is_convex(projective_corners(params))).nonzero().flatten()
        if bad.numel() == 0:
            return params
        params["noise"][bad] = sigma * torch.randn(bad.numel(), 4, 2, generator=g, dtype=torch.float64)
    raise RuntimeError(f"no convex quad after {max_rounds} rounds (sigma {sigma} px is too large)")


def slice_params(params: dict[str, torch.Tensor], start: int, stop: int) -> dict[str, torch.Tensor]:
    """Rows ``start:stop`` of every parameter tensor."""
    return {k: v[start:stop] for k, v in params.items()}


def _rotation_theta(angle_deg: torch.Tensor) -> torch.Tensor:
    """Backward rotation ``(n, 2, 2)`` that turns the content counter-clockwise on screen
    (y points down) by ``angle_deg``."""
    a = torch.deg2rad(angle_deg)
    c, s = torch.cos(a), torch.sin(a)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def ink_bbox(images: torch.Tensor) -> torch.Tensor:
    """Bounding box of the non-zero pixels, as pixel *edges* relative to the image centre:
    ``(n, 4)`` = (x0, x1, y0, y1). Blank images get the full frame."""
    n, h, w = images.shape
    ink = images > 0
    cols = ink.any(1)  # (n, w)
    rows = ink.any(2)  # (n, h)
    ar_w = torch.arange(w, device=images.device)
    ar_h = torch.arange(h, device=images.device)
    big = max(h, w) + 1
    x0 = torch.where(cols, ar_w, big).min(1).values
    x1 = torch.where(cols, ar_w, -1).max(1).values + 1
    y0 = torch.where(rows, ar_h, big).min(1).values
    y1 = torch.where(rows, ar_h, -1).max(1).values + 1
    blank = ~cols.any(1)
    x0 = torch.where(blank, 0, x0)
    x1 = torch.where(blank, w, x1)
    y0 = torch.where(blank, 0, y0)
    y1 = torch.where(blank, h, y1)
    box = torch.stack([x0 - w / 2, x1 - w / 2, y0 - h / 2, y1 - h / 2], 1)
    return box.to(torch.float64)


def _rts_theta(params: dict[str, torch.Tensor], bbox: torch.Tensor) -> torch.Tensor:
    """θ ``(n, 2, 3)`` of RTS: output canvas (42) → input digit (28), normalised coords."""
    half_out, half_in = CANVAS["RTS"] / 2, DIGIT / 2
    s = params["scale"]
    m_back = _rotation_theta(params["angle"])           # backward rotation, (n, 2, 2)
    m_fwd = m_back.transpose(1, 2)                       # forward: input px → output px
    m = RTS_MARGIN_PX
    x0, x1, y0, y1 = (bbox[:, 0] - m, bbox[:, 1] + m, bbox[:, 2] - m, bbox[:, 3] + m)
    corners = torch.stack([torch.stack([x0, y0], 1), torch.stack([x1, y0], 1),
                           torch.stack([x0, y1], 1), torch.stack([x1, y1], 1)], 1)  # (n, 4, 2)
    moved = torch.einsum("nij,nkj->nki", m_fwd, corners) * s.view(-1, 1, 1)
    lo = -half_out - moved.min(1).values                 # allowed centre range, (n, 2)
    hi = half_out - moved.max(1).values
    centre = torch.where(hi >= lo, lo + params["pos"] * (hi - lo), 0.5 * (lo + hi))
    # p_in = M_back (p_out - c) / s, in pixels; then normalise by the half sizes.
    theta = torch.empty(s.shape[0], 2, 3, dtype=torch.float64, device=s.device)
    theta[:, :, :2] = m_back * (half_out / (half_in * s)).view(-1, 1, 1)
    theta[:, :, 2] = -torch.einsum("nij,nj->ni", m_back, centre) / (half_in * s).view(-1, 1)
    return theta


def fit_homography(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Homographies ``(n, 3, 3)`` (h33 = 1) with H·src_k ∝ dst_k for 4 points ``(n, 4, 2)``
    each (direct linear transform, solved in float64)."""
    src, dst = src.double(), dst.double()
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)
    a = torch.cat([rows_u, rows_v], 1)                   # (n, 8, 8)
    b = torch.cat([u, v], 1)                             # (n, 8)
    h = torch.linalg.solve(a, b)
    return torch.cat([h, torch.ones_like(h[:, :1])], 1).view(-1, 3, 3)


_CORNERS = ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0))


def projective_corners(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Where P moves the image's corners ``(n, 4, 2)`` (normalised output coords, in the order of
    ``_CORNERS``): scaled by ``scale`` about the centre, then moved by ``noise`` px."""
    s = params["scale"]
    corners = torch.tensor(_CORNERS, dtype=torch.float64, device=s.device).expand(s.shape[0], 4, 2)
    return corners * s.view(-1, 1, 1) + params["noise"].to(s.device) / (DIGIT / 2)


def _projective_h(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Homography ``(n, 3, 3)`` of P: output coords → input coords (normalised). It maps the moved
    corners back onto the image's corners, so the image's corners appear at the moved corners."""
    moved = projective_corners(params)
    corners = torch.tensor(_CORNERS, dtype=torch.float64, device=moved.device).expand_as(moved)
    return fit_homography(moved, corners)


def _elastic_ctrl(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """TPS input control points ``(n, 16, 2)`` of E for the default 4×4 output lattice."""
    s = params["scale"]
    lat = tps_lattice(E_POINTS, torch.float64, s.device)
    return (lat + params["noise"] / (DIGIT / 2)) / s.view(-1, 1, 1)


def _pick(u: torch.Tensor, count: int) -> torch.Tensor:
    """Uniforms in [0, 1) → integers in [0, count)."""
    return (u * count).long().clamp_(0, count - 1)


def _paste_max(canvas: torch.Tensor, pieces: torch.Tensor, top: torch.Tensor, left: torch.Tensor) -> None:
    """``canvas (n, S, S)`` ← max(canvas, pieces) with ``pieces (n, m, h, w)`` placed at integer
    ``top, left (n, m)`` (all inside the canvas); deterministic on CPU and CUDA."""
    n, m, h, w = pieces.shape
    side = canvas.shape[-1]
    dev = canvas.device
    rows = top[..., None, None] + torch.arange(h, device=dev).view(h, 1)
    cols = left[..., None, None] + torch.arange(w, device=dev).view(1, w)
    flat = (torch.arange(n, device=dev).view(n, 1, 1, 1) * side + rows) * side + cols
    canvas.view(-1).scatter_reduce_(0, flat.reshape(-1), pieces.reshape(-1), reduce="amax")


def clutter_canvas(u: torch.Tensor, side: int, pos: torch.Tensor, src: torch.Tensor, crop: torch.Tensor,
                   place: torch.Tensor, pool: torch.Tensor, piece: int = TC_PIECE) -> torch.Tensor:
    """Digits ``u (n, 28, 28)`` float pasted at random integer positions on black ``side × side``
    canvases with ``piece × piece`` clutter crops of ``pool (m, 28, 28)`` digits (brighter pixel wins);
    ``pool`` uint8 (0..255) or float (0..1): only the pieces cut from it are converted, not the whole pool.

    ``pos (n, 2)``, ``src (n, k)``, ``crop (n, k, 2)``, ``place (n, k, 2)``: uniforms in [0, 1) picking
    the digit's (x, y) position, each piece's source digit, the crop inside it and its (x, y) place
    (k = 0: no clutter). Returns the canvases ``(n, 1, side, side)`` and nothing random of its own.
    """
    n, dev = u.shape[0], u.device
    canvas = torch.zeros(n, side, side, dtype=u.dtype, device=dev)
    if src.shape[1] > 0:
        ids = _pick(src, pool.shape[0])                                     # (n, k)
        cy, cx = _pick(crop[..., 1], DIGIT - piece + 1), _pick(crop[..., 0], DIGIT - piece + 1)
        ar = torch.arange(piece, device=dev)
        pieces = pool[ids[..., None, None], cy[..., None, None] + ar.view(piece, 1), cx[..., None, None] + ar.view(1, piece)]
        pieces = (pieces.float() / 255.0 if pieces.dtype == torch.uint8 else pieces).to(u.dtype)
        _paste_max(canvas, pieces, _pick(place[..., 1], side - piece + 1), _pick(place[..., 0], side - piece + 1))
    _paste_max(canvas, u.unsqueeze(1), *digit_corner(pos, side))
    return canvas.unsqueeze(1)


def digit_corner(pos: torch.Tensor, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(top, left) ``(n, 1)`` integer pixel of the digit that ``pos (n, 2)`` places on a ``side`` canvas."""
    return _pick(pos[:, 1:2], side - DIGIT + 1), _pick(pos[:, 0:1], side - DIGIT + 1)


def _cluttered(u: torch.Tensor, params: dict[str, torch.Tensor], pool: torch.Tensor) -> torch.Tensor:
    """TC: ``u (n, 28, 28)`` float → ``(n, 1, 60, 60)``, clutter cropped from ``pool (m, 28, 28)``."""
    return clutter_canvas(u, CANVAS["TC"], params["pos"], params["src"], params["crop"], params["place"], pool)


def _as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def warp(images: torch.Tensor, kind: str, params: dict[str, torch.Tensor],
         bbox: torch.Tensor | None = None, pool: torch.Tensor | None = None) -> torch.Tensor:
    """Apply distortions with given parameters.

    images: ``(n, 28, 28)`` uint8 (0..255) or float (0..1), or ``(n, 1, 28, 28)`` float.
    bbox: optional precomputed :func:`ink_bbox` of the images (RTS only; saves its cost).
    pool: ``(m, 28, 28)`` digits the TC clutter is cropped from (default: ``images``).
    Returns ``(n, 1, S, S)`` float32 in [0, 1] on the images' device, S = ``CANVAS[kind]``.
    """
    k = _check_kind(kind)
    if images.dim() == 4:
        if images.shape[1] != 1:
            raise ValueError(f"images must have one channel, got shape {tuple(images.shape)}")
        images = images[:, 0]
    if images.dim() != 3 or images.shape[1:] != (DIGIT, DIGIT):
        raise ValueError(f"images must have shape (n, 28, 28), got {tuple(images.shape)}")
    n = images.shape[0]
    dev = images.device
    params = {key: v.to(dev) for key, v in params.items()}
    if any(v.shape[0] != n for v in params.values()):
        raise ValueError(f"parameters are for {next(iter(params.values())).shape[0]} images, got {n}")
    u = _as_float(images)
    if k == "TC":
        pool = u if pool is None else pool.to(dev)  # kept uint8: clutter_canvas converts only the pieces it cuts
        if pool.dim() != 3 or pool.shape[1:] != (DIGIT, DIGIT) or pool.shape[0] < 1:
            raise ValueError(f"the clutter pool must have shape (m >= 1, 28, 28), got {tuple(pool.shape)}")
        return _cluttered(u, params, pool)
    u = u.unsqueeze(1)
    out = (CANVAS[k], CANVAS[k])
    if k == "R":
        theta = torch.zeros(n, 2, 3, dtype=torch.float64, device=dev)
        theta[:, :, :2] = _rotation_theta(params["angle"])
        grid = affine_grid(theta.float(), out)
    elif k == "RTS":
        box = ink_bbox(images) if bbox is None else bbox.to(dev, torch.float64)
        grid = affine_grid(_rts_theta(params, box).float(), out)
    elif k == "P":
        grid = projective_grid(_projective_h(params).float(), out)
    else:
        grid = tps_grid(_elastic_ctrl(params), out).float()
    return sample(u, grid, mode="bilinear", padding="zeros").clamp_(0.0, 1.0)


def distort(images: torch.Tensor, kind: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random distortions of ``images (n, 28, 28)`` → ``(n, 1, S, S)`` float32 in [0, 1]."""
    params = sample_params(kind, images.shape[0], generator)
    return warp(images, kind, params)


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def fingerprint(kind: str) -> str:
    """8 hex digits naming the current parameters of ``kind``'s generator: a cache of distorted images
    keyed by it is never read back after a parameter changed (e.g. P's σ)."""
    k = _check_kind(kind)
    params = {"R": (R_ANGLE,), "RTS": (RTS_ANGLE, RTS_SCALE, RTS_MARGIN_PX), "P": (P_SCALE, P_SIGMA_PX, P_CONVEX),
              "E": (E_SCALE, E_SIGMA_PX, E_POINTS), "TC": (TC_PIECES, TC_PIECE)}[k]
    return hashlib.md5(repr((k, CANVAS[k], DIGIT) + params).encode()).hexdigest()[:8]


def describe(kind: str) -> str:
    """One line describing a distortion and its parameter ranges."""
    k = _check_kind(kind)
    return {
        "R": f"rotation U[-{R_ANGLE:g}°, {R_ANGLE:g}°], 28×28",
        "RTS": (f"rotation U[-{RTS_ANGLE:g}°, {RTS_ANGLE:g}°], scale U[{RTS_SCALE[0]}, {RTS_SCALE[1]}], "
                f"random position in a 42×42 canvas"),
        "P": (f"scale U[{P_SCALE[0]}, {P_SCALE[1]}], corners moved by N(0, {P_SIGMA_PX:g} px)"
              f"{' (convex quads only)' if P_CONVEX else ''}, homography, 28×28"),
        "E": (f"scale U[{E_SCALE[0]}, {E_SCALE[1]}], 16-point TPS, control points moved by "
              f"N(0, {E_SIGMA_PX:g} px), 28×28"),
        "TC": (f"digit at a random position on a 60×60 canvas, {TC_PIECES} pieces of {TC_PIECE}×{TC_PIECE} "
               f"clutter cropped from other digits"),
    }[k]


__all__ = ["CANVAS", "KINDS", "clutter_canvas", "describe", "digit_corner", "distort", "fingerprint", "fit_homography",
           "ink_bbox",
           "make_generator", "projective_corners", "projective_params", "quad_is_convex", "sample_params",
           "slice_params", "warp"]
