"""Volumetric MNIST for the 3-D spatial transformer (the paper's appendix A.3).

An MNIST digit is extruded into a slab, then rotated in 3-D and placed at random in a 60×60×60 volume
[paper: "extruded", 60³ volume; everything else here is ours, the paper gives no numbers]:

* the slab: the 28×28 digit repeated over ``SLAB`` = 6 voxels of depth, centred in a 28³ block;
* rotation R = R_z(γ) R_y(β) R_x(α) about the block's centre, the tilts α, β ~ U[−60°, 60°] (the
  digit turns away from the viewer, so its projection along depth is foreshortened, down to half
  its width) and the spin γ ~ U[−45°, 45°] (in the image plane);
* translation: the centre uniform in the cube that keeps the slab's bounding sphere
  (radius √(14² + 14² + 3²) ≈ 20.0 voxels) inside the volume: ±(30 − 20.0) ≈ ±10 voxels on each axis.

Each output voxel reads the block through the inverse map (a backward warp with the 3-D
trilinear sampler, zero outside). Random numbers are drawn on the CPU in float64 (a seed gives
the same volumes on any device). The fixed test set is ``TEST_SIZE`` volumes of the MNIST test
split's first digits with ``TEST_SEED``; volumes are made on demand (a 60³ float volume is
0.86 MB, so no test set is stored).
"""

from __future__ import annotations

import math

import torch

from stn_core.sampling3d import sample_3d
from stn_core.transforms3d import affine_grid_3d, rotation_matrix_3d, theta_3d

VOLUME = 60
DIGIT = 28
SLAB = 6
TILT_DEG = 60.0
SPIN_DEG = 45.0
SHIFT_VOX = VOLUME / 2 - math.sqrt(2 * (DIGIT / 2) ** 2 + (SLAB / 2) ** 2)
TEST_SEED = 20150605
TEST_SIZE = 2000


def digit_block(digits: torch.Tensor) -> torch.Tensor:
    """``(n, 28, 28)`` uint8 or float digits → extruded blocks ``(n, 1, 28, 28, 28)`` float in [0, 1]:
    the digit on the ``SLAB`` middle depth slices, zero elsewhere."""
    u = digits.float() / 255.0 if digits.dtype == torch.uint8 else digits.float()
    if u.dim() != 3 or u.shape[1:] != (DIGIT, DIGIT):
        raise ValueError(f"digits must have shape (n, 28, 28), got {tuple(digits.shape)}")
    block = u.new_zeros(u.shape[0], 1, DIGIT, DIGIT, DIGIT)
    lo = (DIGIT - SLAB) // 2
    block[:, 0, lo:lo + SLAB] = u.unsqueeze(1)
    return block


def sample_pose(n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Random poses: ``angles (n, 3)`` radians (tilt x, tilt y, spin z) and ``shift (n, 3)`` voxels."""
    g = generator
    u = torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1
    lim = torch.tensor([TILT_DEG, TILT_DEG, SPIN_DEG], dtype=torch.float64)
    shift = (torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1) * SHIFT_VOX
    return {"angles": torch.deg2rad(u * lim), "shift": shift}


def pose_theta(pose: dict[str, torch.Tensor]) -> torch.Tensor:
    """θ ``(n, 3, 4)`` of the backward warp volume (60³) → block (28³), normalised coordinates.

    Forward, in voxels from the centres: p_vol = R p_block + shift. Backward: p_block = Rᵀ (p_vol − shift);
    normalised by the half sides (30 and 14)."""
    r = rotation_matrix_3d(pose["angles"])
    rt = r.transpose(1, 2)
    half_v, half_b = VOLUME / 2, DIGIT / 2
    return theta_3d(rt * (half_v / half_b), -(rt @ pose["shift"].unsqueeze(-1)).squeeze(-1) / half_b)


#: Side of the window around each digit that is sampled (the rest of the volume is empty): the slab's
#: bounding sphere (20.0) + the trilinear footprint (1 voxel) + rounding of the window's place (0.5) fit.
WINDOW = 44


def _axis_coords(start: torch.Tensor, n: int) -> torch.Tensor:
    """Normalised volume coordinates ``(b, n)`` of the voxel centres ``start .. start + n − 1``."""
    return (start.unsqueeze(1) + torch.arange(n, dtype=start.dtype, device=start.device) + 0.5) / (VOLUME / 2) - 1


def make_volumes(digits: torch.Tensor, pose: dict[str, torch.Tensor], window: bool = True) -> torch.Tensor:
    """Volumes ``(n, 1, 60, 60, 60)`` float32 of ``digits (n, 28, 28)`` in the given poses. With
    ``window`` only a ``WINDOW``³ box around each digit is sampled (2.5× fewer points; the same volume,
    tested against ``window=False``)."""
    block = digit_block(digits)
    dev = block.device
    if any(v.shape[0] != block.shape[0] for v in pose.values()):
        raise ValueError(f"the poses are for {pose['shift'].shape[0]} digits, got {block.shape[0]}")
    theta = pose_theta({k: v.to(dev) for k, v in pose.items()}).float()
    if not window:
        return sample_3d(block, affine_grid_3d(theta, (VOLUME, VOLUME, VOLUME))).clamp_(0.0, 1.0)
    n = block.shape[0]
    centre = VOLUME / 2 + pose["shift"].to(dev, torch.float64)                     # (n, 3) voxels, x y z
    start = (centre - WINDOW / 2).round().clamp(0, VOLUME - WINDOW).float()
    cx, cy, cz = (_axis_coords(start[:, i], WINDOW) for i in range(3))           # each (n, WINDOW)
    pts = torch.stack(torch.broadcast_tensors(cx.view(n, 1, 1, -1), cy.view(n, 1, -1, 1), cz.view(n, -1, 1, 1)), -1)
    grid = torch.einsum("nij,ndhwj->ndhwi", theta[..., :3], pts) + theta[:, None, None, None, :, 3]
    win = sample_3d(block, grid).clamp_(0.0, 1.0)
    out = block.new_zeros(n, 1, VOLUME, VOLUME, VOLUME)
    s = start.long()
    for k in range(n):
        x0, y0, z0 = (int(v) for v in s[k])
        out[k, :, z0:z0 + WINDOW, y0:y0 + WINDOW, x0:x0 + WINDOW] = win[k]
    return out


def random_volumes(digits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``digits (n, 28, 28)`` in random poses → ``(n, 1, 60, 60, 60)``."""
    return make_volumes(digits, sample_pose(digits.shape[0], generator))


def test_poses(n: int = TEST_SIZE, seed: int = TEST_SEED) -> dict[str, torch.Tensor]:
    """The fixed test set's poses (its digits are the test split's first ``n``)."""
    return sample_pose(n, torch.Generator().manual_seed(seed))


def projection(volume: torch.Tensor) -> torch.Tensor:
    """``(N, C, D, H, W)`` → its sum along depth in units of the slab's thickness ``(N, C, H, W)``: what a
    viewer along z sees. A slab facing the viewer, sampled once per voxel, projects to the digit itself
    (values in [0, 1]); a mean over the 60 slices would make the digit 10× dimmer than the 2-D CNN's
    inputs, and training stalled at chance with it."""
    return volume.sum(2) / SLAB


__all__ = ["DIGIT", "SLAB", "WINDOW", "TEST_SEED", "TEST_SIZE", "VOLUME", "digit_block", "make_volumes", "pose_theta",
           "projection", "random_volumes", "sample_pose", "test_poses"]
