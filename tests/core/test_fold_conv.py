"""FoldGradConv2d: nn.Conv2d's forward and gradients, with the input gradient as matmul + col2im on a CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stn_core.fold_conv import FoldGradConv2d, conv2d_input_grad
from stn_core.models import build_model


def _pair(c_in: int, pad: int, seed: int = 0) -> tuple[nn.Conv2d, FoldGradConv2d]:
    torch.manual_seed(seed)
    ref = nn.Conv2d(c_in, 12, 9, padding=pad)
    new = FoldGradConv2d(c_in, 12, 9, padding=pad)
    new.load_state_dict(ref.state_dict())
    return ref, new


def _run(conv: nn.Module, x: torch.Tensor, autocast: bool) -> tuple[torch.Tensor, ...]:
    conv.zero_grad()
    xx = x.clone().requires_grad_(True)
    with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        y = conv(xx)
        loss = (y.float() * torch.linspace(-1, 1, y.numel()).view_as(y)).sum()
    loss.backward()
    return y.float(), xx.grad, conv.weight.grad, conv.bias.grad


@pytest.mark.parametrize("c_in,pad,channels_last", [(1, 0, False), (1, 4, True), (2, 2, False), (2, 0, True)])
def test_fp32_gradients_equal_conv2d(c_in, pad, channels_last):
    ref, new = _pair(c_in, pad)
    x = torch.rand(3, c_in, 21, 23)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for a, b in zip(_run(ref, x, False), _run(new, x, False)):
        # same sums in another order: float32 rounding of ~C·81·12 terms of size ≤ 1
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)


def test_bf16_autocast_forward_and_weight_grads_are_conv2ds_and_input_grad_within_rounding():
    ref, new = _pair(1, 0)
    x = torch.rand(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    (y0, gx0, gw0, gb0), (y1, gx1, gw1, gb1) = _run(ref, x, True), _run(new, x, True)
    assert torch.equal(y0, y1)  # same oneDNN forward kernel on the same bf16-cast operands
    assert torch.equal(gw0, gw1) and torch.equal(gb0, gb1)  # same weight-gradient kernel
    assert gx1.dtype == gx0.dtype == torch.float32
    # both are rounded to bfloat16 (8 significant bits): each within 2^-8 relative of the exact sum
    assert (gx0 - gx1).abs().max() <= 2 ** -7 * gx0.abs().max()


def test_gradcheck_float64():
    conv = FoldGradConv2d(2, 3, 3, padding=1).double()
    x = torch.rand(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_input_grad_matches_conv_transpose():
    torch.manual_seed(1)
    g, w = torch.randn(2, 5, 8, 8), torch.randn(5, 2, 3, 3)
    got = conv2d_input_grad(g, w, (8, 8), (1, 1))
    assert torch.allclose(got, torch.nn.functional.conv_transpose2d(g, w, padding=1), atol=1e-5)


@pytest.mark.parametrize("c,k,pad", [(1, (9, 9), (0, 0)), (3, (3, 5), (1, 2)), (2, (4, 1), (2, 0))])
def test_input_grad_is_conv_transpose_for_non_square_kernels_channels_and_padding(c, k, pad):
    """col2im adds each tap's plane at its (row, column) offset: in float64 the result is conv_transpose2d's
    to rounding, for non-square kernels (rows and columns not swapped), several input channels and padding."""
    torch.manual_seed(2)
    h, w = 11, 13
    ho, wo = h + 2 * pad[0] - k[0] + 1, w + 2 * pad[1] - k[1] + 1
    g, wt = torch.randn(3, 6, ho, wo, dtype=torch.float64), torch.randn(6, c, *k, dtype=torch.float64)
    got = conv2d_input_grad(g, wt, (h, w), pad)
    assert got.shape == (3, c, h, w)
    assert torch.allclose(got, torch.nn.functional.conv_transpose2d(g, wt, padding=pad), rtol=0, atol=1e-12)


def test_plain_path_where_no_input_gradient_or_unsupported():
    conv = FoldGradConv2d(1, 4, 3)
    x = torch.rand(1, 1, 8, 8)
    assert "FoldGrad" not in type(conv(x).grad_fn).__name__  # data input: the CNN's case
    assert "FoldGrad" in type(conv(x.requires_grad_(True)).grad_fn).__name__
    strided = FoldGradConv2d(1, 4, 3, stride=2)
    assert "FoldGrad" not in type(strided(x).grad_fn).__name__
    with torch.no_grad():
        assert conv(x).grad_fn is None


def test_cnn_conv1_is_a_fold_conv_with_conv2d_state_dict_keys():
    m = build_model("st-cnn", "affine", input_size=28)
    assert isinstance(m.classifier[0], FoldGradConv2d)
    assert {k for k in m.state_dict() if k.startswith("classifier.0.")} == {"classifier.0.weight", "classifier.0.bias"}
