"""3-D grid generator for a volumetric spatial transformer (the paper's appendix A.3).

The 2-D convention extended by one axis: normalised coordinates in [-1, 1] with
``align_corners=False`` (±1 are the outer faces of the volume, voxel centres at
``(2i + 1)/n − 1``), points ordered ``(x, y, z)`` = (width, height, depth), grids shaped
``(N, D', H', W', 3)`` as :func:`torch.nn.functional.affine_grid` makes them for 5-D inputs.

``(x^s, y^s, z^s)ᵀ = A_θ (x^t, y^t, z^t, 1)ᵀ`` with A_θ ``(N, 3, 4)``: each output voxel reads the
input at the transformed point (a backward warp, as in 2-D).
"""

from __future__ import annotations

from typing import Sequence

import torch

from .transforms import _apply_rows, _check_batch, _float32_under_autocast, _linspace_centres

Size3 = tuple[int, int, int]


def check_size_3d(out_size: Sequence[int]) -> Size3:
    """``(D', H', W')`` as three positive ints (ValueError otherwise)."""
    try:
        d, h, w = (int(v) for v in out_size)
    except (TypeError, ValueError):
        raise ValueError(f"out_size must be (D, H, W), got {out_size!r}") from None
    if min(d, h, w) < 1:
        raise ValueError(f"out_size must be positive, got {(d, h, w)}")
    return d, h, w


def base_grid_3d(out_size: Sequence[int], dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Regular output grid in homogeneous form: ``(D', H', W', 4)`` of ``(x^t, y^t, z^t, 1)``."""
    d, h, w = check_size_3d(out_size)
    device = torch.device(device) if device is not None else torch.device("cpu")
    grid = torch.ones(d, h, w, 4, dtype=dtype, device=device)
    grid[..., 0] = _linspace_centres(w, dtype, device).view(1, 1, w)
    grid[..., 1] = _linspace_centres(h, dtype, device).view(1, h, 1)
    grid[..., 2] = _linspace_centres(d, dtype, device).view(d, 1, 1)
    return grid


@_float32_under_autocast
def affine_grid_3d(theta: torch.Tensor, out_size: Sequence[int]) -> torch.Tensor:
    """3-D affine grid generator: θ ``(N, 3, 4)`` → ``(N, D', H', W', 3)``; agrees with
    ``F.affine_grid(theta, (N, C, D', H', W'), align_corners=False)``."""
    _check_batch(theta, "theta")
    if theta.dim() != 3 or theta.shape[1:] != (3, 4):
        raise ValueError(f"theta must have shape (N, 3, 4), got {tuple(theta.shape)}")
    d, h, w = check_size_3d(out_size)
    g = base_grid_3d((d, h, w), theta.dtype, theta.device).view(d * h * w, 4)
    return _apply_rows(theta, g).view(theta.shape[0], d, h, w, 3)


def rotation_matrix_3d(angles: torch.Tensor) -> torch.Tensor:
    """Rotations ``(N, 3, 3)`` from angles ``(N, 3)`` in radians about the x, y and z axes,
    applied in that order: R = R_z · R_y · R_x."""
    if angles.dim() != 2 or angles.shape[1] != 3:
        raise ValueError(f"angles must have shape (N, 3), got {tuple(angles.shape)}")
    c, s = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])
    rx = torch.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], 1).view(-1, 3, 3)
    ry = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], 1).view(-1, 3, 3)
    rz = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], 1).view(-1, 3, 3)
    return rz @ ry @ rx


def theta_3d(linear: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """A_θ ``(N, 3, 4)`` = [linear ``(N, 3, 3)`` | translation ``(N, 3)``]."""
    return torch.cat([linear, translation.unsqueeze(-1)], -1)


def identity_theta_3d(n: int = 1, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """The identity A_θ ``(N, 3, 4)``."""
    eye = torch.eye(3, 4, dtype=dtype, device=device)
    return eye.unsqueeze(0).expand(n, -1, -1).clone()


def invert_theta_3d(theta: torch.Tensor) -> torch.Tensor:
    """The inverse affine map of θ ``(N, 3, 4)``: [A⁻¹ | −A⁻¹ t]."""
    a_inv = torch.linalg.inv(theta[..., :3])
    return theta_3d(a_inv, -(a_inv @ theta[..., 3:]).squeeze(-1))


def box_corners_3d(theta: torch.Tensor) -> torch.Tensor:
    """Where the output volume's 8 corners (±1, ±1, ±1) read the input: ``(N, 8, 3)`` normalised
    input coordinates (the box of the input that the transformer looks at)."""
    c = torch.tensor([[x, y, z, 1.0] for z in (-1.0, 1.0) for y in (-1.0, 1.0) for x in (-1.0, 1.0)],
                     dtype=theta.dtype, device=theta.device)
    return torch.einsum("nij,kj->nki", theta, c)


__all__ = ["affine_grid_3d", "base_grid_3d", "box_corners_3d", "check_size_3d", "identity_theta_3d",
           "invert_theta_3d", "rotation_matrix_3d", "theta_3d"]
