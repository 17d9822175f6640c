"""The differentiable image sampler (paper §3.3).

``V_i^c = Σ_n Σ_m U_nm^c · k(x_i^s − m) · k(y_i^s − n)`` in pixel coordinates, with

* bilinear kernel ``k(d) = max(0, 1 − |d|)``;
* integer (nearest) kernel ``δ(⌊x + 0.5⌋ − m)``.

Two backends sit side by side, like torchvision's ops:

* ``"reference"`` — the paper's kernel sums written out (only the ≤ 4 non-zero terms are
  visited) with a hand-written backward implementing the paper's gradients:
  ``∂V/∂U_nm = Σ k(x − m) k(y − n)`` and ``∂V/∂x = Σ U_nm k(y − n) g(m, x)`` with
  ``g = 0 if |m − x| ≥ 1, +1 if m ≥ x, −1 if m < x`` (the paper's sub-gradient choice at
  the kinks: at an exactly integer x the term m = x contributes +U, where
  ``grid_sample`` takes the one-sided difference ``U[x+1] − U[x]``; everywhere else the
  two agree). The nearest kernel's gradient w.r.t. the coordinates is zero.
* ``"fast"`` — ``torch.nn.functional.grid_sample`` (CPU and CUDA kernels).

Grids follow the package convention: normalised [-1, 1], ``align_corners=False``, so the
pixel coordinate is ``x = ((x_norm + 1) · W − 1) / 2``. Nearest ties (x exactly at a
half-pixel) round up in the reference (⌊x + 0.5⌋, as the paper writes) and to even in
``grid_sample``.

Non-finite coordinates (NaN, ±inf) read nothing: the output there is 0 and the gradient to
U and to that grid point is 0, with either padding and either backend. (``grid_sample``
alone returns NaN for them in bilinear mode, an arbitrary border pixel with border padding,
and can crash in the bilinear border backward; the reference would compute an invalid index.)
With zero padding they are moved far outside the image (``nan_to_num``, one pass over the
grid); with border padding they are clamped like any point and their output is masked to 0.

Precision and autocast. Outside autocast U and the grid must share dtype and device, and
the output has that dtype. Under ``torch.autocast`` (CPU or CUDA, float16/bfloat16) the
sampler switches autocast off and samples in float32 (or float64 if either input is
float64), so a bfloat16 grid from low-precision code next to a float32 U works; the output
has U's dtype. Sampling coordinates in bfloat16 would cost up to ~0.5 px at 256 px.
There the cast to float32 also takes U to the sampler's NCHW layout in the same pass, and V back to U's
layout (channels_last in a fast conv stack), and the backward does the same for the gradients
(:class:`_LayoutCast`): a channels_last U otherwise costs a layout conversion inside ``grid_sample`` and
another in the layer after it, each way (the values are the same; the cost of ST-CNN Multi's step is
measured by ``bench/multidigit_cost.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .transforms import autocast_enabled

MODES = ("bilinear", "nearest")
BACKENDS = ("fast", "reference")
PADDINGS = ("zeros", "border")
# Where non-finite coordinates are sent with zero padding: 3 image widths outside, so every
# bilinear corner and the nearest pixel are out of bounds.
_FAR_OUTSIDE = -7.0
# Coordinates beyond ±_FAR_LIMIT (normalised) are clamped to it: they are outside the image either way,
# and unnormalising θ = 1e38 to pixels would overflow float32 to inf and give NaN.
_FAR_LIMIT = 1e6


def check_sample_options(mode: str, backend: str, padding: str) -> None:
    """ValueError unless ``mode``, ``backend`` and ``padding`` are among :data:`MODES`, :data:`BACKENDS`,
    :data:`PADDINGS`."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")


def _check_inputs(u: torch.Tensor, grid: torch.Tensor, mode: str, backend: str, padding: str,
                  dims: int = 2) -> None:
    """ValueError / TypeError naming what is wrong with a sampler's inputs: ``dims`` = 2 (images) or 3
    (volumes, :mod:`stn_core.sampling3d`)."""
    check_sample_options(mode, backend, padding)
    if not isinstance(u, torch.Tensor) or not isinstance(grid, torch.Tensor):
        raise TypeError("U and grid must be torch tensors")
    axes = ("D", "H", "W")[3 - dims:]
    if u.dim() != dims + 2:
        raise ValueError(f"U must have shape (N, C, {', '.join(axes)}), got {tuple(u.shape)}")
    if grid.dim() != dims + 2 or grid.shape[-1] != dims:
        raise ValueError(f"grid must have shape (N, {', '.join(a + chr(39) for a in axes)}, {dims}), "
                         f"got {tuple(grid.shape)}")
    if grid.shape[0] != u.shape[0]:
        raise ValueError(f"U has batch {u.shape[0]} but grid has batch {grid.shape[0]}")
    if grid.dtype != u.dtype or grid.device != u.device:
        raise ValueError(f"U and grid must share dtype and device, got {u.dtype}/{u.device} "
                         f"and {grid.dtype}/{grid.device}")


def to_pixel(grid: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised grid ``(N, H', W', 2)`` → pixel coordinates ``x, y`` each ``(N, H', W')``."""
    x = ((grid[..., 0] + 1) * width - 1) / 2
    y = ((grid[..., 1] + 1) * height - 1) / 2
    return x, y


def _corner_terms(x: torch.Tensor, y: torch.Tensor, height: int, width: int):
    """The ≤ 4 non-zero terms of the bilinear kernel sum for each output point.

    x, y: pixel coordinates ``(N, P)``. Yields per corner: flat index ``(N, P)`` (clamped to
    a valid pixel), validity mask, k(x − m), k(y − n), g(m, x), g(n, y).
    """
    x0 = torch.floor(x)
    y0 = torch.floor(y)
    fx = x - x0
    fy = y - y0
    on_x = fx == 0  # exactly on an integer: the paper's g picks +1 for m = x, 0 for m = x + 1
    on_y = fy == 0
    one = torch.ones_like(x)
    for dy in (0, 1):
        ky = (1 - fy) if dy == 0 else fy
        gy = torch.where(on_y, one, -one) if dy == 0 else torch.where(on_y, 0 * one, one)
        n = y0 + dy
        for dx in (0, 1):
            kx = (1 - fx) if dx == 0 else fx
            gx = torch.where(on_x, one, -one) if dx == 0 else torch.where(on_x, 0 * one, one)
            m = x0 + dx
            valid = (m >= 0) & (m <= width - 1) & (n >= 0) & (n <= height - 1)
            idx = (n.clamp(0, height - 1) * width + m.clamp(0, width - 1)).long()
            yield idx, valid, kx, ky, gx, gy


def _gather(u_flat: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """u_flat ``(N, C, HW)``, idx ``(N, P)`` → ``(N, C, P)``."""
    return torch.gather(u_flat, 2, idx.unsqueeze(1).expand(-1, u_flat.shape[1], -1))


def _scatter(values: torch.Tensor, idx: torch.Tensor, hw: int) -> torch.Tensor:
    """values ``(N, C, P)`` summed into ``(N, C, HW)`` at idx ``(N, P)``."""
    out = values.new_zeros(values.shape[0], values.shape[1], hw)
    return out.scatter_add_(2, idx.unsqueeze(1).expand(-1, values.shape[1], -1), values)


class _BilinearSampler(torch.autograd.Function):
    """Reference bilinear sampler with the paper's hand-written gradients."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        n, c, h, w = u.shape
        ho, wo = grid.shape[1:3]
        x, y = to_pixel(grid.reshape(n, ho * wo, 2), h, w)
        u_flat = u.reshape(n, c, h * w)
        out = u.new_zeros(n, c, ho * wo)
        for idx, valid, kx, ky, _, _ in _corner_terms(x, y, h, w):
            out += _gather(u_flat, idx) * (kx * ky * valid).unsqueeze(1)
        ctx.save_for_backward(u, grid)
        return out.view(n, c, ho, wo)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        u, grid = ctx.saved_tensors
        n, c, h, w = u.shape
        ho, wo = grid.shape[1:3]
        x, y = to_pixel(grid.reshape(n, ho * wo, 2), h, w)
        u_flat = u.reshape(n, c, h * w)
        g = grad_out.reshape(n, c, ho * wo)
        grad_u = torch.zeros_like(u_flat) if ctx.needs_input_grad[0] else None
        dx = torch.zeros_like(x)
        dy = torch.zeros_like(y)
        for idx, valid, kx, ky, gx, gy in _corner_terms(x, y, h, w):
            vf = valid.to(u.dtype)
            if grad_u is not None:
                # ∂V_i/∂U_nm = k(x_i − m) k(y_i − n)
                grad_u += _scatter(g * (kx * ky * vf).unsqueeze(1), idx, h * w)
            if ctx.needs_input_grad[1]:
                # Σ_c grad_c · U_nm^c, then ∂V/∂x = U k(y − n) g(m, x), ∂V/∂y = U k(x − m) g(n, y)
                gu = (g * _gather(u_flat, idx)).sum(1) * vf
                dx += gu * ky * gx
                dy += gu * kx * gy
        grad_grid = None
        if ctx.needs_input_grad[1]:
            # chain rule through x = ((x_norm + 1) W − 1) / 2
            grad_grid = torch.stack([dx * (w / 2), dy * (h / 2)], -1).view(n, ho, wo, 2)
        grad_u = grad_u.view(n, c, h, w) if grad_u is not None else None
        return grad_u, grad_grid


class _NearestSampler(torch.autograd.Function):
    """Reference integer-kernel sampler: V_i = U at (⌊y + 0.5⌋, ⌊x + 0.5⌋); zero gradient to the grid."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        n, c, h, w = u.shape
        ho, wo = grid.shape[1:3]
        idx, valid = _nearest_index(grid.reshape(n, ho * wo, 2), h, w)
        out = _gather(u.reshape(n, c, h * w), idx) * valid.unsqueeze(1)
        ctx.save_for_backward(idx, valid)
        ctx.shape = (n, c, h, w)
        return out.view(n, c, ho, wo)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        idx, valid = ctx.saved_tensors
        n, c, h, w = ctx.shape
        grad_u = None
        if ctx.needs_input_grad[0]:
            g = grad_out.reshape(n, c, -1) * valid.unsqueeze(1)
            grad_u = _scatter(g, idx, h * w).view(n, c, h, w)
        # δ(⌊x + 0.5⌋ − m) is piecewise constant in x: its derivative is zero almost everywhere.
        grad_grid = torch.zeros(n, *grad_out.shape[2:], 2, dtype=grad_out.dtype, device=grad_out.device)
        return grad_u, (grad_grid if ctx.needs_input_grad[1] else None)


def _nearest_index(grid: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = to_pixel(grid, height, width)
    m = torch.floor(x + 0.5)
    nn_ = torch.floor(y + 0.5)
    valid = ((m >= 0) & (m <= width - 1) & (nn_ >= 0) & (nn_ <= height - 1)).to(grid.dtype)
    idx = (nn_.clamp(0, height - 1) * width + m.clamp(0, width - 1)).long()
    return idx, valid


def _clamp_to_border(grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Clamp a normalised grid to the centres of the outer pixels (border padding)."""
    lo_x, hi_x = -1 + 1 / width, 1 - 1 / width
    lo_y, hi_y = -1 + 1 / height, 1 - 1 / height
    return torch.stack([grid[..., 0].clamp(lo_x, hi_x), grid[..., 1].clamp(lo_y, hi_y)], -1)


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a 4-D tensor laid out NHWC (and not also NCHW), else ``torch.contiguous_format``."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class _LayoutCast(torch.autograd.Function):
    """``x.to(dtype, memory_format)`` in one pass, whose backward casts the gradient back to x's dtype and
    layout in one pass (autograd's own ``to`` keeps the gradient's layout, so the layer before pays a
    conversion of its own)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dtype: torch.dtype, memory_format: torch.memory_format) -> torch.Tensor:  # noqa: D102
        ctx.back = (x.dtype, memory_format_of(x))
        return x.to(dtype=dtype, memory_format=memory_format)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        dtype, memory_format = ctx.back
        return grad.to(dtype=dtype, memory_format=memory_format), None, None


def _far_limit(dtype: torch.dtype) -> float:
    """:data:`_FAR_LIMIT`, lowered for float16 (max 65504) so that unnormalising to pixels of an image up
    to 4096 px wide cannot overflow either; always far outside [-1, 1]."""
    return min(_FAR_LIMIT, torch.finfo(dtype).max / 8192.0)


class _MoveNonFiniteOutside(torch.autograd.Function):
    """Non-finite coordinates → ``_FAR_OUTSIDE`` (one ``nan_to_num`` pass, as cheap as a copy).

    The backward passes the gradient through unchanged: at a point moved outside every kernel
    term is out of bounds, so the sampler's gradient there is already exactly 0 (both
    backends, zero padding). ``nan_to_num``'s own backward (multiply by an ``isfinite`` mask)
    would cost ~1.5 ms per 256×28×28 batch on one CPU thread, ~10× the forward."""

    @staticmethod
    def forward(ctx, grid: torch.Tensor) -> torch.Tensor:  # noqa: D102
        lim = _far_limit(grid.dtype)
        return torch.nan_to_num(grid, nan=_FAR_OUTSIDE, posinf=_FAR_OUTSIDE, neginf=_FAR_OUTSIDE).clamp_(-lim, lim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad


def _finite_grid(grid: torch.Tensor, padding: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Grid with non-finite coordinates replaced, and for border padding the mask
    ``(N, 1, H', W')`` of finite points (None with zero padding: there the replaced points
    already read 0)."""
    if padding == "zeros":
        return _MoveNonFiniteOutside.apply(grid), None
    finite = torch.isfinite(grid).all(-1)
    lim = _far_limit(grid.dtype)
    safe = torch.where(finite.unsqueeze(-1), grid, torch.zeros_like(grid)).clamp(-lim, lim)
    return safe, finite.unsqueeze(1)


def sample(u: torch.Tensor, grid: torch.Tensor, mode: str = "bilinear", backend: str = "fast",
           padding: str = "zeros") -> torch.Tensor:
    """Sample ``U (N, C, H, W)`` at ``grid (N, H', W', 2)`` → ``V (N, C, H', W')``.

    mode: ``"bilinear"`` or ``"nearest"``; backend: ``"fast"`` (``grid_sample``) or
    ``"reference"`` (the paper's sums and gradients); padding: ``"zeros"`` (the paper) or
    ``"border"`` (repeat the outer pixels). Non-finite grid points read 0; points beyond ±1e6 are
    clamped there (still outside, but no float32 overflow). Under autocast
    the sampling runs in float32 (at least) and V has U's dtype (see the module docstring).
    """
    if (autocast_enabled(u.device) and u.device == grid.device and u.is_floating_point()
            and grid.is_floating_point()):
        dt = torch.promote_types(torch.promote_types(u.dtype, grid.dtype), torch.float32)
        with torch.autocast(u.device.type, enabled=False):
            v = sample(_LayoutCast.apply(u, dt, torch.contiguous_format), grid.to(dt), mode, backend, padding)
            return _LayoutCast.apply(v, u.dtype, memory_format_of(u))
    _check_inputs(u, grid, mode, backend, padding)
    grid, finite = _finite_grid(grid, padding)
    if backend == "fast":
        out = F.grid_sample(u, grid, mode=mode, padding_mode=padding, align_corners=False)
    else:
        if padding == "border":
            grid = _clamp_to_border(grid, u.shape[2], u.shape[3])
        fn = _BilinearSampler if mode == "bilinear" else _NearestSampler
        out = fn.apply(u, grid)
    return out if finite is None else out * finite
