"""Mixed precision: the models, grid generators, sampler and deformable convolution under
``torch.autocast`` (CPU bfloat16 here; the CUDA float16/bfloat16 tests skip without a GPU).

The decision under test (stn_core/stn.py, transforms.py, sampling.py, dcn.py docstrings): the
localisation net may run in low precision; grid generation (the TPS solve included) and
sampling run in float32 with autocast switched off locally, θ upcast to U's dtype; the
sampler's output has U's dtype; the deformable convolution runs in float32.

Tolerances. bfloat16 keeps 8 significant bits: unit roundoff 2^-9 ≈ 2e-3 per rounding.
* Loss: relative difference < 1e-2 (≈ 5 roundoffs). Measured over 20 seeds per model (batch
  16, smooth images): ≤ 6.8e-5 for the ST models, ≤ 3.3e-5 for the DCN.
* Gradients: a bfloat16 localisation net gives a bfloat16 θ, off by up to 2^-9 relative, which
  moves the samples of a 28-px output by up to ~0.03 px. The bilinear kernel's derivative
  w.r.t. the coordinates is piecewise constant and jumps where a sample crosses a pixel
  boundary, so a few % of the samples switch to another pair of neighbours and the gradient
  changes by a few % — in a pure float32 model too: rounding only θ to bfloat16 there gives
  the same spread. Measured cosine similarity to float32, 20 seeds (min / median):
  ∂L/∂θ 0.984 / ≥ 0.994 per model; localisation-parameter gradients 0.938 / ≥ 0.993
  (projective has the lowest minimum; the θ-rounding-only control 0.957). The tests take 4
  fixed seeds (measured there: ∂L/∂θ min 0.987, medians 0.990–0.995; localisation min 0.975,
  medians 0.993–0.997) and require median > 0.98, min > 0.97 for ∂L/∂θ and min > 0.9 for
  the localisation gradients. At 28 px these model-level numbers cannot tell a float32 grid
  from a bfloat16 one (rounding the grid to bfloat16 moves them about as much as θ's own
  rounding does: measured medians 0.984–0.996); that the grid and the sampler run in float32
  is checked exactly by test_grid_and_sampler_run_in_float32_under_autocast.
  The DCN runs its deformable layers in float32 (only the final linear layer in bfloat16):
  cosine 1.0000 over 20 seeds; required > 0.999.
* Where the comparison is of the grid generators and the sampler alone, given the same
  (bfloat16-representable) θ, the results under autocast must equal float32's to float32
  rounding (they are computed in float32): rtol 1e-6.
"""

from __future__ import annotations

import statistics

import pytest
import torch
import torch.nn.functional as F

import stn_core as S

CUDA = pytest.mark.cuda  # skipped without a GPU (tests/conftest.py): CUDA autocast is untested on a CPU machine
MODEL_CASES = [("st-cnn", "affine"), ("st-cnn", "tps"), ("st-cnn", "projective"), ("st-fcn", "affine"), ("dcn", None)]
SEEDS = range(4)


def _cpu_autocast(enabled: bool = True, dtype: torch.dtype = torch.bfloat16):
    return torch.autocast("cpu", dtype=dtype, enabled=enabled)


def _smooth_images(seed: int, n: int = 16, side: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian blobs (σ = 3 px) per image, max 1, and random labels."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                            indexing="ij")
    c = torch.rand(n, 3, 2, generator=g) * (side - 10) + 5
    amp = torch.rand(n, 3, 1, 1, generator=g) + 0.5
    d2 = (xx - c[..., 0, None, None]) ** 2 + (yy - c[..., 1, None, None]) ** 2
    img = (amp * torch.exp(-d2 / 18.0)).sum(1, keepdim=True)
    return img / img.amax((2, 3), keepdim=True), torch.randint(0, 10, (n,), generator=g)


def _model(name: str, transform: str | None, seed: int) -> S.models.DistortedMNISTNet:
    """A small model whose warp is not the identity: the zero-initialised regression layer (ST)
    or offset predictors (DCN) get random weights, so gradients reach the localisation net."""
    torch.manual_seed(seed)
    m = S.build_model(name, transform, input_size=28)
    with torch.no_grad():
        if m.transformer is not None:
            m.transformer.regression.weight.normal_(0, 0.05)
        else:
            for layer in m.deform_layers:
                layer.offset_conv.weight.normal_(0, 0.05)
    return m


def _loc_params(m) -> list[torch.Tensor]:
    if m.transformer is not None:
        return list(m.transformer.localisation.parameters()) + list(m.transformer.regression.parameters())
    return m.offset_parameters()


def _loss_and_grads(m, x, y, autocast: bool):
    """Loss, flat localisation-parameter gradient and (ST models) ∂L/∂θ ``(N·P,)``."""
    m.zero_grad()
    store = {}
    hook = None
    if m.transformer is not None:
        def keep(_mod, _inp, out):
            out.retain_grad()
            store["theta"] = out
        hook = m.transformer.regression.register_forward_hook(keep)
    with _cpu_autocast(autocast):
        loss = F.cross_entropy(m(x).float(), y)
    loss.backward()
    if hook is not None:
        hook.remove()
    grads = torch.cat([p.grad.reshape(-1) for p in _loc_params(m)])
    dtheta = store["theta"].grad.float().reshape(-1) if store else None
    return loss.item(), grads, dtheta


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.double(), b.double(), 0).item()


@pytest.mark.parametrize("name,transform", MODEL_CASES)
def test_model_under_bf16_autocast_matches_float32(name, transform):
    rel, cos_loc, cos_theta = [], [], []
    for seed in SEEDS:
        m = _model(name, transform, seed)
        x, y = _smooth_images(100 + seed)
        l32, g32, t32 = _loss_and_grads(m, x, y, autocast=False)
        l16, g16, t16 = _loss_and_grads(m, x, y, autocast=True)
        assert torch.isfinite(g16).all() and g16.dtype == torch.float32
        assert g16.abs().sum() > 0
        rel.append(abs(l16 - l32) / abs(l32))
        cos_loc.append(_cos(g16, g32))
        if t16 is not None:
            assert torch.isfinite(t16).all()
            cos_theta.append(_cos(t16, t32))
    assert max(rel) < 1e-2, rel
    if name == "dcn":
        assert min(cos_loc) > 0.999, cos_loc
        return
    assert statistics.median(cos_loc) > 0.98 and min(cos_loc) > 0.9, cos_loc
    assert statistics.median(cos_theta) > 0.98 and min(cos_theta) > 0.97, cos_theta


@pytest.mark.parametrize("name,transform", MODEL_CASES)
def test_forward_under_autocast_with_channels_last_input(name, transform):
    m = _model(name, transform, 0)
    x, y = _smooth_images(7, n=4)
    x = x.to(memory_format=torch.channels_last)
    with _cpu_autocast():
        views = m.views(x)
    logits = views.logits
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    F.cross_entropy(logits.float(), y).backward()
    if m.transformer is not None:
        assert views.grid.dtype == torch.float32  # built in float32, not bfloat16


@pytest.mark.parametrize("kind", S.TRANSFORM_KINDS)
@pytest.mark.parametrize("backend", ["fast", "reference"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_grid_and_sampler_run_in_float32_under_autocast(kind, backend, dtype):
    # θ as a low-precision localisation net would give it; the same values in float32 are the reference
    g = torch.Generator().manual_seed(3)
    params = S.identity_params(kind).unsqueeze(0).repeat(2, 1) + 0.1 * torch.randn(2, S.num_params(kind), generator=g)
    params = params.to(dtype).float()  # representable in `dtype`
    u = torch.rand(2, 3, 20, 24, generator=g)

    def run(p, autocast):
        p = p.detach().requires_grad_()
        with _cpu_autocast(autocast, dtype):
            grid = S.make_grid(kind, p, (16, 18))
            v = S.sample(u, grid, backend=backend)
        # backward outside autocast, as PyTorch recommends (inside, the backward's matrix
        # products would follow autocast into low precision)
        (v * torch.linspace(-1, 1, v.numel()).view_as(v)).sum().backward()
        return grid, v, p.grad

    grid32, v32, g32 = run(params, False)
    grid_ac, v_ac, g_ac = run(params.to(dtype), True)
    assert grid_ac.dtype == torch.float32 and v_ac.dtype == torch.float32
    torch.testing.assert_close(grid_ac, grid32, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(v_ac, v32, rtol=1e-6, atol=1e-6)
    assert g_ac.dtype == dtype  # autograd returns the gradient in the leaf's dtype
    torch.testing.assert_close(g_ac.float(), g32.to(dtype).float(), rtol=0, atol=0)


def test_every_grid_generator_gives_float32_under_autocast_and_follows_theta_outside():
    theta = torch.tensor([[[0.9, 0.1, 0.05], [-0.1, 1.1, 0.0]]], dtype=torch.bfloat16)
    h8 = torch.tensor([[1, 0.1, 0, 0, 1, 0, 0.1, -0.1]], dtype=torch.bfloat16)
    att = torch.tensor([[0.8, 0.1, -0.1]], dtype=torch.bfloat16)
    tps = (S.tps_lattice(16) + 0.05).unsqueeze(0).to(torch.bfloat16)
    calls = [lambda: S.affine_grid(theta, (5, 6)), lambda: S.attention_grid(att, (5, 6)),
             lambda: S.projective_grid(h8, (5, 6)), lambda: S.projective_denominator(h8, (5, 6)),
             lambda: S.tps_grid(tps, (5, 6)), lambda: S.tps_coefficients(tps)[0],
             lambda: S.tps_bending_energy(tps)]
    for call in calls:
        with _cpu_autocast():
            assert call().dtype == torch.float32
        assert call().dtype == torch.bfloat16  # outside autocast: θ's dtype, as before


def test_sample_float32_input_with_bf16_grid_under_autocast():
    g = torch.Generator().manual_seed(0)
    u = torch.rand(2, 3, 9, 10, generator=g)
    grid = (2 * torch.rand(2, 7, 8, 2, generator=g) - 1).to(torch.bfloat16)
    for backend in ("fast", "reference"):
        for mode in ("bilinear", "nearest"):
            with _cpu_autocast():
                v = S.sample(u, grid, mode=mode, backend=backend)
            assert v.dtype == torch.float32
            torch.testing.assert_close(v, S.sample(u, grid.float(), mode=mode, backend=backend), rtol=0, atol=0)
    # a bfloat16 U under autocast: sampled in float32, V in U's dtype
    with _cpu_autocast():
        v = S.sample(u.to(torch.bfloat16), grid.float())
    assert v.dtype == torch.bfloat16
    # outside autocast mixed dtypes stay an error
    with pytest.raises(ValueError, match="dtype"):
        S.sample(u, grid)


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_low_precision_u_keeps_its_layout_and_gets_its_gradient_in_it(layout):
    """A bfloat16 U under autocast (a feature map in a channels_last conv stack) is sampled in float32;
    V and ∂L/∂U come back in U's dtype and layout, with the values of the plain float32 path cast."""
    g = torch.Generator().manual_seed(1)
    u0 = torch.rand(2, 4, 9, 10, generator=g).to(torch.bfloat16).contiguous(memory_format=layout)
    grid = 2.2 * torch.rand(2, 7, 8, 2, generator=g) - 1.1
    w = torch.linspace(-1, 1, 2 * 4 * 7 * 8).view(2, 4, 7, 8)
    u = u0.clone().requires_grad_()
    with _cpu_autocast():
        v = S.sample(u, grid)
    (v.float() * w).sum().backward()
    u32 = u0.float().contiguous().requires_grad_()
    v32 = S.sample(u32, grid)
    (v32.to(torch.bfloat16).float() * w).sum().backward()
    assert v.dtype == torch.bfloat16 and u.grad.dtype == torch.bfloat16
    assert v.is_contiguous(memory_format=layout) and u.grad.is_contiguous(memory_format=layout)
    torch.testing.assert_close(v.float(), v32.to(torch.bfloat16).float(), rtol=0, atol=0)
    torch.testing.assert_close(u.grad.float(), u32.grad.to(torch.bfloat16).float(), rtol=0, atol=0)


def test_memory_format_of_names_a_layout_only_where_it_is_unambiguous():
    x = torch.zeros(2, 3, 4, 5)
    assert S.sampling.memory_format_of(x) == torch.contiguous_format
    assert S.sampling.memory_format_of(x.contiguous(memory_format=torch.channels_last)) == torch.channels_last
    one = torch.zeros(2, 1, 4, 5).contiguous(memory_format=torch.channels_last)   # both layouts at once
    assert S.sampling.memory_format_of(one) == torch.contiguous_format
    assert S.sampling.memory_format_of(torch.zeros(3, 4)) == torch.contiguous_format


def test_spatial_transformer_dtypes():
    st = S.SpatialTransformer("tps", (28, 28), in_channels=1, in_size=(28, 28))
    x, _ = _smooth_images(1, n=2)
    with _cpu_autocast():
        v, _, grid = st.warp(x)
    assert v.dtype == torch.float32 and grid.dtype == torch.float32
    with _cpu_autocast():  # a bfloat16 U under autocast: float32 grid, V in U's dtype
        v, _, grid = st.warp(x.to(torch.bfloat16))
    assert v.dtype == torch.bfloat16 and grid.dtype == torch.float32
    st16 = st.to(torch.bfloat16)  # outside autocast the grid follows U, as before
    v, _, grid = st16.warp(x.to(torch.bfloat16))
    assert v.dtype == torch.bfloat16 and grid.dtype == torch.bfloat16


@pytest.mark.parametrize("backend", ["sampled", "torchvision"])
@pytest.mark.parametrize("modulated", [False, True])
def test_deform_conv_under_bf16_autocast_is_float32(backend, modulated):
    from stn_core.dcn import DeformConv2d

    torch.manual_seed(0)
    layer = DeformConv2d(3, 4, 3, padding=1, modulated=modulated, backend=backend)
    torch.nn.init.normal_(layer.offset_conv.weight, std=0.1)
    x = torch.rand(2, 3, 8, 9)
    y32 = layer(x)
    with _cpu_autocast():
        y, offset, _ = layer.deform(x.to(torch.bfloat16))  # e.g. the bfloat16 output of an earlier layer
    assert y.dtype == torch.float32 and offset.dtype == torch.float32
    torch.testing.assert_close(y, layer(x.to(torch.bfloat16).float()), rtol=0, atol=0)
    assert (y - y32).abs().max() < 1e-2  # only the input's bfloat16 rounding differs (measured 1.2e-3)
    y.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


# ------------------------------------------------------------------------------------- CUDA

@CUDA
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name,transform", MODEL_CASES)
def test_model_under_cuda_autocast(name, transform, dtype):
    m = _model(name, transform, 0).cuda()
    x, y = _smooth_images(100)
    x, y = x.cuda(), y.cuda()
    # a fixed loss scale (what GradScaler does) keeps float16's small backward values out of
    # its subnormal range; the cosine does not see the scale
    scale = 2.0 ** 10
    m.zero_grad()
    loss32 = F.cross_entropy(m(x), y)
    (scale * loss32).backward()
    g32 = torch.cat([p.grad.reshape(-1) for p in _loc_params(m)])
    m.zero_grad()
    with torch.autocast("cuda", dtype=dtype):
        views = m.views(x.to(memory_format=torch.channels_last))
        loss = F.cross_entropy(views.logits.float(), y)
    (scale * loss).backward()
    g = torch.cat([p.grad.reshape(-1) for p in _loc_params(m)])
    assert torch.isfinite(g).all()
    assert abs(loss.item() - loss32.item()) / loss32.item() < 1e-2
    # one seed, not four: the CPU test's minimum, with float16's 11 bits at least as good
    assert _cos(g, g32) > 0.9
    if m.transformer is not None:
        assert views.grid.dtype == torch.float32


@CUDA
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sample_and_grids_under_cuda_autocast(dtype):
    u = torch.rand(2, 3, 9, 10, device="cuda")
    grid = (2 * torch.rand(2, 7, 8, 2, device="cuda") - 1).to(dtype)
    for backend in ("fast", "reference"):
        with torch.autocast("cuda", dtype=dtype):
            v = S.sample(u, grid, backend=backend)
        assert v.dtype == torch.float32
        torch.testing.assert_close(v, S.sample(u, grid.float(), backend=backend))
    for kind in S.TRANSFORM_KINDS:
        p = (S.identity_params(kind).unsqueeze(0) + 0.05).cuda().to(dtype)
        with torch.autocast("cuda", dtype=dtype):
            assert S.make_grid(kind, p, (6, 7)).dtype == torch.float32
