"""Grid generators: agreement with torch, identities, special cases, gradients, degenerate input."""


import pytest
import torch
import torch.nn.functional as F

import stn_core as S

CUDA = pytest.mark.cuda  # skipped without a GPU (tests/conftest.py)
SIZES = [(1, 1), (1, 5), (4, 4), (7, 11), (28, 28)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_affine_grid_agrees_with_torch(size, dtype):
    theta = torch.randn(3, 2, 3, dtype=dtype, generator=torch.Generator().manual_seed(0)).to(dtype)
    ours = S.affine_grid(theta, size)
    ref = F.affine_grid(theta, (3, 1, *size), align_corners=False)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(ours, ref, rtol=0, atol=16 * eps)


def _u(h=9, w=10, dtype=torch.float64):
    return torch.rand(2, 3, h, w, dtype=dtype, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kind", S.TRANSFORM_KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identity_of_every_kind_reproduces_the_input(kind, dtype):
    u = _u(dtype=dtype)
    params = S.identity_params(kind, dtype=dtype).unsqueeze(0).repeat(2, 1)
    grid = S.make_grid(kind, params, u.shape[2:])
    torch.testing.assert_close(grid, S.identity_grid(u.shape[2:], 2, dtype), rtol=0,
                               atol=1e-12 if dtype == torch.float64 else 1e-6)
    for backend in ("reference", "fast"):
        torch.testing.assert_close(S.sample(u, grid, backend=backend), u, rtol=0,
                                   atol=1e-12 if dtype == torch.float64 else 1e-6)


def test_attention_equals_affine_with_isotropic_scale():
    p = torch.tensor([[0.5, 0.2, -0.3], [1.2, -0.1, 0.4]], dtype=torch.float64)
    theta = torch.tensor([[[0.5, 0, 0.2], [0, 0.5, -0.3]], [[1.2, 0, -0.1], [0, 1.2, 0.4]]], dtype=torch.float64)
    torch.testing.assert_close(S.attention_grid(p, (6, 7)), S.affine_grid(theta, (6, 7)), rtol=0, atol=0)


def test_projective_with_last_row_001_equals_affine():
    theta = torch.randn(3, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    h8 = torch.cat([theta.reshape(3, 6), torch.zeros(3, 2, dtype=torch.float64)], 1)
    torch.testing.assert_close(S.projective_grid(h8, (5, 8)), S.affine_grid(theta, (5, 8)), rtol=0, atol=1e-14)
    h33 = torch.cat([theta, torch.tensor([0, 0, 1.0], dtype=torch.float64).expand(3, 1, 3)], 1)
    torch.testing.assert_close(S.projective_grid(h33, (5, 8)), S.affine_grid(theta, (5, 8)), rtol=0, atol=1e-14)


def test_projective_divides_by_the_third_coordinate():
    h = torch.tensor([[1, 0, 0, 0, 1, 0, 0.3, -0.2]], dtype=torch.float64)
    grid = S.projective_grid(h, (3, 4))
    g = S.base_grid((3, 4), torch.float64)
    w = 1 + 0.3 * g[..., 0] - 0.2 * g[..., 1]
    torch.testing.assert_close(grid[0, ..., 0], g[..., 0] / w)
    torch.testing.assert_close(grid[0, ..., 1], g[..., 1] / w)


def test_projective_points_beyond_the_horizon_are_finite_and_sample_background():
    h = torch.tensor([[1, 0, 0, 0, 1, 0, 2.0, 0]], dtype=torch.float64)  # w = 1 + 2x ≤ 0 for x ≤ -0.5
    grid = S.projective_grid(h, (8, 8))
    assert torch.isfinite(grid).all()
    w = S.projective_denominator(h, (8, 8))
    behind = w <= 0
    assert behind.any() and (~behind).any()
    v = S.sample(torch.ones(1, 1, 8, 8, dtype=torch.float64), grid)
    assert (v[:, 0][behind] == 0).all()


def test_tps_identity_and_lattice_order():
    lat = S.tps_lattice(9)
    assert lat[:3, 1].eq(-1).all() and lat[:3, 0].tolist() == [-1.0, 0.0, 1.0]  # x varies fastest
    grid = S.tps_grid(lat.double().unsqueeze(0), (6, 7))
    torch.testing.assert_close(grid, S.identity_grid((6, 7), dtype=torch.float64), rtol=0, atol=1e-12)


def test_tps_interpolates_its_control_points():
    ctrl_out = torch.tensor([[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5], [0.0, 0.0]], dtype=torch.float64)
    ctrl_in = ctrl_out + 0.1 * torch.randn(1, 5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    w, a = S.tps_coefficients(ctrl_in, ctrl_out)
    kernel = S.transforms._tps_kernel(S.transforms._sq_dist(ctrl_out, ctrl_out))
    mapped = kernel @ w[0] + a[0, 0] + ctrl_out[:, :1] * a[0, 1] + ctrl_out[:, 1:] * a[0, 2]
    torch.testing.assert_close(mapped, ctrl_in[0], rtol=0, atol=1e-12)
    assert w[0].sum(0).abs().max() < 1e-12  # TPS side condition Σ w = 0


def test_tps_of_an_affine_map_is_that_affine_map_with_zero_bending():
    theta = torch.tensor([[[0.8, 0.2, 0.1], [-0.1, 0.9, -0.2]]], dtype=torch.float64)
    lat = S.tps_lattice(16, torch.float64)
    ctrl_in = (torch.cat([lat, torch.ones(16, 1, dtype=torch.float64)], 1) @ theta[0].T).unsqueeze(0)
    torch.testing.assert_close(S.tps_grid(ctrl_in, (5, 6)), S.affine_grid(theta, (5, 6)), rtol=0, atol=1e-12)
    assert S.tps_bending_energy(ctrl_in).abs().item() < 1e-12


def test_tps_system_is_solved_once_and_cached():
    S.transforms._tps_inverse_cached.cache_clear()
    ctrl = S.tps_lattice(16, torch.float64).unsqueeze(0)
    for _ in range(3):
        S.tps_grid(ctrl, (4, 4))
    info = S.transforms._tps_inverse_cached.cache_info()
    assert info.misses == 1 and info.hits == 2


def test_tps_degenerate_control_points_are_reported_not_nan():
    coincident = torch.tensor([[-1, -1], [1, -1], [-1, 1], [1, 1], [1, 1]], dtype=torch.float64)
    with pytest.raises(ValueError, match="coincide"):
        S.tps_grid(coincident.unsqueeze(0), (4, 4), ctrl_out=coincident)
    grid = S.tps_grid(coincident.unsqueeze(0), (4, 4), ctrl_out=coincident, reg=1e-3)
    assert torch.isfinite(grid).all()
    collinear = torch.tensor([[-1, -1], [0, 0], [1, 1], [0.5, 0.5]], dtype=torch.float64)
    with pytest.raises(ValueError, match="collinear"):
        S.tps_grid(collinear.unsqueeze(0), (4, 4), ctrl_out=collinear, reg=1.0)
    nearly = coincident.clone()
    nearly[4] += 1e-9
    with pytest.raises(ValueError):
        S.tps_grid(nearly.unsqueeze(0), (4, 4), ctrl_out=nearly)


def test_tps_rejects_non_square_default_lattice():
    with pytest.raises(ValueError, match="square"):
        S.tps_grid(torch.zeros(1, 5, 2), (4, 4))


def test_gradcheck_grid_generators():
    g = torch.Generator().manual_seed(5)
    theta = torch.randn(2, 2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: S.affine_grid(t, (3, 4)), (theta,))
    att = torch.randn(2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: S.attention_grid(p, (3, 4)), (att,))
    h = (torch.tensor([1, 0, 0, 0, 1, 0, 0, 0], dtype=torch.float64)
         + 0.1 * torch.randn(2, 8, dtype=torch.float64, generator=g)).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: S.projective_grid(p, (3, 4)), (h,))
    ctrl = (S.tps_lattice(9, torch.float64) + 0.1 * torch.randn(2, 9, 2, dtype=torch.float64, generator=g)).requires_grad_()
    assert torch.autograd.gradcheck(lambda c: S.tps_grid(c, (3, 4)), (ctrl,))


def test_affine_grid_gradient_is_the_homogeneous_target_coordinate():
    # ∂x^s/∂θ_1j = (x^t, y^t, 1)_j (paper §3.2)
    theta = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    grid = S.affine_grid(theta, (3, 4))
    grid[0, 1, 2, 0].backward()
    g = S.base_grid((3, 4), torch.float64)[1, 2]
    torch.testing.assert_close(theta.grad[0, 0], g)
    assert theta.grad[0, 1].abs().sum() == 0


def test_compose_affine_controls():
    torch.testing.assert_close(S.compose_affine(), torch.tensor([[1.0, 0, 0], [0, 1, 0]], dtype=torch.float64))
    theta = S.compose_affine(rotation_deg=90)
    # window turned counter-clockwise on screen: output's +x axis points up (−y) in the input
    torch.testing.assert_close(theta[:, 0], torch.tensor([0.0, -1.0], dtype=torch.float64), atol=1e-15, rtol=0)
    zoom = S.compose_affine(scale=(0.5, 0.5), translation=(0.2, -0.1))
    torch.testing.assert_close(zoom, torch.tensor([[0.5, 0, 0.2], [0, 0.5, -0.1]], dtype=torch.float64))
    # on a non-square image a rotation keeps pixel lengths: rotate a wide image's window by 90°
    th = S.compose_affine(rotation_deg=90, in_size=(100, 200))
    d = torch.diag(torch.tensor([200.0, 100.0], dtype=torch.float64))
    lin_pix = d @ th[:, :2] @ torch.linalg.inv(d)
    assert abs(torch.linalg.det(lin_pix).item() - 1) < 1e-12
    torch.testing.assert_close(lin_pix @ lin_pix.T, torch.eye(2, dtype=torch.float64))


def test_unknown_kind_and_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="unknown transform"):
        S.make_grid("similarity", torch.zeros(1, 4), (3, 3))
    with pytest.raises(ValueError, match=r"\(N, 2, 3\)"):
        S.affine_grid(torch.zeros(2, 6), (3, 3))
    with pytest.raises(ValueError, match="out_size"):
        S.affine_grid(torch.zeros(1, 2, 3), (0, 3))


@CUDA
@pytest.mark.parametrize("kind", S.TRANSFORM_KINDS)
def test_grids_on_cuda_match_cpu(kind):
    params = S.identity_params(kind).unsqueeze(0) + 0.05 * torch.randn(1, S.num_params(kind))
    cpu = S.make_grid(kind, params, (8, 9))
    gpu = S.make_grid(kind, params.cuda(), (8, 9))
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-5)


def test_tps_cache_filled_in_inference_mode_still_supports_autograd():
    S.transforms._tps_inverse_cached.cache_clear()
    S.transforms._tps_design_cached.cache_clear()
    with torch.inference_mode():
        S.tps_grid(S.tps_lattice(9).unsqueeze(0), (5, 5))
    ctrl = (S.tps_lattice(9) + 0.05).unsqueeze(0).requires_grad_()
    S.tps_grid(ctrl, (5, 5)).sum().backward()
    assert ctrl.grad is not None and torch.isfinite(ctrl.grad).all()
