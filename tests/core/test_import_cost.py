"""Importing the library does not load torchvision (and with it torch._dynamo, ~2 s): only a DCN's
reference kernel or a CUB model's trunk imports it, on first use (``stn_core.torchvision_lazy``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    return set(out.split())


def test_importing_every_library_module_leaves_torchvision_unloaded():
    mods = _modules_after("import stn_core, stn_core.models, stn_core.dcn, stn_core.registry, stn_core.analysis, "
                          "stn_core.checkpoints, stn_core.models.cub, stn_core.train.loop")
    assert "stn_core.models.cub" in mods
    assert not any(m == "torchvision" or m.startswith("torchvision.") for m in mods)


def test_a_deformable_convolution_on_the_torchvision_backend_loads_it_on_first_use():
    mods = _modules_after("import torch; from stn_core.dcn import DeformConv2d\n"
                          "DeformConv2d(1, 2, 3, backend='torchvision')(torch.zeros(1, 1, 5, 5))")
    assert "torchvision.ops" in mods


def test_the_lazy_deform_conv2d_is_torchvisions():
    from torchvision.ops import deform_conv2d as reference

    from stn_core.torchvision_lazy import deform_conv2d

    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(2, 3, 6, 6, generator=g), torch.randn(4, 3, 3, 3, generator=g)
    off = torch.randn(2, 18, 4, 4, generator=g)
    torch.testing.assert_close(deform_conv2d(x, off, w), reference(x, off, w), rtol=0, atol=0)


def test_loading_an_st_cnn_checkpoint_does_not_load_sympy():
    """The checkpoint loader builds the model on the meta device first; the localisation net's size is
    computed, not measured with a meta forward pass (whose max-pool imports torch's symbolic shapes and
    sympy, ~0.3 s of the explorer's first visit)."""
    mods = _modules_after("from stn_core.checkpoints import load_model\n"
                          "load_model('checkpoints/mnist_rts_st-cnn-aff')")
    assert "stn_core.stn" in mods and "sympy" not in mods
