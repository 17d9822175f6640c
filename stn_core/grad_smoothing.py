"""Bilinear sampling whose gradient w.r.t. the grid is taken on a Gaussian-blurred input [ours, not the paper's].

The paper's sampler gives exact (sub)gradients: ∂V/∂x^s is the bilinear image gradient of U at each sample
point, a pixel-scale quantity. When a box crops a large, detailed photo at full resolution (CUB at 448 px)
that gradient is dominated by texture, and its direction says little about where the useful part of the
bird lies (``scripts/cub_box_pull.py`` → results/cub-pull.md measures it). :func:`sample_smoothed_grad` keeps
the forward value of the paper's bilinear sampler (the classifier still sees the sharp crop) and replaces
only the gradient w.r.t. the grid by that of the same sampling on U blurred with a Gaussian of ``sigma``
pixels, a coarse-scale estimate of how the loss changes when the box moves:

    V = sample(U, G)  (forward),   ∂V/∂G := ∂ sample(U * g_σ, G)/∂G  (backward).

It is a biased, straight-through estimator, a named option of the CUB models, never the default.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from stn_core.sampling import sample


def gaussian_kernel1d(sigma: float, dtype: torch.dtype = torch.float32,
                      device: torch.device | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian taps (2r + 1,), r = ceil(3 σ)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(u: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, C, H, W) → the same blurred by a separable Gaussian of ``sigma`` pixels (reflected borders;
    kernels wider than the image fall back to replicated borders)."""
    if u.dim() != 4:
        raise ValueError(f"expected (N, C, H, W), got {tuple(u.shape)}")
    k = gaussian_kernel1d(sigma, u.dtype, u.device)
    r, c = k.numel() // 2, u.shape[1]
    mode = "reflect" if r < min(u.shape[-2:]) else "replicate"
    x = F.conv2d(F.pad(u, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _repeat(u: torch.Tensor, repeat: int) -> torch.Tensor:
    """(N, C, H, W) → (N·repeat, C, H, W), each image ``repeat`` times in a row (a view-backed expand)."""
    if repeat == 1:
        return u
    return u.unsqueeze(1).expand(u.shape[0], repeat, *u.shape[1:]).reshape(u.shape[0] * repeat, *u.shape[1:])


def sample_smoothed_grad(u: torch.Tensor, grid: torch.Tensor, sigma: float, repeat: int = 1) -> torch.Tensor:
    """Bilinear sampling of ``u`` (N, C, H, W) at ``grid`` (N·repeat, h, w, 2) (image i read by grids
    i·repeat … i·repeat + repeat − 1) → (N·repeat, C, h, w). Forward: the paper's bilinear sampler; backward:
    the grid's gradient from ``u`` blurred by ``sigma`` px (the module docstring), and ``u`` gets none.
    ``sigma`` 0: the paper's sampler, gradients to ``u`` included."""
    if grid.shape[0] != u.shape[0] * repeat:
        raise ValueError(f"grid batch {grid.shape[0]} must be {repeat} × the images' {u.shape[0]}")
    if sigma == 0:
        return sample(_repeat(u, repeat), grid, mode="bilinear")
    sharp = sample(_repeat(u.detach(), repeat), grid.detach(), mode="bilinear")
    smooth = sample(_repeat(gaussian_blur(u.detach(), sigma), repeat), grid, mode="bilinear")
    return sharp + (smooth - smooth.detach())
