"""A small CUB model whose loss depends on its boxes, for the tests of box gradients and box signals."""

from __future__ import annotations

import torch

from stn_core.models.cub import CubNet, build_cub_model


def lively_cub_model(name: str = "cub-2st", seed: int = 0) -> CubNet:
    """A random-init 64-px CUB model (classes 1, 12, 14; crops of 32 px) in train mode, whose loss depends on its
    boxes: BatchNorm statistics from a few random batches (with zero-mean, unit-var defaults the random backbone's
    features vanish, and with them every box gradient) and a non-tiny classifier."""
    torch.manual_seed(seed)
    m = build_cub_model(name, [1, 12, 14], input_size=64, crop_size=32, backbone_weights=None)
    for b in m.features.modules():
        if isinstance(b, torch.nn.BatchNorm2d):
            b.reset_running_stats()
            b.momentum = None
    m.features.train()
    with torch.no_grad():
        m.features(torch.rand(16, 3, 32, 32))
        m.classifier[1].weight.normal_(0.0, 0.05)
    return m.train()
