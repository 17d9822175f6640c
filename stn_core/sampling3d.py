"""The differentiable volume sampler: the paper's §3.3 sampler with one more axis (appendix A.3).

``V_i^c = Σ_l Σ_n Σ_m U_lnm^c · k(x_i − m) · k(y_i − n) · k(z_i − l)`` in voxel coordinates with the
trilinear kernel ``k(d) = max(0, 1 − |d|)``. Gradients, as in 2-D: ``∂V/∂U_lnm = k(x − m) k(y − n)
k(z − l)`` and ``∂V/∂x = Σ U_lnm k(y − n) k(z − l) g(m, x)`` with the paper's sub-gradient
``g = 0 if |m − x| ≥ 1, +1 if m ≥ x, −1 if m < x`` (and likewise for y and z).

Two backends, like :mod:`stn_core.sampling`:

* ``"reference"`` — the sums over the ≤ 8 non-zero corners written out, with the hand-written backward;
* ``"fast"`` — ``torch.nn.functional.grid_sample`` on 5-D tensors (its ``"bilinear"`` mode is trilinear).

Grids: ``(N, D', H', W', 3)`` of normalised ``(x, y, z)`` in [-1, 1], ``align_corners=False``
(:mod:`stn_core.transforms3d`); voxel coordinate ``x = ((x_norm + 1) · W − 1) / 2``. Zero padding
(the paper's) or border padding. Non-finite coordinates read 0. Under autocast the sampling runs in
float32 and V has U's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .sampling import _check_inputs
from .transforms import autocast_enabled

_FAR_OUTSIDE = -7.0
_FAR_LIMIT = 1e6


def to_voxel(grid: torch.Tensor, depth: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """Normalised ``(..., 3)`` → voxel coordinates x, y, z (each ``(...)``)."""
    return (((grid[..., 0] + 1) * width - 1) / 2, ((grid[..., 1] + 1) * height - 1) / 2,
            ((grid[..., 2] + 1) * depth - 1) / 2)


def _axis_terms(c: torch.Tensor, size: int):
    """The two kernel terms of one axis: (index, in-range mask, k, g) for the lower and upper voxel."""
    c0 = torch.floor(c)
    f = c - c0
    on = f == 0  # exactly on a voxel: the paper's g is +1 for that voxel, 0 for the next
    one = torch.ones_like(c)
    lower = (c0, (c0 >= 0) & (c0 <= size - 1), 1 - f, torch.where(on, one, -one))
    upper = (c0 + 1, (c0 + 1 >= 0) & (c0 + 1 <= size - 1), f, torch.where(on, 0 * one, one))
    return lower, upper


def _corner_terms(x, y, z, d: int, h: int, w: int):
    """Per corner: flat index ``(N, P)`` (clamped), validity, kx, ky, kz, gx, gy, gz."""
    tx, ty, tz = _axis_terms(x, w), _axis_terms(y, h), _axis_terms(z, d)
    for l, vz, kz, gz in tz:
        for n, vy, ky, gy in ty:
            for m, vx, kx, gx in tx:
                idx = ((l.clamp(0, d - 1) * h + n.clamp(0, h - 1)) * w + m.clamp(0, w - 1)).long()
                yield idx, vx & vy & vz, kx, ky, kz, gx, gy, gz


def _gather(u_flat: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return torch.gather(u_flat, 2, idx.unsqueeze(1).expand(-1, u_flat.shape[1], -1))


class _TrilinearSampler(torch.autograd.Function):
    """Reference trilinear sampler with the paper's hand-written (sub)gradients."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        n, c, d, h, w = u.shape
        out_shape = grid.shape[1:4]
        p = out_shape.numel()
        x, y, z = to_voxel(grid.reshape(n, p, 3), d, h, w)
        u_flat = u.reshape(n, c, d * h * w)
        out = u.new_zeros(n, c, p)
        for idx, valid, kx, ky, kz, *_ in _corner_terms(x, y, z, d, h, w):
            out += _gather(u_flat, idx) * (kx * ky * kz * valid).unsqueeze(1)
        ctx.save_for_backward(u, grid)
        return out.view(n, c, *out_shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        u, grid = ctx.saved_tensors
        n, c, d, h, w = u.shape
        out_shape = grid.shape[1:4]
        p = out_shape.numel()
        x, y, z = to_voxel(grid.reshape(n, p, 3), d, h, w)
        u_flat = u.reshape(n, c, d * h * w)
        g = grad_out.reshape(n, c, p)
        grad_u = torch.zeros_like(u_flat) if ctx.needs_input_grad[0] else None
        dx, dy, dz = torch.zeros_like(x), torch.zeros_like(y), torch.zeros_like(z)
        for idx, valid, kx, ky, kz, gx, gy, gz in _corner_terms(x, y, z, d, h, w):
            vf = valid.to(u.dtype)
            if grad_u is not None:
                vals = g * (kx * ky * kz * vf).unsqueeze(1)
                grad_u.scatter_add_(2, idx.unsqueeze(1).expand(-1, c, -1), vals)
            if ctx.needs_input_grad[1]:
                gu = (g * _gather(u_flat, idx)).sum(1) * vf
                dx += gu * ky * kz * gx
                dy += gu * kx * kz * gy
                dz += gu * kx * ky * gz
        grad_grid = None
        if ctx.needs_input_grad[1]:
            grad_grid = torch.stack([dx * (w / 2), dy * (h / 2), dz * (d / 2)], -1).view(n, *out_shape, 3)
        return (grad_u.view(n, c, d, h, w) if grad_u is not None else None), grad_grid


def sample_3d(u: torch.Tensor, grid: torch.Tensor, backend: str = "fast", padding: str = "zeros") -> torch.Tensor:
    """Sample ``U (N, C, D, H, W)`` at ``grid (N, D', H', W', 3)`` → ``V (N, C, D', H', W')``, trilinear."""
    if (autocast_enabled(u.device) and u.device == grid.device and u.is_floating_point()
            and grid.is_floating_point()):
        dt = torch.promote_types(torch.promote_types(u.dtype, grid.dtype), torch.float32)
        with torch.autocast(u.device.type, enabled=False):
            return sample_3d(u.to(dt), grid.to(dt), backend, padding).to(u.dtype)
    _check_inputs(u, grid, "bilinear", backend, padding, dims=3)
    finite = None
    if not bool(torch.isfinite(grid.detach()).all()):  # one cheap pass; the per-point mask only when needed
        finite = torch.isfinite(grid).all(-1)
        grid = torch.where(finite.unsqueeze(-1), grid, torch.full_like(grid, _FAR_OUTSIDE))
    if float(grid.detach().abs().amax()) > _FAR_LIMIT:
        grid = grid.clamp(-_FAR_LIMIT, _FAR_LIMIT)
    if backend == "fast":
        out = F.grid_sample(u, grid, mode="bilinear", padding_mode=padding, align_corners=False)
    else:
        if padding == "border":
            d, h, w = u.shape[2:]
            x, y, z = to_voxel(grid, d, h, w)
            x, y, z = x.clamp(0, w - 1), y.clamp(0, h - 1), z.clamp(0, d - 1)
            grid = torch.stack([(2 * x + 1) / w - 1, (2 * y + 1) / h - 1, (2 * z + 1) / d - 1], -1)
        out = _TrilinearSampler.apply(u, grid)
    return out if finite is None else out * finite.unsqueeze(1).to(out.dtype)


__all__ = ["sample_3d", "to_voxel"]
