"""The TPS design matrix built in float32 with the Gram formula, cheap input validation of the
TPS (K limit, non-finite control points) and non-finite sampling coordinates.

Tolerance of the fast design: grids within 1e-4 (normalised units) of a float64 reference
built with direct differences. On a 256-pixel side one pixel is 2/256 normalised, so 1e-4 is
1e-4 · 128 = 0.013 px: far below anything bilinear sampling can show. Why it holds: the
Gram formula r² = ‖g‖² + ‖c‖² − 2 g·c in float32 loses a few ulp of ‖g‖² + ‖c‖² ≤ 4, i.e.
|δr²| ≲ 5e-7, so |δU| ≤ |log r² + 1|·|δr²| ≲ 2e-6 per radial term (asserted below); the grid
error is Σ_k |w_k| |δU_k|, and Σ|w| stays below ~25 even for lattices jittered by 0.3 (a
folding warp). Measured: max grid error 2.6e-6 (K = 16) and 4.2e-6 (K = 25) at jitter 0.2.
"""

from __future__ import annotations

import pytest
import torch

import stn_core as S
from stn_core import transforms as T

SIZE = (256, 256)


def _reference_grid(ctrl_in: torch.Tensor, out_size, ctrl_out: torch.Tensor | None = None) -> torch.Tensor:
    """TPS grid in float64 throughout, radial terms from direct differences (P, K, 2)."""
    n, k, _ = ctrl_in.shape
    c = S.tps_lattice(k, torch.float64) if ctrl_out is None else ctrl_out.double()
    w, a = S.tps_coefficients(ctrl_in.double(), c)
    g = S.base_grid(out_size, torch.float64).view(-1, 3)
    u = T._tps_kernel(T._sq_dist(g[:, :2], c))  # (P, K)
    out = u @ w + a[:, :1] + g[:, :1] * a[:, 1:2] + g[:, 1:2] * a[:, 2:3]
    return out.view(n, *out_size, 2)


def _jittered(k: int, std: float, n: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return S.tps_lattice(k, torch.float64) + std * torch.randn(n, k, 2, dtype=torch.float64, generator=g)


@pytest.mark.parametrize("k", [16, 25])
def test_radial_terms_match_direct_differences(k):
    g = S.base_grid(SIZE, torch.float64).view(-1, 3)[:, :2]
    c = S.tps_lattice(k, torch.float64)
    fast = T._tps_radial(g, c)
    assert fast.dtype == torch.float32
    ref = T._tps_kernel(T._sq_dist(g, c))
    assert (fast.double() - ref).abs().max() < 5e-6  # measured 1.3e-6
    # a grid point on a control point: U(0) = 0 to the formula's accuracy (r² left by the
    # cancellation is ≲ 1e-7, U ≲ 2e-6), never NaN or -inf
    on = T._tps_radial(c, c)
    assert torch.isfinite(on).all() and on.diagonal().abs().max() < 5e-6


@pytest.mark.parametrize("k", [16, 25])
@pytest.mark.parametrize("std", [0.05, 0.2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_tps_grid_matches_float64_reference(k, std, dtype):
    ctrl = _jittered(k, std, seed=k)
    ref = _reference_grid(ctrl, SIZE)
    grid = S.tps_grid(ctrl.to(dtype), SIZE)
    assert grid.dtype == dtype
    err = (grid.double() - ref).abs().max().item()
    assert err < 1e-4, err  # 1e-4 normalised = 0.013 px on 256 px; measured ≤ 4.2e-6


def test_tps_identity_and_affine_stay_exact_in_float64():
    # with zero bending weights the float32-accurate radial columns do not enter the grid
    lat = S.tps_lattice(16, torch.float64)
    torch.testing.assert_close(S.tps_grid(lat.unsqueeze(0), SIZE), S.identity_grid(SIZE, dtype=torch.float64),
                               rtol=0, atol=1e-12)


def test_design_is_cached_per_lattice_size_and_dtype():
    T._tps_design_cached.cache_clear()
    ctrl = _jittered(16, 0.1, n=2)
    for _ in range(3):
        S.tps_grid(ctrl, (40, 30))
        S.tps_grid(ctrl.float(), (40, 30))
    info = T._tps_design_cached.cache_info()
    assert info.misses == 2 and info.hits == 4  # one design per dtype, built once
    key = T._ctrl_key(S.tps_lattice(16, torch.float64))
    design = T._tps_design_cached(key, 40, 30, "cpu", torch.float32)
    assert design.dtype == torch.float32 and design.shape == (40 * 30, 16 + 3)


def test_too_many_control_points_is_a_clear_error_before_any_solve():
    T._tps_inverse_cached.cache_clear()
    k = T.MAX_TPS_POINTS + 1
    with pytest.raises(ValueError, match="1024"):
        S.tps_grid(torch.zeros(1, k, 2), (4, 4))
    with pytest.raises(ValueError, match="1024"):
        S.tps_grid(torch.zeros(1, 100_000, 2), (4, 4))  # would take hours / terabytes if solved
    pts = torch.rand(k, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with pytest.raises(ValueError, match="1024"):
        S.tps_grid(pts.unsqueeze(0), (4, 4), ctrl_out=pts)
    with pytest.raises(ValueError, match="1024"):
        S.tps_coefficients(pts.unsqueeze(0), pts)
    with pytest.raises(ValueError, match="1024"):
        S.tps_lattice(33 * 33)
    assert T._tps_inverse_cached.cache_info().currsize == 0  # nothing was solved


def test_the_largest_supported_lattice_still_works():
    lat = S.tps_lattice(T.MAX_TPS_POINTS, torch.float64)  # 32×32, solved in well under a second
    grid = S.tps_grid((lat + 0.001).unsqueeze(0), (8, 8))
    assert torch.isfinite(grid).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_control_points_are_a_clear_error(bad):
    ctrl = S.tps_lattice(16).unsqueeze(0).clone()
    ctrl[0, 5, 1] = bad
    with pytest.raises(ValueError, match="finite"):
        S.tps_grid(ctrl, (8, 8))
    with pytest.raises(ValueError, match="finite"):
        S.tps_coefficients(ctrl)
    ctrl_out = S.tps_lattice(16, torch.float64)
    ctrl_out[3, 0] = bad
    with pytest.raises(ValueError, match="finite"):
        S.tps_grid(S.tps_lattice(16).unsqueeze(0), (8, 8), ctrl_out=ctrl_out)


# ------------------------------------------------------------------ non-finite sampling coordinates

def _grid_with_non_finite(dtype=torch.float64):
    g = torch.Generator().manual_seed(3)
    u = torch.rand(2, 3, 7, 9, dtype=dtype, generator=g)
    grid = (2.4 * torch.rand(2, 5, 6, 2, dtype=dtype, generator=g) - 1.2)
    bad = torch.zeros(2, 5, 6, dtype=torch.bool)
    for (n, i, j, c, v) in [(0, 0, 0, 0, float("nan")), (0, 1, 2, 1, float("nan")), (0, 2, 3, 0, float("inf")),
                            (1, 4, 5, 1, -float("inf")), (1, 0, 1, 0, float("nan")), (1, 3, 3, 1, float("inf"))]:
        grid[n, i, j, c] = v
        bad[n, i, j] = True
    grid[1, 2, 2] = float("nan")  # both coordinates
    bad[1, 2, 2] = True
    return u, grid, bad


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_non_finite_grid_points_read_zero_in_both_backends(mode, padding):
    u, grid, bad = _grid_with_non_finite()
    outs = {}
    for backend in ("reference", "fast"):
        uu = u.clone().requires_grad_()
        gg = grid.clone().requires_grad_()
        v = S.sample(uu, gg, mode=mode, backend=backend, padding=padding)
        assert torch.isfinite(v).all()
        assert (v.permute(0, 2, 3, 1)[bad] == 0).all()  # non-finite points read nothing
        weights = torch.linspace(-1, 1, v.numel(), dtype=v.dtype).view_as(v)
        (v * weights).sum().backward()
        assert torch.isfinite(uu.grad).all() and torch.isfinite(gg.grad).all()
        assert (gg.grad[bad] == 0).all()
        outs[backend] = (v.detach(), uu.grad, gg.grad)
    torch.testing.assert_close(outs["reference"][0], outs["fast"][0], rtol=0, atol=1e-12)
    torch.testing.assert_close(outs["reference"][1], outs["fast"][1], rtol=0, atol=1e-12)
    if mode == "bilinear":  # random points: off the kinks, where the two sub-gradients agree
        torch.testing.assert_close(outs["reference"][2], outs["fast"][2], rtol=1e-9, atol=1e-9)
    # finite points are unaffected: same as sampling a grid with the bad points replaced
    clean = torch.where(bad.unsqueeze(-1), torch.zeros_like(grid), grid)
    ref = S.sample(u, clean, mode=mode, backend="fast", padding=padding)
    keep = ~bad.unsqueeze(1).expand_as(ref)
    torch.testing.assert_close(outs["fast"][0][keep], ref[keep], rtol=0, atol=0)


def test_non_finite_grid_points_under_float32_and_autocast():
    u, grid, bad = _grid_with_non_finite(torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = S.sample(u, grid.to(torch.bfloat16), backend="reference")
    assert v.dtype == torch.float32 and torch.isfinite(v).all()
    assert (v.permute(0, 2, 3, 1)[bad] == 0).all()
