"""Grid generators: transformation parameters θ → sampling grid T_θ(G).

Coordinate convention (used everywhere in STN Lab): normalised coordinates in [-1, 1]
for height and width, ``align_corners=False`` as in ``torch.nn.functional.affine_grid``
and ``grid_sample``; x runs along the width, y along the height. Pixel *centres* of an
image of width W sit at x = (2j + 1) / W - 1, so -1 and +1 are the outer edges of the
outer pixels. θ maps **output** grid points to **input** (source) points (backward
warping): to move the content right, θ translates left.

Every grid is ``(N, H', W', 2)`` with the last dimension ``(x^s, y^s)``.

Precision and autocast. Grid generation runs in float32 or better: under ``torch.autocast``
(CPU or CUDA, float16 or bfloat16) every grid generator here switches autocast off locally
and upcasts a low-precision θ (e.g. the bfloat16 output of a localisation net run under
autocast) to float32, like the ops on autocast's float32 list; the grid is float32. A
bfloat16 grid would place samples only to 8 mantissa bits — ~0.5 px at the edge of a
256-pixel image — and the TPS sums cancel terms of ~16. Outside autocast the grid follows
θ's dtype, as before (a float16/bfloat16 θ gives a grid of that dtype). The network that
predicts θ may run in low precision; :class:`~stn_core.SpatialTransformer` casts θ to U's
dtype (float32 for a float32 U) before building the grid.

Thin-plate spline cost. The (K+3)×(K+3) system is solved once per control-point set in
float64 and cached. The design matrix (radial terms ``U(r) = r² log r²`` of the H'·W' output
points to the K control points, plus x, y, 1) is cached per (points, size, device, dtype);
its radial part is built in float32 with the Gram formula ``r² = ‖g‖² + ‖c‖² − 2 g·c``
(clamped at 0), accurate to ~2e-6 in U (see :func:`_tps_radial`), then stored in the
evaluation dtype: float32 for float32 (or lower) control points, float64 for float64 ones.
Building it for 256×256, K = 16 takes ~4 ms (float32) / ~5 ms (float64) against ~42 ms with
float64 direct differences (one CPU thread).
"""

from __future__ import annotations

import functools
import math
import operator
from contextlib import nullcontext
from functools import lru_cache
from typing import Callable, Sequence

import torch

Size = tuple[int, int]

TRANSFORM_KINDS = ("affine", "attention", "projective", "tps")

#: Largest number of TPS control points accepted: the solve is O(K³) (SVD for the condition
#: number, inverse) and the design matrix H'·W'·K floats (1024 points on a 256×256 output:
#: 0.27 GB in float32); beyond it a call would run for minutes or exhaust memory.
MAX_TPS_POINTS = 1024

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def autocast_enabled(device: torch.device | str) -> bool:
    """Whether ``torch.autocast`` is active for ``device``'s type (False for types it does not know)."""
    dev_type = torch.device(device).type
    try:
        return bool(torch.is_autocast_enabled(dev_type))
    except (RuntimeError, TypeError, ValueError):
        return False


def autocast_off(device: torch.device | str):
    """Context that switches autocast off for ``device``'s type when it is on (else does nothing)."""
    dev_type = torch.device(device).type
    return torch.autocast(dev_type, enabled=False) if autocast_enabled(dev_type) else nullcontext()


def _float32_under_autocast(fn: Callable) -> Callable:
    """Run a grid generator with autocast off, its first (tensor) argument upcast from
    float16/bfloat16 to float32, when autocast is on for that tensor's device; otherwise
    call it unchanged (dtype follows the input)."""

    @functools.wraps(fn)
    def wrapper(x, *args, **kwargs):
        if not isinstance(x, torch.Tensor) or not autocast_enabled(x.device):
            return fn(x, *args, **kwargs)
        if x.dtype in _LOW_PRECISION:
            x = x.float()
        with torch.autocast(x.device.type, enabled=False):
            return fn(x, *args, **kwargs)

    return wrapper


#: Most output grid points one call may ask for (H'·W'): 2^24, a 4096×4096 grid of 128 MB in float32.
MAX_GRID_POINTS = 1 << 24


def check_size(out_size: Sequence[int]) -> Size:
    """``(H', W')`` as two positive ints with ``H'·W' ≤ MAX_GRID_POINTS``; ValueError otherwise."""
    try:
        ok = len(out_size) == 2 and all(not isinstance(v, bool) for v in out_size)
        h, w = (operator.index(v) for v in out_size) if ok else (0, 0)
    except TypeError:
        h, w = 0, 0
    if h < 1 or w < 1:
        raise ValueError(f"out_size must be (H', W') with two positive integers, got {tuple(out_size)!r}")
    if h * w > MAX_GRID_POINTS:
        raise ValueError(f"out_size {h}×{w} asks for {h * w:,} grid points, more than the {MAX_GRID_POINTS:,} "
                         "supported in one call")
    return h, w


def _check_batch(t: torch.Tensor, what: str) -> None:
    """A tensor of real floating-point θ values with at least one image in the batch."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{what} must be a floating-point tensor, got {t.dtype}")
    if t.dim() >= 1 and t.shape[0] < 1:
        raise ValueError(f"{what} has an empty batch (N = 0)")


def _linspace_centres(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Pixel-centre coordinates ``(n,)`` for ``align_corners=False``.

    Built exactly as ``F.affine_grid`` builds them so both agree bit for bit.
    """
    if n == 1:
        return torch.zeros(1, dtype=dtype, device=device)
    return torch.linspace(-1.0, 1.0, n, dtype=dtype, device=device) * ((n - 1) / n)


def base_grid(out_size: Sequence[int], dtype: torch.dtype = torch.float32,
              device: torch.device | str | None = None) -> torch.Tensor:
    """Regular output grid G in homogeneous form: ``(H', W', 3)`` of ``(x^t, y^t, 1)``."""
    h, w = check_size(out_size)
    device = torch.device(device) if device is not None else torch.device("cpu")
    xs = _linspace_centres(w, dtype, device)
    ys = _linspace_centres(h, dtype, device)
    grid = torch.ones(h, w, 3, dtype=dtype, device=device)
    grid[..., 0] = xs.view(1, w)
    grid[..., 1] = ys.view(h, 1)
    return grid


def identity_grid(out_size: Sequence[int], n: int = 1, dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Identity sampling grid ``(N, H', W', 2)``."""
    return base_grid(out_size, dtype, device)[..., :2].unsqueeze(0).expand(n, -1, -1, -1).clone()


def _apply_rows(mat: torch.Tensor, design: torch.Tensor) -> torch.Tensor:
    """Apply per-sample rows ``mat (N, R, D)`` to every design row ``design (P, D)`` → ``(N, P, R)``.

    One 2-D matrix product: on CPU it is 5–10× faster than the equivalent broadcast batched
    ``matmul`` of a ``(1, P, D)`` grid with ``(N, D, R)``. ``mat`` is made contiguous first
    (a tiny copy): with a transposed ``mat`` (the TPS coefficients) BLAS takes a path 2–5×
    slower for this shape (measured on 256×256, K = 16: 1.5 → 0.3 ms in float32).
    """
    n, r, d = mat.shape
    return (mat.reshape(n * r, d).contiguous() @ design.T).view(n, r, -1).transpose(1, 2).contiguous()


# --------------------------------------------------------------------------- affine family

@_float32_under_autocast
def affine_grid(theta: torch.Tensor, out_size: Sequence[int]) -> torch.Tensor:
    """Affine grid generator (paper eq. 1).

    theta: ``(N, 2, 3)`` = A_θ. Returns ``(N, H', W', 2)`` with
    ``(x^s, y^s)ᵀ = A_θ (x^t, y^t, 1)ᵀ``; agrees with ``F.affine_grid(..., align_corners=False)``.
    """
    _check_batch(theta, "theta")
    if theta.dim() != 3 or theta.shape[1:] != (2, 3):
        raise ValueError(f"theta must have shape (N, 2, 3), got {tuple(theta.shape)}")
    h, w = check_size(out_size)
    g = base_grid((h, w), theta.dtype, theta.device).view(h * w, 3)
    return _apply_rows(theta, g).view(theta.shape[0], h, w, 2)


def attention_to_affine(params: torch.Tensor) -> torch.Tensor:
    """Attention parameters ``(N, 3)`` = (s, t_x, t_y) → A_θ ``(N, 2, 3)`` = [[s, 0, t_x], [0, s, t_y]]."""
    _check_batch(params, "attention params")
    if params.dim() != 2 or params.shape[1] != 3:
        raise ValueError(f"attention params must have shape (N, 3) = (s, tx, ty), got {tuple(params.shape)}")
    s, tx, ty = params.unbind(1)
    zero = torch.zeros_like(s)
    return torch.stack([torch.stack([s, zero, tx], 1), torch.stack([zero, s, ty], 1)], 1)


@_float32_under_autocast
def attention_grid(params: torch.Tensor, out_size: Sequence[int]) -> torch.Tensor:
    """Attention grid generator: isotropic scale + translation. params ``(N, 3)`` → ``(N, H', W', 2)``."""
    return affine_grid(attention_to_affine(params), out_size)


def homography_matrix(h: torch.Tensor) -> torch.Tensor:
    """``(N, 8)`` (h33 = 1) or ``(N, 3, 3)`` → ``(N, 3, 3)``."""
    _check_batch(h, "homography")
    if h.dim() == 2 and h.shape[1] == 8:
        return torch.cat([h, torch.ones_like(h[:, :1])], 1).view(-1, 3, 3)
    if h.dim() == 3 and h.shape[1:] == (3, 3):
        return h
    raise ValueError(f"homography must have shape (N, 8) or (N, 3, 3), got {tuple(h.shape)}")


@_float32_under_autocast
def projective_denominator(h: torch.Tensor, out_size: Sequence[int]) -> torch.Tensor:
    """Third homogeneous coordinate w of every output point: ``(N, H', W')``.

    Points with w ≤ 0 lie on or behind the horizon: the map sends them to infinity.
    """
    hm = homography_matrix(h)
    g = base_grid(out_size, hm.dtype, hm.device)
    return torch.einsum("hwk,nk->nhw", g, hm[:, 2, :])


# Output points whose homogeneous w falls below this are at or beyond the horizon.
HORIZON_EPS = 1e-6
# Where such points are sent: far outside [-1, 1], so zero padding returns background.
_OUTSIDE = 4.0


@_float32_under_autocast
def projective_grid(h: torch.Tensor, out_size: Sequence[int]) -> torch.Tensor:
    """Projective grid generator (8 parameters, h33 = 1).

    h: ``(N, 8)`` row-major (h11, h12, h13, h21, h22, h23, h31, h32) or ``(N, 3, 3)``.
    Returns ``(N, H', W', 2)``: ``(x^s, y^s) = (H·g)_{1,2} / (H·g)_3``. Output points whose
    denominator is ≤ ``HORIZON_EPS`` (sent to infinity or behind the camera) are mapped
    to a point far outside the image, so they sample the padding and never produce
    inf/NaN; use :func:`projective_denominator` to find them.
    """
    hm = homography_matrix(h)
    hh, ww = check_size(out_size)
    g = base_grid((hh, ww), hm.dtype, hm.device).view(hh * ww, 3)
    p = _apply_rows(hm, g)  # (N, H'W', 3)
    w = p[..., 2:3]
    ok = w > HORIZON_EPS
    safe_w = torch.where(ok, w, torch.ones_like(w))
    xy = p[..., :2] / safe_w
    xy = torch.where(ok, xy, torch.full_like(xy, _OUTSIDE))
    return xy.view(hm.shape[0], hh, ww, 2)


def affine_to_homography(theta: torch.Tensor) -> torch.Tensor:
    """A_θ ``(N, 2, 3)`` → homography ``(N, 3, 3)`` with last row (0, 0, 1)."""
    last = torch.zeros_like(theta[:, :1, :])
    last[..., 2] = 1
    return torch.cat([theta, last], 1)


# --------------------------------------------------------------------------- thin-plate spline

def _check_tps_k(k: int, what: str = "K") -> None:
    """Reject a control-point count above :data:`MAX_TPS_POINTS` before any O(K³) work."""
    if k > MAX_TPS_POINTS:
        raise ValueError(f"{what} = {k} TPS control points is more than the {MAX_TPS_POINTS} supported: the "
                         f"(K+3)×(K+3) solve is O(K³) and the design matrix H'·W'·K floats; use fewer points")


def tps_lattice(k: int = 16, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Default TPS control points ``(K, 2)``: a √K×√K lattice, x and y each at
    ``linspace(-1, 1, √K)``, row-major with x varying fastest."""
    _check_tps_k(int(k))
    side = math.isqrt(k)
    if side * side != k or side < 2:
        raise ValueError(f"K must be a square number ≥ 4 for the default lattice, got {k}")
    lin = torch.linspace(-1.0, 1.0, side, dtype=torch.float64)
    ys, xs = torch.meshgrid(lin, lin, indexing="ij")
    pts = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)
    return pts.to(dtype=dtype, device=device)


def _sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact squared distances ``(P, 2), (Q, 2) → (P, Q)`` (``cdist`` switches to a lossy
    matrix-product formula for large inputs)."""
    return (a.unsqueeze(-2) - b.unsqueeze(-3)).square().sum(-1)


def _tps_kernel(d2: torch.Tensor) -> torch.Tensor:
    """TPS radial basis U(r) = r² log r², written in terms of d2 = r² (U(0) = 0)."""
    return torch.where(d2 > 0, d2 * torch.log(d2.clamp_min(1e-300)), torch.zeros_like(d2))


def _tps_radial(points: torch.Tensor, ctrl: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Radial terms ``U(|p − c|) (P, K)`` of many points ``(P, 2)`` to the control points
    ``(K, 2)``, computed in float32, for the design matrix (written into ``out`` if given).

    ``r² = ‖p‖² + ‖c‖² − 2 p·c`` (the Gram / matrix-product formula), clamped at 0 where
    rounding makes it negative, then ``U = r² · log max(r², 1e-30)`` (exactly 0 at r² = 0: a
    tiny non-zero U there would make float32 subnormals in the grid's matrix product with the
    near-zero bending weights of an affine warp, which slows it down several times on x86):
    one (P, K) float32 buffer updated in place instead of the (P, K, 2) float64 difference
    tensor. The product p·c has an inner dimension of 2, so it is written as two fused
    multiply-adds rather than a BLAS call: at most ~2 ms slower on 256×256, K = 16, and immune
    to reduced-precision matmul settings (TF32, ``set_float32_matmul_precision``) that would
    cost the formula its accuracy.

    Accuracy: with ‖p‖², ‖c‖² ≤ ~2 the formula loses a few ulp of 4, |δr²| ≲ 5e-7, so
    |δU| ≤ |log r² + 1|·|δr²| ≲ 2e-6 (measured 1.3e-6 on a 256×256 grid, 4×4 lattice);
    the grid error is Σ_k |w_k|·|δU_k| (tests/test_tps_fast.py: < 1e-4 normalised, i.e.
    < 0.013 px on 256 px, for strong warps).
    """
    p = points.to(torch.float32)
    c = ctrl.to(torch.float32)
    d2 = torch.add(p.square().sum(1, keepdim=True), c.square().sum(1))  # ‖p‖² + ‖c‖²
    d2.addcmul_(p[:, :1], c[:, 0], value=-2).addcmul_(p[:, 1:], c[:, 1], value=-2).clamp_min_(0)
    if out is not None and out.dtype == torch.float32:  # in place in the design, no temporary
        out.copy_(d2)
        return out.mul_(d2.clamp_min_(1e-30).log_())  # r² = 0 → 0 · log(1e-30) = 0 exactly
    u = d2 * d2.clamp_min(1e-30).log_()
    return u if out is None else out.copy_(u)


def _check_tps_control_points(ctrl_out: torch.Tensor, reg: float) -> None:
    k = ctrl_out.shape[0]
    if k < 3:
        raise ValueError(f"a thin-plate spline needs at least 3 control points, got {k}")
    centred = ctrl_out - ctrl_out.mean(0, keepdim=True)
    sv = torch.linalg.svdvals(centred)
    if sv.numel() < 2 or float(sv[1]) < 1e-6 * max(1.0, float(sv[0])):
        raise ValueError("TPS output control points are collinear: the affine part of the spline "
                         "is undetermined; spread the points over 2D")
    d2 = _sq_dist(ctrl_out, ctrl_out)
    d2.fill_diagonal_(float("inf"))
    if float(d2.min()) < 1e-12 and reg <= 0:
        raise ValueError("two TPS output control points coincide: the spline system is singular; "
                         "move them apart or use reg > 0")


@lru_cache(maxsize=32)
def _tps_inverse_cached(ctrl_key: tuple[float, ...], reg: float) -> torch.Tensor:
    # Cached tensors outlive the call: build them as normal tensors even when the first call
    # comes from torch.inference_mode(), or later autograd use of the cache would fail.
    with torch.inference_mode(False):
        return _tps_inverse(ctrl_key, reg)


def _tps_inverse(ctrl_key: tuple[float, ...], reg: float) -> torch.Tensor:
    ctrl = torch.tensor(ctrl_key, dtype=torch.float64).view(-1, 2)
    _check_tps_control_points(ctrl, reg)
    k = ctrl.shape[0]
    kmat = _tps_kernel(_sq_dist(ctrl, ctrl)) + reg * torch.eye(k, dtype=torch.float64)
    p = torch.cat([torch.ones(k, 1, dtype=torch.float64), ctrl], 1)
    l = torch.zeros(k + 3, k + 3, dtype=torch.float64)
    l[:k, :k] = kmat
    l[:k, k:] = p
    l[k:, :k] = p.T
    cond = torch.linalg.cond(l)
    if not torch.isfinite(cond) or float(cond) > 1e12:
        raise ValueError(f"TPS system is ill-conditioned (condition number {float(cond):.3g}); "
                         "control points nearly coincide: use reg > 0")
    return torch.linalg.inv(l)


def _ctrl_key(ctrl_out: torch.Tensor) -> tuple[float, ...]:
    """Hashable cache key of output control points ``(K, 2)`` (validated: shape, K, finite)."""
    if ctrl_out.dim() != 2 or ctrl_out.shape[1] != 2:
        raise ValueError(f"ctrl_out must have shape (K, 2), got {tuple(ctrl_out.shape)}")
    _check_tps_k(ctrl_out.shape[0], "ctrl_out K")
    key = tuple(ctrl_out.detach().to("cpu", torch.float64).reshape(-1).tolist())
    if not all(math.isfinite(v) for v in key):
        raise ValueError("TPS control points must be finite (ctrl_out has NaN or inf)")
    return key


def tps_system_inverse(ctrl_out: torch.Tensor, reg: float = 0.0) -> torch.Tensor:
    """L⁻¹ ``(K+3, K+3)`` of the TPS system [[K + reg·I, P], [Pᵀ, 0]] for the output control
    points ``ctrl_out (K, 2)``; solved once in float64 and cached per (points, reg)."""
    return _system_inverse(_ctrl_key(ctrl_out), reg)


def _system_inverse(key: tuple[float, ...], reg: float) -> torch.Tensor:
    if reg < 0 or not math.isfinite(reg):
        raise ValueError(f"reg must be a finite number ≥ 0, got {reg}")
    return _tps_inverse_cached(key, float(reg))


def _check_ctrl_in(ctrl_in: torch.Tensor) -> int:
    """Validate ``ctrl_in (N, K, 2)`` (shape, K ≤ MAX_TPS_POINTS, finite); returns K."""
    _check_batch(ctrl_in, "ctrl_in")
    if ctrl_in.dim() != 3 or ctrl_in.shape[2] != 2:
        raise ValueError(f"ctrl_in must have shape (N, K, 2), got {tuple(ctrl_in.shape)}")
    k = ctrl_in.shape[1]
    _check_tps_k(k, "ctrl_in K")
    # N·K·2 values: cheap (one small reduction; on CUDA one sync, next to the one ctrl_out's
    # cache key already makes).
    if not bool(torch.isfinite(ctrl_in.detach()).all()):
        raise ValueError("TPS control points must be finite (ctrl_in has NaN or inf)")
    return k


@_float32_under_autocast
def tps_coefficients(ctrl_in: torch.Tensor, ctrl_out: torch.Tensor | None = None,
                     reg: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve the TPS that maps ``ctrl_out (K, 2)`` onto ``ctrl_in (N, K, 2)``.

    Returns the non-rigid weights ``W (N, K, 2)`` and the affine part ``A (N, 3, 2)``
    (rows: constant, x, y), so that f(p) = A₀ + x·A₁ + y·A₂ + Σ_k W_k U(|p − c_k|).
    """
    k = _check_ctrl_in(ctrl_in)
    if ctrl_out is None:
        ctrl_out = tps_lattice(k, torch.float64)
    return _tps_solve(ctrl_in, ctrl_out, reg)


def _tps_solve(ctrl_in: torch.Tensor, ctrl_out: torch.Tensor, reg: float,
               key: tuple[float, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`tps_coefficients` for an already validated ``ctrl_in`` and a given ``ctrl_out``
    (``key``: its :func:`_ctrl_key`, when the caller has it)."""
    k = ctrl_in.shape[1]
    if ctrl_out.dim() == 2 and ctrl_out.shape[0] != k:
        raise ValueError(f"ctrl_in has {k} points but ctrl_out has {ctrl_out.shape[0]}")
    linv = _system_inverse(_ctrl_key(ctrl_out) if key is None else key, reg).to(ctrl_in.device, ctrl_in.dtype)
    coef = torch.matmul(linv[:, :k], ctrl_in)  # (N, K+3, 2): rhs is [ctrl_in; 0]
    return coef[:, :k], coef[:, k:]


@_float32_under_autocast
def tps_bending_energy(ctrl_in: torch.Tensor, ctrl_out: torch.Tensor | None = None,
                       reg: float = 0.0) -> torch.Tensor:
    """Bending energy trace(Wᵀ K W) of the TPS per sample: ``(N,)`` (0 for any affine map)."""
    w, _ = tps_coefficients(ctrl_in, ctrl_out, reg)
    k = ctrl_in.shape[1]
    ctrl = (tps_lattice(k, torch.float64) if ctrl_out is None else ctrl_out).to(ctrl_in.device, ctrl_in.dtype)
    kmat = _tps_kernel(_sq_dist(ctrl, ctrl))
    return torch.einsum("nki,kl,nli->n", w, kmat, w)


@lru_cache(maxsize=32)
def _tps_design_cached(ctrl_key: tuple[float, ...], h: int, w: int, device: str,
                       dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Design matrix ``(H'W', K+3)`` = [U(|g − c_k|)..., x, y, 1] of the output grid in ``dtype``."""
    with torch.inference_mode(False):  # a normal tensor, see _tps_inverse_cached
        return _tps_design(ctrl_key, h, w, device, dtype)


def _tps_design(ctrl_key: tuple[float, ...], h: int, w: int, device: str,
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Radial columns from :func:`_tps_radial` (float32 accuracy), x, y, 1 exact in ``dtype``; for float64
    the direct-difference formula in float64, exact as before (the fixed E test set depends on it)."""
    ctrl = torch.tensor(ctrl_key, dtype=torch.float64).view(-1, 2)
    k = ctrl.shape[0]
    if dtype == torch.float64:
        g64 = base_grid((h, w), torch.float64).view(h * w, 3)
        return torch.cat([_tps_kernel(_sq_dist(g64[:, :2], ctrl)), g64], 1).to(device)
    g = base_grid((h, w), dtype).view(h * w, 3)
    design = torch.empty(h * w, k + 3, dtype=dtype)
    design[:, k:] = g
    _tps_radial(g[:, :2], ctrl, out=design[:, :k])
    return design.to(device)


@_float32_under_autocast
def tps_grid(ctrl_in: torch.Tensor, out_size: Sequence[int], ctrl_out: torch.Tensor | None = None,
             reg: float = 0.0) -> torch.Tensor:
    """Thin-plate-spline grid generator.

    ctrl_in: ``(N, K, 2)`` positions in the input of the output control points
    ``ctrl_out (K, 2)`` (default :func:`tps_lattice`). Returns ``(N, H', W', 2)``; equals the
    identity grid when ``ctrl_in == ctrl_out``. Coincident or collinear ``ctrl_out`` raise a
    ``ValueError`` (coincident points are accepted with ``reg > 0``, which relaxes
    interpolation into Tikhonov-regularised smoothing), and so do non-finite control points
    and more than :data:`MAX_TPS_POINTS` of them.
    """
    h, w = check_size(out_size)
    k = _check_ctrl_in(ctrl_in)
    if ctrl_out is None:
        ctrl_out = tps_lattice(k, torch.float64)
    # The coefficients are solved in float64: the radial terms reach ~16 and cancel, which
    # costs a float32 solve about 1e-5 of identity error; the matrices are tiny, so this is
    # cheap. The grid is evaluated in float64 for float64 control points, else in float32;
    # the design's radial columns are float32-accurate either way (see _tps_radial).
    if ctrl_out.dim() == 2 and ctrl_out.shape[0] != k:
        raise ValueError(f"ctrl_in has {k} points but ctrl_out has {ctrl_out.shape[0]}")
    key = _ctrl_key(ctrl_out)
    wts, aff = _tps_solve(ctrl_in.double(), ctrl_out, reg, key)
    eval_dtype = torch.float64 if ctrl_in.dtype == torch.float64 else torch.float32
    design = _tps_design_cached(key, h, w, str(ctrl_in.device), eval_dtype)
    # design columns: K radial terms, then x, y, 1; aff rows are (1, x, y).
    coef = torch.cat([wts, aff[:, 1:2], aff[:, 2:3], aff[:, 0:1]], 1)  # (N, K+3, 2)
    grid = _apply_rows(coef.transpose(1, 2).to(eval_dtype), design).view(ctrl_in.shape[0], h, w, 2)
    return grid.to(ctrl_in.dtype)


# --------------------------------------------------------------------------- dispatch

def num_params(kind: str, k: int = 16) -> int:
    """Number of θ values a transform kind predicts per image."""
    return {"affine": 6, "attention": 3, "projective": 8, "tps": 2 * k}[_check_kind(kind)]


def _check_kind(kind: str) -> str:
    if kind not in TRANSFORM_KINDS:
        raise ValueError(f"unknown transform kind {kind!r}; choose one of {', '.join(TRANSFORM_KINDS)}")
    return kind


def identity_params(kind: str, k: int = 16, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Flat identity parameter vector ``(P,)`` for a transform kind."""
    _check_kind(kind)
    if kind == "affine":
        return torch.tensor([1, 0, 0, 0, 1, 0], dtype=dtype)
    if kind == "attention":
        return torch.tensor([1, 0, 0], dtype=dtype)
    if kind == "projective":
        return torch.tensor([1, 0, 0, 0, 1, 0, 0, 0], dtype=dtype)
    return tps_lattice(k, dtype).reshape(-1)


def params_to_theta(kind: str, params: torch.Tensor) -> torch.Tensor:
    """Flat ``(N, P)`` → the kind's natural form: affine ``(N, 2, 3)``, attention ``(N, 3)``,
    projective ``(N, 3, 3)``, tps ``(N, K, 2)``."""
    _check_kind(kind)
    if kind == "affine":
        return params.view(-1, 2, 3)
    if kind == "attention":
        return params.view(-1, 3)
    if kind == "projective":
        return homography_matrix(params.view(-1, 8))
    return params.view(params.shape[0], -1, 2)


def make_grid(kind: str, params: torch.Tensor, out_size: Sequence[int],
              ctrl_out: torch.Tensor | None = None, reg: float = 0.0) -> torch.Tensor:
    """Grid for flat parameters ``(N, P)`` of any kind → ``(N, H', W', 2)``."""
    _check_kind(kind)
    _check_batch(params, "params")
    wrong_width = params.shape[-1] % 2 if kind == "tps" else params.shape[-1] != num_params(kind)
    if params.dim() != 2 or wrong_width:
        want = "(N, 2K)" if kind == "tps" else f"(N, {num_params(kind)})"
        raise ValueError(f"{kind} params must have shape {want}, got {tuple(params.shape)}")
    theta = params_to_theta(kind, params)
    if kind == "affine":
        return affine_grid(theta, out_size)
    if kind == "attention":
        return attention_grid(theta, out_size)
    if kind == "projective":
        return projective_grid(theta, out_size)
    return tps_grid(theta, out_size, ctrl_out=ctrl_out, reg=reg)


# --------------------------------------------------------------------------- intuitive controls

def compose_affine(rotation_deg: float = 0.0, scale: Sequence[float] = (1.0, 1.0), shear: float = 0.0,
                   translation: Sequence[float] = (0.0, 0.0),
                   in_size: Sequence[int] | None = None) -> torch.Tensor:
    """Intuitive controls → A_θ ``(2, 3)`` float64.

    The controls describe where the output window sits in the input (the paper's Fig. 1b):
    the output grid is scaled by ``scale`` (sx, sy; < 1 zooms in), sheared (x += shear·y),
    rotated counter-clockwise on screen by ``rotation_deg`` and moved by ``translation``
    (tx, ty) in normalised input units; all at scale 1 and no rotation is the identity.
    With ``in_size`` (H, W) rotation and shear act in isotropic pixel units, so a
    non-square image is not distorted: A = D⁻¹ · R · Sh · S · D, D = diag(W, H) / max(H, W).
    """
    a = math.radians(rotation_deg)
    # y points down in image coordinates, so a counter-clockwise turn on screen is R(-a).
    rot = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]], dtype=torch.float64)
    sh = torch.tensor([[1.0, shear], [0.0, 1.0]], dtype=torch.float64)
    sc = torch.diag(torch.tensor([float(scale[0]), float(scale[1])], dtype=torch.float64))
    d = torch.eye(2, dtype=torch.float64)
    if in_size is not None:
        hi, wi = check_size(in_size)
        d = torch.diag(torch.tensor([wi, hi], dtype=torch.float64) / max(hi, wi))
    theta = torch.zeros(2, 3, dtype=torch.float64)
    theta[:, :2] = torch.linalg.inv(d) @ rot @ sh @ sc @ d
    theta[0, 2] = float(translation[0])
    theta[1, 2] = float(translation[1])
    return theta
