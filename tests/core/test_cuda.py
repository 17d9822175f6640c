"""The CUDA paths of the library and the training CLI against their CPU results.

Every test here needs a GPU and skips, with that reason, where there is none (CI has none; they
were run on a device machine, see results/gpu-run.md). Float32 comparisons run with TF32 switched
off, so the GPU computes in full float32 and the tolerances only cover summation order (about
1e-6 relative per op, a few e-5 after a network); the whole-model gradient check runs in float64.
"""

from __future__ import annotations

import pytest
import torch

from stn_core.data import tasks as ds
from stn_core.train import mnist as T
from stn_core.checkpoints import load_model
from stn_core.data.samples import load_mnist_sample
from stn_core.models import ALL_MODEL_NAMES, ST_TRANSFORMS, build_model

CUDA = pytest.mark.cuda  # skipped without a GPU (tests/conftest.py)


@pytest.fixture(autouse=True)
def full_float32():
    """No TF32 in the comparisons (Hopper would otherwise use 10-bit mantissas in convs and matmuls)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _sample() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_mnist_sample()
    return torch.from_numpy(x), torch.from_numpy(y)


@CUDA
@pytest.mark.parametrize("task", ["mnist-r", "mnist-rts", "mnist-p", "mnist-e"])
def test_training_batches_made_on_cuda_match_the_cpu_ones(task):
    images, labels = _sample()
    cpu = ds.TrainStream(images, labels, task, seed=4, batch_size=64, device="cpu").batch(3)
    gpu = ds.TrainStream(images, labels, task, seed=4, batch_size=64, device="cuda").batch(3)
    assert gpu[0].device.type == "cuda"
    assert torch.equal(gpu[1].cpu(), cpu[1])
    # bilinear reads of the same grid: intensities in [0, 1] agree to float32 rounding of the coordinates
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], atol=1e-4, rtol=0)


#: (model, transform, input side, input channels): every model of the registry, each ST with each transform.
CASES = ([(n, None, 42 if n in ("cnn", "dcn") else 28, 1) for n in ALL_MODEL_NAMES if n in ("fcn", "cnn", "dcn")]
         + [(n, t, 42 if n == "st-cnn" else 28, 1) for n in ("st-fcn", "st-cnn") for t in ST_TRANSFORMS]
         + [("2st-fcn", "affine", 42, 2)])


def test_the_cases_cover_the_registry():
    assert {c[0] for c in CASES} == set(ALL_MODEL_NAMES)


@CUDA
@pytest.mark.parametrize("name,transform,side,channels", CASES)
def test_every_model_gives_the_same_loss_and_gradients_on_cuda(name, transform, side, channels):
    """In float64, so that summation order (CUDA kernels add in other orders, torchvision's deformable
    kernel with atomic adds) costs ~1e-15 relative, far below the 1e-9 bound, while a missing or wrong
    term shows as >= 1e-3. (In float32 the DCN's offset-conv weight gradient, a sum over every position
    with heavy cancellation near the zero-offset start, differed by 3e-3 relative on an H200.)"""
    torch.manual_seed(0)
    model = build_model(name, transform, side, in_channels=channels).double()
    # move the localisation nets / offset predictors off their identity start so the samplers'
    # coordinate gradients matter
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x = torch.rand(8, channels, side, side, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.arange(8) % 10
    out = {}
    for dev in ("cpu", "cuda"):
        m = build_model(name, transform, side, in_channels=channels).double().to(dev)
        m.load_state_dict({k: v.to(dev) for k, v in model.state_dict().items()})
        loss = torch.nn.functional.cross_entropy(m(x.to(dev)), y.to(dev))
        loss.backward()
        out[dev] = (loss.item(), {k: p.grad.cpu() for k, p in m.named_parameters() if p.grad is not None})
    assert out["cuda"][0] == pytest.approx(out["cpu"][0], rel=1e-9)
    assert out["cuda"][1].keys() == out["cpu"][1].keys()
    for k, g in out["cpu"][1].items():
        rel = float((out["cuda"][1][k] - g).norm() / g.norm().clamp_min(1e-300))
        assert rel < 1e-9, f"grad {k}: relative error {rel:.2e}"


@CUDA
@pytest.mark.parametrize("modulated", [False, True])
def test_deformable_conv_kernels_agree_on_cuda(modulated):
    from torchvision.ops import deform_conv2d

    from stn_core.dcn import deform_conv2d_sampled

    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 12, 12, generator=g)
    off = (torch.rand(2, 2 * 9, 12, 12, generator=g) * 2 - 1) * 3  # reaching outside the map
    w, b = torch.randn(4, 3, 3, 3, generator=g) / 3, torch.randn(4, generator=g)
    mask = torch.rand(2, 9, 12, 12, generator=g) if modulated else None
    ref = deform_conv2d(x, off, w, b, padding=1, mask=mask)
    cu = [t.cuda() if t is not None else None for t in (x, off, w, b, mask)]
    for fn in (deform_conv2d, deform_conv2d_sampled):  # torchvision's CUDA kernel and ours on CUDA
        got = fn(cu[0], cu[1], cu[2], cu[3], padding=1, mask=cu[4])
        torch.testing.assert_close(got.cpu(), ref, atol=1e-4, rtol=1e-4)


@CUDA
def test_training_cli_runs_on_cuda_and_its_checkpoint_loads_on_cpu(data_root, tmp_path):
    out = tmp_path / "st-cnn"
    meta = T.main(["--data-root", str(data_root), "--no-verify", "--out", str(out), "--no-progress",
                   "--task", "mnist-rts", "--model", "st-cnn", "--transform", "tps", "--steps", "20",
                   "--batch", "32", "--lr", "0.02", "--momentum", "0.9", "--device", "cuda"])
    assert meta["device"].startswith("cuda") and meta["final"] is True
    model, saved = load_model(out)  # onto the CPU
    x, y = ds.fixed_test_set("mnist-rts", root=data_root, verify=False)
    err, _ = T.evaluate(model, x, y, torch.device("cpu"))
    # the CUDA run evaluated with TF32 off too; a digit whose top two logits tie within rounding may flip
    assert err == pytest.approx(saved["test_error"], abs=100 / len(y) + 1e-9)
