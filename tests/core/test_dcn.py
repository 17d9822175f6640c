"""Deformable convolution (issue 7): the layer, the dcn model, checkpoints and the CLI."""

import json

import pytest
import torch
import torch.nn.functional as F

from stn_core.train import mnist as T
from stn_core.checkpoints import load_model, save_checkpoint
from stn_core.dcn import DeformConv2d, sampling_positions
from stn_core.models.mnist import (ALL_MODEL_NAMES, MODELS, DeformableCNN, _classifier_count, build_model,
                             count_params)


def _x(n, c, side, seed=0):
    return torch.rand(n, c, side, side, generator=torch.Generator().manual_seed(seed))


def _conv_twin(layer: DeformConv2d) -> torch.nn.Conv2d:
    conv = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, padding=layer.padding)
    with torch.no_grad():
        conv.weight.copy_(layer.weight)
        conv.bias.copy_(layer.bias)
    return conv


@pytest.mark.parametrize("modulated", [False, True])
@pytest.mark.parametrize("k,pad,cin", [(9, 0, 1), (7, 0, 5), (9, 4, 1), (3, 1, 4)])
def test_at_init_it_is_the_plain_convolution(k, pad, cin, modulated):
    torch.manual_seed(0)
    layer = DeformConv2d(cin, 6, k, padding=pad, modulated=modulated)
    x = _x(2, cin, 20)
    y = layer(x)
    torch.testing.assert_close(y, _conv_twin(layer)(x), atol=1e-5, rtol=1e-5)
    ho = 20 + 2 * pad - k + 1
    y2, offset, mask = layer.deform(x)
    torch.testing.assert_close(y2, y, rtol=0, atol=0)  # forward is deform(x).output
    assert offset.shape == (2, 2 * k * k, ho, ho)
    assert torch.count_nonzero(offset) == 0
    if modulated:
        assert mask.shape == (2, k * k, ho, ho)
        torch.testing.assert_close(mask, torch.ones_like(mask))  # 2·sigmoid(0) = 1
    else:
        assert mask is None


def _with_uniform_offset(layer: DeformConv2d, dx: float, dy: float) -> DeformConv2d:
    with torch.no_grad():
        layer.offset_conv.bias[0:2 * layer.taps:2] = dy  # channel 2t: y (rows)
        layer.offset_conv.bias[1:2 * layer.taps:2] = dx  # channel 2t + 1: x (columns)
    return layer


def test_a_uniform_offset_shifts_the_sampling():
    torch.manual_seed(1)
    x = _x(2, 3, 16)
    layer = _with_uniform_offset(DeformConv2d(3, 4, 5), dx=1.0, dy=0.0)
    conv = _conv_twin(layer)
    y = layer(x)
    # +1 px in x reads column c+1: the conv of the image moved one pixel to the left
    shifted = torch.zeros_like(x)
    shifted[..., :-1] = x[..., 1:]
    ref = conv(shifted)
    torch.testing.assert_close(y[..., :-1], ref[..., :-1], atol=1e-5, rtol=1e-5)  # away from the right border
    torch.testing.assert_close(y[..., :-1], conv(x)[..., 1:], atol=1e-5, rtol=1e-5)
    # +2 px in y: rows move up by two
    layer = _with_uniform_offset(layer, dx=0.0, dy=2.0)
    torch.testing.assert_close(layer(x)[..., :-2, :], conv(x)[..., 2:, :], atol=1e-5, rtol=1e-5)
    # half a pixel in x: bilinear, the mean of the two neighbouring convolutions
    layer = _with_uniform_offset(layer, dx=0.5, dy=0.0)
    y = layer(x)
    torch.testing.assert_close(y[..., :-1], 0.5 * (conv(x)[..., :-1] + conv(x)[..., 1:]), atol=1e-5, rtol=1e-5)
    # where the taps land, in input pixels
    pos = sampling_positions(layer, layer.deform(x).offset)
    assert pos.shape == (2, 12, 12, 25, 2)
    torch.testing.assert_close(pos[0, 3, 7, 0], torch.tensor([7.5, 3.0]))  # tap (0, 0) of output (row 3, col 7)
    torch.testing.assert_close(pos[0, 3, 7, 24], torch.tensor([11.5, 7.0]))  # tap (4, 4)


def test_modulation_scales_the_taps():
    torch.manual_seed(2)
    layer = DeformConv2d(2, 3, 3, padding=1, modulated=True)
    x = _x(1, 2, 8)
    with torch.no_grad():
        layer.offset_conv.bias[2 * layer.taps:] = -1e4  # mask 2·sigmoid(−∞) = 0: only the bias is left
    y = layer(x)
    torch.testing.assert_close(y, layer.bias.view(1, 3, 1, 1).expand_as(y).detach(), atol=1e-6, rtol=0)


def test_gradient_reaches_the_offset_predictor():
    torch.manual_seed(3)
    for modulated in (False, True):
        m = build_model("dcn", None, 28, modulated=modulated)
        x = _x(8, 1, 28)
        F.cross_entropy(m(x), torch.arange(8)).backward()
        for layer in m.deform_layers:
            assert layer.offset_conv.weight.grad.abs().sum() > 0
            assert layer.offset_conv.bias.grad.abs().sum() > 0
        assert len(m.offset_parameters()) == 4


def test_bad_offset_kernel():
    with pytest.raises(ValueError, match="cannot span"):
        DeformConv2d(1, 1, 7, offset_kernel=5)  # 6 is not divisible by 4
    assert DeformConv2d(1, 1, 7, offset_kernel=None).offset_conv.kernel_size == (7, 7)
    assert DeformConv2d(1, 1, 9).offset_conv.dilation == (4, 4)


@pytest.mark.parametrize("side", [28, 42])
def test_dcn_model_shapes_and_budget(side):
    cnn = count_params(build_model("cnn", None, side))
    for modulated in (False, True):
        m = build_model("dcn", None, side, modulated=modulated)
        assert isinstance(m, DeformableCNN) and m.transformer is None
        assert m.config["modulated"] is modulated and m.config["downsample"] == 1
        n = count_params(m)
        assert abs(n - cnn) <= 0.15 * cnn, (n, cnn)
        assert abs(n - 400_000) < 0.02 * 400_000
        assert _classifier_count("dcn", side, 10, m.config["width"], modulated) == n
        x = _x(3, 1, side)
        assert m(x).shape == (3, 10)
        l1, l2 = m.deform_layers
        k = 3 if modulated else 2
        views = m.views(x)
        torch.testing.assert_close(views.logits, m(x))
        assert views.offsets[0].shape[:2] == (3, 2 * 81) and views.offsets[1].shape[:2] == (3, 2 * 49)
        assert l1.offset_conv.out_channels == k * 81 and l2.offset_conv.out_channels == k * 49
        # at init the dcn is the cnn with the same weights
        cnn_m = build_model("cnn", None, side, width=m.config["width"])
        cnn_m.load_state_dict({k: v for k, v in m.state_dict().items() if "offset_conv" not in k})
        torch.testing.assert_close(m(x), cnn_m(x), atol=1e-5, rtol=1e-5)
        ref = m(x)
        m.use_channels_last()
        torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-5)


def test_registry_and_errors():
    assert "dcn" in ALL_MODEL_NAMES and "dcn" in MODELS
    assert MODELS["dcn"](None, 28).config["name"] == "dcn"
    with pytest.raises(ValueError, match="no spatial transformer"):
        build_model("dcn", "affine", 28)
    with pytest.raises(ValueError, match="dcn only"):
        build_model("cnn", None, 28, modulated=True)


def _perturbed(modulated, side, seed=0):
    torch.manual_seed(seed)
    m = build_model("dcn", None, side, modulated=modulated)
    with torch.no_grad():  # non-zero offsets and masks, so the predictors matter
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return m.eval()


@pytest.mark.parametrize("modulated,side", [(False, 28), (True, 42)])
def test_checkpoint_round_trip(tmp_path, modulated, side):
    m = _perturbed(modulated, side)
    x = _x(4, 1, side, seed=5)
    ref = m(x)
    assert m.views(x).offsets[0].abs().max() > 0
    save_checkpoint(tmp_path / "ck", m, {"task": "mnist-rts" if side == 42 else "mnist-r", "steps": 1})
    meta = json.loads((tmp_path / "ck.json").read_text())
    assert meta["model"] == "dcn" and meta["transform"] is None and meta["arch"]["modulated"] is modulated
    m2, meta2 = load_model(tmp_path / "ck")
    assert isinstance(m2, DeformableCNN) and m2.config["modulated"] is modulated
    assert torch.equal(m2(x), ref)


# --------------------------------------------------------------------------- CLI

def test_cli_trains_a_dcn(data_root, tmp_path):
    out = tmp_path / "mnist_r_dcn"
    common = ["--data-root", str(data_root), "--no-verify", "--threads", "1", "--no-progress", "--task", "mnist-r",
              "--model", "dcn", "--batch", "8", "--lr", "0.01", "--momentum", "0.9", "--test-limit", "40"]
    meta = T.main([*common, "--steps", "20", "--out", str(out)])
    assert meta["final"] and meta["steps"] == 20 and meta["model"] == "dcn" and meta["transform"] is None
    assert meta["train_args"]["modulated"] is False and meta["paper_error"] is None
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["model"] == "dcn" and saved["arch"]["modulated"] is False
    m, _ = load_model(out)
    assert any(layer.offset_conv.weight.abs().sum() > 0 for layer in m.deform_layers)  # offsets learned
    # resuming with the other modulation is refused; --modulated is for dcn only
    with pytest.raises(SystemExit, match="different settings"):
        T.main([*common, "--steps", "20", "--out", str(out), "--modulated", "--resume"])
    with pytest.raises(SystemExit):
        T.parse_args(["--task", "mnist-r", "--model", "cnn", "--modulated", "--out", "x"])
    with pytest.raises(SystemExit):
        T.parse_args(["--task", "mnist-r", "--model", "dcn", "--transform", "tps", "--out", "x"])


# --------------------------------------------------------------------------- sampled (fast CPU) backend

from torchvision.ops import deform_conv2d as tv_deform_conv2d  # noqa: E402

from stn_core.dcn import BACKENDS, deform_conv2d_sampled, set_backend  # noqa: E402


def _case(n, cin, cout, side, k, pad, modulated, seed, integer=False, spread=4.0, dtype=torch.float32):
    """Inputs for both backends: offsets reach outside the map; non-integer positions keep their
    fractional part in [0.1, 0.9] (away from the bilinear kernel's kinks) unless ``integer``."""
    g = torch.Generator().manual_seed(seed)
    ho = side + 2 * pad - k + 1
    x = torch.rand(n, cin, side, side, generator=g, dtype=dtype)
    r = (torch.rand(n, 2 * k * k, ho, ho, generator=g, dtype=dtype) * 2 - 1) * spread
    off = r.round() if integer else r.floor() + 0.1 + 0.8 * (r - r.floor())
    w = torch.randn(cout, cin, k, k, generator=g, dtype=dtype) / k
    b = torch.randn(cout, generator=g, dtype=dtype)
    mask = torch.rand(n, k * k, ho, ho, generator=g, dtype=dtype) * 2 if modulated else None
    return x, off, w, b, mask


def _run(fn, x, off, w, b, mask, pad, seed=9, **kw):
    ins = [t.clone().requires_grad_() for t in (x, off, w, b)] + ([mask.clone().requires_grad_()] if mask is not None else [])
    y = fn(ins[0], ins[1], ins[2], ins[3], padding=pad, mask=ins[4] if mask is not None else None, **kw)
    up = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    (y * up).sum().backward()
    return y.detach(), [t.grad for t in ins]


@pytest.mark.parametrize("modulated", [False, True])
@pytest.mark.parametrize("n,cin,cout,side,k,pad", [(3, 1, 5, 14, 9, 0), (2, 4, 3, 9, 7, 0), (2, 3, 4, 8, 3, 1),
                                                    (2, 1, 2, 10, 9, 4), (2, 3, 12, 5, 3, 0)])
def test_sampled_backend_matches_torchvision(n, cin, cout, side, k, pad, modulated):
    x, off, w, b, mask = _case(n, cin, cout, side, k, pad, modulated, seed=k + cin)
    assert (off.abs() > 1.5).any()
    y_ref, g_ref = _run(tv_deform_conv2d, x, off, w, b, mask, pad)
    for budget in (1, 10 ** 9):  # one image per chunk, and the whole batch at once
        y, grads = _run(deform_conv2d_sampled, x, off, w, b, mask, pad, max_column_bytes=budget)
        torch.testing.assert_close(y, y_ref, atol=1e-4, rtol=1e-4)
        for name, got, ref in zip(("input", "offset", "weight", "bias", "mask"), grads, g_ref):
            torch.testing.assert_close(got, ref, atol=2e-4, rtol=1e-4, msg=lambda m: f"grad {name}: {m}")
    # channels-last input and offsets (as in training) give the same numbers
    cl = lambda t: t.contiguous(memory_format=torch.channels_last)  # noqa: E731
    y, grads = _run(deform_conv2d_sampled, cl(x), cl(off), w, b, None if mask is None else cl(mask), pad)
    torch.testing.assert_close(y, y_ref, atol=1e-4, rtol=1e-4)
    for got, ref in zip(grads, g_ref):
        torch.testing.assert_close(got, ref, atol=2e-4, rtol=1e-4)


def test_sampled_backend_integer_positions_and_outside_the_map():
    # exact integer taps (the bilinear kink): the forward pass agrees exactly; offsets up to ±12 px
    # put many taps outside the 12×12 map, where both read zeros
    x, off, w, b, _ = _case(2, 2, 3, 12, 3, 1, False, seed=4, integer=True, spread=12.0)
    ref = tv_deform_conv2d(x, off, w, b, padding=1)
    torch.testing.assert_close(deform_conv2d_sampled(x, off, w, b, padding=1), ref, atol=1e-5, rtol=1e-5)
    far = torch.full_like(off, 40.0)  # every tap outside: only the bias is left
    torch.testing.assert_close(deform_conv2d_sampled(x, far, w, b, padding=1),
                               b.view(1, -1, 1, 1).expand_as(ref), atol=1e-6, rtol=0)


# one input channel takes the (n·H'W', kk) column layout, more the batched one, whose weight gradient is summed
# per image when C_out < H'W' (2 < 36) and taken as one product otherwise (17 ≥ 16)
@pytest.mark.parametrize("cin,cout,side", [(1, 2, 6), (2, 2, 6), (2, 17, 4)])
def test_sampled_backend_gradcheck_float64(cin, cout, side):
    x, off, w, b, mask = _case(2, cin, cout, side, 3, 1, True, seed=5, spread=2.0, dtype=torch.float64)
    ins = tuple(t.requires_grad_() for t in (x, off, w, b, mask))
    f = lambda x, o, w, b, m: deform_conv2d_sampled(x, o, w, b, 1, m, max_column_bytes=1)  # noqa: E731
    assert torch.autograd.gradcheck(f, ins, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("cin", [1, 3])
def test_sampled_backend_gradients_when_only_some_inputs_need_them(cin):
    """The backward computes only the gradients asked for (a frozen weight, a fixed input) and each equals the
    one computed with all of them."""
    x, off, w, b, mask = _case(3, cin, 4, 9, 5, 2, True, seed=8)
    _, full = _run(deform_conv2d_sampled, x, off, w, b, mask, 2, max_column_bytes=1)
    for wanted in ((0,), (1,), (2,), (4,), (1, 2)):
        ins = [t.clone().requires_grad_(j in wanted) for j, t in enumerate((x, off, w, b, mask))]
        y = deform_conv2d_sampled(ins[0], ins[1], ins[2], ins[3], padding=2, mask=ins[4], max_column_bytes=1)
        up = torch.randn(y.shape, generator=torch.Generator().manual_seed(9), dtype=y.dtype)
        grads = torch.autograd.grad((y * up).sum(), [ins[j] for j in wanted])
        for j, g in zip(wanted, grads):
            torch.testing.assert_close(g, full[j], atol=1e-5, rtol=1e-5)


def test_chunking_does_not_change_results():
    x, off, w, b, mask = _case(7, 3, 4, 10, 5, 2, True, seed=6)
    y1, g1 = _run(deform_conv2d_sampled, x, off, w, b, mask, 2, max_column_bytes=1)
    per_image = 3 * 25 * 100 * 4
    for budget in (2 * per_image, 3 * per_image, 10 ** 9):  # chunks of 2, 3 (7 = 3+3+1) and all
        y, g = _run(deform_conv2d_sampled, x, off, w, b, mask, 2, max_column_bytes=budget)
        torch.testing.assert_close(y, y1, atol=1e-5, rtol=1e-5)
        for a, c in zip(g, g1):
            torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # inference path
        torch.testing.assert_close(deform_conv2d_sampled(x, off, w, b, 2, mask, max_column_bytes=1), y1)
    with pytest.raises(ValueError, match="offset has shape"):
        deform_conv2d_sampled(x, off[:, :4], w, b, 2, mask)


def test_backend_selection_and_state_dict():
    assert BACKENDS == ("auto", "torchvision", "sampled")
    layer = DeformConv2d(1, 2, 3, padding=1)
    assert layer.backend == "auto" and layer.resolved_backend(torch.zeros(1)) == "sampled"
    assert DeformConv2d(1, 2, 3, backend="torchvision").resolved_backend(torch.zeros(1)) == "torchvision"
    with pytest.raises(ValueError, match="backend must be one of"):
        DeformConv2d(1, 2, 3, backend="cuda")
    m = _perturbed(True, 28, seed=3)
    keys = list(m.state_dict())
    x = _x(5, 1, 28, seed=2)
    outs = {}
    for backend in ("torchvision", "sampled"):
        set_backend(m, backend)
        assert list(m.state_dict()) == keys and all(l.backend == backend for l in m.deform_layers)
        outs[backend] = m(x)
    torch.testing.assert_close(outs["sampled"], outs["torchvision"], atol=1e-4, rtol=1e-4)
    assert not any("backend" in k for k in keys)


def test_cli_dcn_backend_flag():
    a = T.parse_args(["--task", "mnist-r", "--model", "dcn", "--dcn-backend", "torchvision", "--out", "x"])
    assert a.dcn_backend == "torchvision"
    assert T.parse_args(["--task", "mnist-r", "--model", "dcn", "--out", "x"]).dcn_backend == "auto"
    with pytest.raises(SystemExit):
        T.parse_args(["--task", "mnist-r", "--model", "cnn", "--dcn-backend", "sampled", "--out", "x"])
