"""The sampler: reference (paper) vs fast (grid_sample), gradients, sub-gradients, padding."""

import pytest
import torch
import torch.nn.functional as F

import stn_core as S
from stn_core.sampling import to_pixel

CUDA = pytest.mark.cuda  # skipped without a GPU (tests/conftest.py)


def _random_case(seed: int, dtype=torch.float64, n=2, c=3, h=7, w=9, ho=5, wo=6, spread=1.3):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    grid = (torch.rand(n, ho, wo, 2, generator=g, dtype=dtype) * 2 - 1) * spread
    return u, grid


def paper_sum(u: torch.Tensor, grid: torch.Tensor, kernel: str) -> torch.Tensor:
    """The paper's sampler written literally as a sum over every input pixel (tiny sizes only)."""
    n, c, h, w = u.shape
    x, y = to_pixel(grid, h, w)  # (N, H', W')
    m = torch.arange(w, dtype=u.dtype).view(1, 1, 1, w)
    nn_ = torch.arange(h, dtype=u.dtype).view(1, 1, 1, h)
    if kernel == "bilinear":
        kx = (1 - (x.unsqueeze(-1) - m).abs()).clamp_min(0)
        ky = (1 - (y.unsqueeze(-1) - nn_).abs()).clamp_min(0)
    else:
        kx = (torch.floor(x.unsqueeze(-1) + 0.5) == m).to(u.dtype)
        ky = (torch.floor(y.unsqueeze(-1) + 0.5) == nn_).to(u.dtype)
    return torch.einsum("bcnm,bijm,bijn->bcij", u, kx, ky)


def paper_grad_x(u: torch.Tensor, grid: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """∂L/∂x^s (pixel units) from the paper's formula with g(m, x) written out literally."""
    n, c, h, w = u.shape
    x, y = to_pixel(grid, h, w)
    m = torch.arange(w, dtype=u.dtype).view(1, 1, 1, w)
    nn_ = torch.arange(h, dtype=u.dtype).view(1, 1, 1, h)
    d = m - x.unsqueeze(-1)
    gx = torch.where(d.abs() >= 1, torch.zeros_like(d), torch.where(d >= 0, torch.ones_like(d), -torch.ones_like(d)))
    ky = (1 - (y.unsqueeze(-1) - nn_).abs()).clamp_min(0)
    dv_dx = torch.einsum("bcnm,bijm,bijn->bcij", u, gx, ky)
    return (dv_dx * grad_out).sum(1)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_bilinear_reference_equals_fast_equals_grid_sample(seed, padding):
    u, grid = _random_case(seed)
    ref = S.sample(u, grid, "bilinear", "reference", padding)
    fast = S.sample(u, grid, "bilinear", "fast", padding)
    gs = F.grid_sample(u, grid, mode="bilinear", padding_mode=padding, align_corners=False)
    torch.testing.assert_close(ref, gs, rtol=0, atol=1e-12)
    torch.testing.assert_close(fast, gs, rtol=0, atol=0)


@pytest.mark.parametrize("seed", range(3))
def test_reference_forward_is_the_papers_kernel_sum(seed):
    u, grid = _random_case(seed, h=5, w=6)
    torch.testing.assert_close(S.sample(u, grid, "bilinear", "reference"), paper_sum(u, grid, "bilinear"),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(S.sample(u, grid, "nearest", "reference"), paper_sum(u, grid, "nearest"),
                               rtol=0, atol=0)


@pytest.mark.parametrize("seed", range(3))
def test_bilinear_gradients_agree_with_grid_sample_off_the_kinks(seed):
    u, grid = _random_case(seed)
    w = torch.randn(2, 3, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(99))
    grads = []
    for backend in ("reference", "fast"):
        ur, gr = u.clone().requires_grad_(), grid.clone().requires_grad_()
        (S.sample(ur, gr, "bilinear", backend) * w).sum().backward()
        grads.append((ur.grad, gr.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=1e-12)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=0, atol=1e-10)


def test_gradcheck_reference_bilinear_wrt_input_and_grid():
    u, grid = _random_case(7, h=6, w=5, ho=4, wo=3)
    u.requires_grad_()
    grid.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: S.sample(a, b, "bilinear", "reference"), (u, grid))
    assert torch.autograd.gradcheck(lambda a, b: S.sample(a, b, "bilinear", "reference", "border"),
                                    (u, grid.detach().clamp(-0.7, 0.7).requires_grad_()))


def test_subgradient_at_integer_coordinates_is_the_papers_choice():
    # Pixel centres of a power-of-two image are exact in binary: sample exactly on them.
    h, w = 4, 8
    u = torch.randn(1, 2, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    grid = torch.stack([(2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1], -1).unsqueeze(0)
    x, y = to_pixel(grid, h, w)
    assert torch.equal(x, xs.unsqueeze(0)) and torch.equal(y, ys.unsqueeze(0))
    grad_out = torch.randn(1, 2, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    g = grid.clone().requires_grad_()
    (S.sample(u, g, "bilinear", "reference") * grad_out).sum().backward()
    expected_x = paper_grad_x(u, grid, grad_out) * (w / 2)  # chain rule into normalised units
    torch.testing.assert_close(g.grad[..., 0], expected_x, rtol=0, atol=1e-12)
    # …which is +U (g = +1 for m = x, 0 for m = x ± 1): ∂V/∂x = U at that pixel.
    torch.testing.assert_close(g.grad[..., 0], (u * grad_out).sum(1) * (w / 2), rtol=0, atol=1e-12)


def test_gradient_wrt_coordinates_matches_paper_formula_at_random_points():
    u, grid = _random_case(11, h=5, w=6)
    grad_out = torch.randn(2, 3, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    g = grid.clone().requires_grad_()
    (S.sample(u, g, "bilinear", "reference") * grad_out).sum().backward()
    torch.testing.assert_close(g.grad[..., 0], paper_grad_x(u, grid, grad_out) * (6 / 2), rtol=0, atol=1e-12)


def test_nearest_agrees_with_grid_sample_away_from_ties():
    u, grid = _random_case(5, ho=20, wo=20)
    x, y = to_pixel(grid, 7, 9)
    # keep points at least 1e-3 px away from a half-pixel tie, where the rounding rules differ
    far = ((x - torch.floor(x) - 0.5).abs() > 1e-3) & ((y - torch.floor(y) - 0.5).abs() > 1e-3)
    ref = S.sample(u, grid, "nearest", "reference")
    gs = F.grid_sample(u, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    mask = far.unsqueeze(1).expand_as(ref)
    assert mask.float().mean() > 0.9
    torch.testing.assert_close(ref[mask], gs[mask], rtol=0, atol=0)


def test_nearest_rounds_half_up_like_the_paper():
    u = torch.arange(4, dtype=torch.float64).view(1, 1, 1, 4)
    # pixel x = 1.5 exactly: ⌊1.5 + 0.5⌋ = 2
    xn = (2 * 1.5 + 1) / 4 - 1
    grid = torch.tensor([[[[xn, 0.0]]]], dtype=torch.float64)
    assert S.sample(u, grid, "nearest", "reference").item() == 2.0


@pytest.mark.parametrize("backend", ["reference", "fast"])
def test_nearest_kernel_gives_zero_gradient_to_the_grid(backend):
    u, grid = _random_case(8)
    g = grid.clone().requires_grad_()
    S.sample(u, g, "nearest", backend).square().sum().backward()
    assert g.grad is not None and torch.count_nonzero(g.grad) == 0


def test_nearest_gradient_wrt_input_counts_reads():
    u = torch.zeros(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    grid = torch.zeros(1, 2, 2, 2, dtype=torch.float64)  # every output reads the centre pixel
    S.sample(u, grid, "nearest", "reference").sum().backward()
    expected = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    expected[0, 0, 1, 1] = 4
    torch.testing.assert_close(u.grad, expected)


def test_zero_padding_outside_the_image():
    u = torch.ones(1, 1, 4, 4)
    grid = torch.full((1, 2, 2, 2), 3.0)
    for backend in ("reference", "fast"):
        assert S.sample(u, grid, backend=backend).abs().max() == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sampler_runs_in_float32_and_float64(dtype):
    u, grid = _random_case(1, dtype=dtype)
    for backend in ("reference", "fast"):
        for mode in ("bilinear", "nearest"):
            assert S.sample(u, grid, mode, backend).dtype == dtype


def test_bad_arguments_give_clear_errors():
    u, grid = _random_case(0)
    with pytest.raises(ValueError, match="mode"):
        S.sample(u, grid, mode="bicubic")
    with pytest.raises(ValueError, match="backend"):
        S.sample(u, grid, backend="magic")
    with pytest.raises(ValueError, match="batch"):
        S.sample(u[:1], grid)
    with pytest.raises(ValueError, match="dtype"):
        S.sample(u.float(), grid)


@CUDA
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_sampler_on_cuda_matches_cpu(mode):
    u, grid = _random_case(2, dtype=torch.float32)
    for backend in ("reference", "fast"):
        cpu = S.sample(u, grid, mode, backend)
        gpu = S.sample(u.cuda(), grid.cuda(), mode, backend).cpu()
        torch.testing.assert_close(gpu, cpu, rtol=1e-5, atol=1e-5)
