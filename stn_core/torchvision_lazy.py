"""The two torchvision pieces STN Lab uses, imported on first use.

``import torchvision`` (any of its submodules) loads all of torchvision and, through
``torchvision.ops.roi_align``, ``torch._dynamo``: 1.6–2.0 s here, more than ``import torch`` itself.
Only the deformable convolution (its reference kernel) and the CUB models (the MobileNetV2 trunk) need
it, so importing ``stn_core`` — and opening any app page that shows neither — does not pay for it.
Python's per-module import lock makes the first use safe from several threads at once.
"""

from __future__ import annotations

import torch
from torch import nn


def deform_conv2d(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  padding: int | tuple[int, int] = 0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``torchvision.ops.deform_conv2d`` (stride 1): ``x (N, C_in, H, W)`` → ``(N, C_out, H', W')``."""
    from torchvision.ops import deform_conv2d as tv_deform_conv2d

    return tv_deform_conv2d(x, offset, weight, bias, padding=padding, mask=mask)


def mobilenet_v2(imagenet_download: bool = False) -> nn.Module:
    """torchvision's MobileNetV2, random init, or its ``IMAGENET1K_V1`` weights (downloads them)."""
    from torchvision.models import MobileNet_V2_Weights
    from torchvision.models import mobilenet_v2 as tv_mobilenet_v2

    return tv_mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1 if imagenet_download else None)


def preload() -> None:
    """Import torchvision's ops and models now (a server warming up in the background)."""
    import torchvision.models  # noqa: F401
    import torchvision.ops  # noqa: F401
