"""stn_core.grad_smoothing: the paper's bilinear crops, with the boxes' gradient taken on a blurred image."""

from __future__ import annotations

import pytest
import torch

from cub_util import lively_cub_model
from stn_core.grad_smoothing import gaussian_blur, gaussian_kernel1d, sample_smoothed_grad
from stn_core.models.cub import build_cub_model
from stn_core.sampling import sample
from stn_core.transforms import attention_grid

torch.set_num_threads(1)


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    u = torch.rand(2, 3, 40, 48, dtype=torch.float64)
    params = torch.tensor([[0.5, 0.1, -0.2], [0.4, -0.3, 0.2], [0.6, 0.05, 0.0], [0.5, 0.2, 0.25]],
                          dtype=torch.float64, requires_grad=True)
    return u, params


def test_the_kernel_is_a_normalised_gaussian_of_radius_three_sigma():
    k = gaussian_kernel1d(2.0, torch.float64)
    assert k.numel() == 13 and torch.isclose(k.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(k, k.flip(0)) and k.argmax() == 6
    with pytest.raises(ValueError):
        gaussian_kernel1d(0.0)


def test_blur_keeps_a_constant_image_and_the_mean_of_a_periodic_pattern():
    c = torch.full((1, 2, 20, 30), 0.7, dtype=torch.float64)
    assert torch.allclose(gaussian_blur(c, 3.0), c)
    x = torch.arange(64, dtype=torch.float64).remainder(2).view(1, 1, 1, 64).expand(1, 1, 64, 64)  # stripes 0/1
    centre = gaussian_blur(x, 4.0)[..., 16:48, 16:48]
    assert (centre - 0.5).abs().max() < 1e-3  # σ = 4 px flattens a 2-px period to its mean
    assert gaussian_blur(torch.rand(1, 1, 5, 5), 10.0).shape == (1, 1, 5, 5)  # kernel wider than the image
    with pytest.raises(ValueError):
        gaussian_blur(torch.rand(3, 5, 5), 1.0)


def test_forward_is_the_papers_bilinear_sample_and_sigma_zero_changes_nothing():
    u, params = _setup()
    grid = attention_grid(params, (12, 12))
    ref = sample(u.repeat_interleave(2, 0), grid)
    assert torch.equal(sample_smoothed_grad(u, grid, 3.0, repeat=2), ref)
    uu = u.clone().requires_grad_(True)
    grid = lambda: attention_grid(params, (12, 12))  # noqa: E731  (a fresh graph for each gradient)
    g0 = torch.autograd.grad(sample_smoothed_grad(uu, grid(), 0.0, repeat=2).sum(), (params, uu))
    g1 = torch.autograd.grad(sample(uu.repeat_interleave(2, 0), grid()).sum(), (params, uu))
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))
    with pytest.raises(ValueError, match="grid batch"):
        sample_smoothed_grad(u, grid(), 1.0, repeat=3)


def test_the_boxes_gradient_is_that_of_sampling_the_blurred_image():
    u, params = _setup(1)
    w = torch.randn(4, 3, 12, 12, dtype=torch.float64)  # a fixed upstream gradient ∂L/∂V
    grid = lambda: attention_grid(params, (12, 12))  # noqa: E731  (a fresh graph for each gradient)
    (g_smooth,) = torch.autograd.grad((sample_smoothed_grad(u, grid(), 2.5, repeat=2) * w).sum(), params)
    (g_blur,) = torch.autograd.grad((sample(gaussian_blur(u, 2.5).repeat_interleave(2, 0), grid()) * w).sum(),
                                    params)
    (g_paper,) = torch.autograd.grad((sample(u.repeat_interleave(2, 0), grid()) * w).sum(), params)
    assert torch.allclose(g_smooth, g_blur, atol=1e-12)
    assert not torch.allclose(g_smooth, g_paper, atol=1e-3)  # it is a different signal
    uu = u.clone().requires_grad_(True)
    out = sample_smoothed_grad(uu, attention_grid(params.detach(), (12, 12)), 2.5, repeat=2)
    assert not out.requires_grad  # the image gets no gradient from the smoothed path


def test_a_cub_model_with_grad_blur_predicts_the_same_and_trains_its_boxes_on_the_smoothed_signal():
    torch.manual_seed(0)
    m = build_cub_model("cub-2st", [1, 12, 14], input_size=64, crop_size=32, backbone_weights=None)
    with torch.no_grad():
        m.loc[-1].weight.normal_(0.0, 0.05)  # boxes that depend on the image, so the loc net gets a gradient
    x, y = torch.rand(3, 3, 64, 64), torch.tensor([0, 2, 1])
    m.eval()
    with torch.no_grad():
        plain = m(x)
        m.grad_blur = 4.0
        assert torch.equal(m(x), plain)  # inference does not depend on the option

    def loc_grad(sigma: float) -> torch.Tensor:
        m.grad_blur = sigma
        m.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        return m.loc[-1].weight.grad.clone()

    g0, g4 = loc_grad(0.0), loc_grad(4.0)
    assert g0.abs().sum() > 0 and g4.abs().sum() > 0 and not torch.allclose(g0, g4, rtol=1e-2, atol=0)


# --------------------------------------------------------------------------- boxes trained on the coarse slope
def test_spsa_is_the_loss_difference_over_opposite_shifts_of_all_boxes_times_the_drawn_signs():
    from stn_core.train.box_spsa import spsa_box_grad

    torch.manual_seed(0)
    m = lively_cub_model()
    x, y = torch.rand(3, 3, 64, 64), torch.tensor([0, 2, 1])
    with torch.no_grad():
        params = m.eval().attention_params(x)
    m.train()  # the estimate reads the loss without dropout, whatever the mode, and restores it
    g_hat = spsa_box_grad(m, x, y, params, 0.1, torch.Generator().manual_seed(5))
    assert m.training and g_hat.shape == (3, 2, 2) and g_hat.abs().max() > 0
    sign = torch.randint(0, 2, (3, 2, 2), generator=torch.Generator().manual_seed(5)).float() * 2 - 1
    m.eval()
    with torch.no_grad():
        loss = []
        for s in (1.0, -1.0):
            q = params.clone()
            q[..., 1:] += s * 0.1 * sign  # every box of an image moved at once, x and y
            loss.append(torch.nn.functional.cross_entropy(m.logits_at(x, q), y, reduction="none"))
    assert torch.allclose(g_hat, ((loss[0] - loss[1]) / 0.2).view(-1, 1, 1) * sign, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        spsa_box_grad(m, x, y, params, 0.0)


def test_an_spsa_step_trains_the_localisation_net_on_the_estimate_and_the_rest_on_the_loss():
    from stn_core.train.box_spsa import spsa_train_step

    torch.manual_seed(0)
    m = lively_cub_model()
    x, y = torch.rand(4, 3, 64, 64), torch.tensor([0, 2, 1, 1])
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    logits, loss = spsa_train_step(m, opt, x, y, 0.1, generator=torch.Generator().manual_seed(1))
    assert logits.shape == (4, 3) and torch.isfinite(loss) and m.training
    moved = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert "loc.6.bias" in moved and "classifier.1.weight" in moved  # the boxes' start and the classifier
    with pytest.raises(ValueError, match="no attention boxes"):
        spsa_train_step(build_cub_model("cub-baseline", [1, 2], input_size=64, backbone_weights=None), opt, x,
                        torch.tensor([0, 1, 0, 1]), 0.1)
