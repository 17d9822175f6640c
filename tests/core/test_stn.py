"""SpatialTransformer module: identity at initialisation, gradient reaches θ, bookkeeping."""

import pytest
import torch
from torch import nn

import stn_core as S

CUDA = pytest.mark.cuda  # skipped without a GPU (tests/conftest.py)


def _x(n=3, c=1, h=28, w=28):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kind", S.TRANSFORM_KINDS)
def test_spatial_transformer_is_identity_at_init(kind):
    st = S.SpatialTransformer(kind, (28, 28), in_channels=1, in_size=(28, 28))
    x = _x()
    torch.testing.assert_close(st(x), x, rtol=0, atol=1e-5)
    w = st.warp(x)
    torch.testing.assert_close(w.output, st(x), rtol=0, atol=0)  # forward is warp(x).output
    assert w.grid.shape == (3, 28, 28, 2)
    expected = {"affine": (3, 2, 3), "attention": (3, 3), "projective": (3, 3, 3), "tps": (3, 16, 2)}[kind]
    assert w.theta.shape == expected


@pytest.mark.parametrize("kind", S.TRANSFORM_KINDS)
def test_theta_receives_gradient_through_the_sampler(kind):
    st = S.SpatialTransformer(kind, (20, 20), in_channels=1, in_size=(28, 28))
    x = _x()
    # a target that needs a shift: the loss' gradient must reach the regression layer
    loss = (st(x) - x[..., 4:24, 4:24]).square().mean()
    loss.backward()
    assert st.regression.bias.grad is not None and st.regression.bias.grad.abs().sum() > 0
    assert st.regression.weight.grad.abs().sum() > 0


def test_nearest_transformer_gets_no_gradient_to_theta():
    st = S.SpatialTransformer("affine", (20, 20), in_channels=1, in_size=(28, 28), mode="nearest")
    x = _x()
    (st(x) - x[..., 4:24, 4:24]).square().mean().backward()
    assert st.regression.bias.grad.abs().sum() == 0


def test_reference_backend_trains_like_fast_backend():
    torch.manual_seed(0)
    a = S.SpatialTransformer("affine", (16, 16), in_channels=1, in_size=(28, 28))
    b = S.SpatialTransformer("affine", (16, 16), in_channels=1, in_size=(28, 28), backend="reference")
    b.load_state_dict(a.state_dict())
    x = _x()
    ga, gb = [torch.autograd.grad(m(x).square().mean(), m.regression.bias)[0] for m in (a, b)]
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)


def test_custom_localisation_and_initial_params():
    loc = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 8), nn.ReLU())
    st = S.SpatialTransformer("attention", (14, 14), localisation=loc, init_params=torch.tensor([0.5, 0.5, 0.5]))
    x = _x()
    v, theta, _grid = st.warp(x)
    torch.testing.assert_close(theta, torch.tensor([[0.5, 0.5, 0.5]]).expand(3, 3))
    torch.testing.assert_close(v, S.sample(x, S.attention_grid(theta, (14, 14))))


def test_fc_localisation_for_st_fcn():
    st = S.SpatialTransformer("affine", (28, 28), localisation=S.fc_localisation(1, (28, 28)))
    x = _x()
    torch.testing.assert_close(st(x), x, rtol=0, atol=1e-5)


def test_missing_localisation_information_is_a_clear_error():
    with pytest.raises(ValueError, match="in_channels and in_size"):
        S.SpatialTransformer("affine", (28, 28))
    with pytest.raises(ValueError, match="init_params"):
        S.SpatialTransformer("affine", (28, 28), in_channels=1, in_size=(28, 28), init_params=torch.zeros(3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spatial_transformer_in_float32_and_float64(dtype):
    st = S.SpatialTransformer("tps", (28, 28), in_channels=1, in_size=(28, 28)).to(dtype)
    x = _x().to(dtype)
    assert st(x).dtype == dtype


@CUDA
@pytest.mark.parametrize("kind", S.TRANSFORM_KINDS)
def test_spatial_transformer_on_cuda(kind):
    st = S.SpatialTransformer(kind, (28, 28), in_channels=1, in_size=(28, 28)).cuda()
    x = _x().cuda()
    torch.testing.assert_close(st(x), x, rtol=0, atol=1e-5)
