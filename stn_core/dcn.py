"""Deformable convolution (Dai et al., ICCV 2017; DCNv2: Zhu et al., CVPR 2019) on
``torchvision.ops.deform_conv2d``.

A k×k deformable convolution samples its input at ``p0 + p_k + Δp_k`` instead of the
regular ``p0 + p_k``: a small convolution (the *offset predictor*) looks at the same input
and predicts the offsets ``Δp_k`` — 2·k·k numbers (dy, dx per kernel tap) at every output
position — and the taps are read with bilinear interpolation (zero outside the map).

Offset layout (torchvision's): ``offset[:, 2·t]`` is the **y** (row) offset and
``offset[:, 2·t + 1]`` the **x** (column) offset of kernel tap ``t = i·k + j`` (row ``i``,
column ``j``), in pixels of this layer's input; positive x moves the tap right.

Modulation (DCNv2, optional): the predictor also outputs k·k logits ``m`` and every tap is
weighted by ``2·sigmoid(m)``. [ours] DCNv2 uses ``sigmoid(m)`` (0.5 at a zero init, so the
layer starts as half the plain convolution); the factor 2 makes the mask start at exactly 1,
so a modulated layer, like an unmodulated one, *is* the plain convolution at initialisation.

The predictor is zero-initialised (weights and bias): at initialisation every offset is 0
(and every mask 1) and the layer equals ``nn.Conv2d`` with the same weight and bias.

[ours] The predictor is a 3×3 convolution *dilated* to span the deformed kernel's k×k window
(dilation (k-1)/2: 4 for 9×9, 3 for 7×7) with the same padding, so its output grid is the
layer's output grid. DCN's predictor is a full k×k convolution (the same thing for the usual
3×3 kernels); for a 7×7 kernel on many channels a full predictor would cost 2·49/9 ≈ 5.4×
more weights than this one and, on a fixed budget, take them from the classifier.
``offset_kernel=None`` gives DCN's full k×k predictor.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import deform_conv2d


class DeformConv2d(nn.Module):
    """Deformable k×k convolution, stride 1: ``(N, C_in, H, W)`` → ``(N, C_out, H', W')``
    with ``H' = H + 2·padding − k + 1``.

    ``weight (C_out, C_in, k, k)`` and ``bias (C_out,)`` are those of the equivalent
    ``nn.Conv2d``; ``offset_conv`` is the zero-initialised predictor of the offsets
    (``2·k·k`` channels) and, when ``modulated``, the mask logits (``k·k`` more channels).
    After every forward pass ``last_offset (N, 2·k·k, H', W')`` and ``last_mask
    (N, k·k, H', W')`` (None unless modulated) hold the values used, detached.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 bias: bool = True, modulated: bool = False, offset_kernel: int | None = 3) -> None:
        super().__init__()
        k = int(kernel_size)
        if k < 1:
            raise ValueError(f"kernel_size must be positive, got {kernel_size}")
        ok = k if offset_kernel is None else int(offset_kernel)
        if ok < 1 or ok > k or (ok == 1) != (k == 1) or (k - 1) % max(1, ok - 1):
            raise ValueError(f"offset_kernel {ok} cannot span the {k}×{k} window by dilation: use a "
                             f"size > 1 with (kernel_size − 1) divisible by (offset_kernel − 1), or None")
        dilation = 1 if k == 1 else (k - 1) // (ok - 1)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.padding, self.modulated = k, int(padding), bool(modulated)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, k, k))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.offset_conv = nn.Conv2d(in_channels, (3 if modulated else 2) * k * k, ok, padding=self.padding,
                                     dilation=dilation)
        self.last_offset: torch.Tensor | None = None
        self.last_mask: torch.Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s initialisation for the convolution; zeros for the predictor."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size ** 2)
            nn.init.uniform_(self.bias, -bound, bound)
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)

    @property
    def taps(self) -> int:
        """k·k, the number of kernel taps (offsets per position: 2·taps)."""
        return self.kernel_size ** 2

    def offsets_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Predicted ``offset (N, 2·k·k, H', W')`` and ``mask (N, k·k, H', W')`` or None."""
        out = self.offset_conv(x)
        n = 2 * self.taps
        if not self.modulated:
            return out, None
        return out[:, :n], 2.0 * torch.sigmoid(out[:, n:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset, mask = self.offsets_and_mask(x)
        self.last_offset = offset.detach()
        self.last_mask = None if mask is None else mask.detach()
        return deform_conv2d(x, offset.contiguous(), self.weight, self.bias, padding=self.padding,
                             mask=None if mask is None else mask.contiguous())

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"padding={self.padding}, modulated={self.modulated}")


def sampling_positions(layer: DeformConv2d, offset: torch.Tensor | None = None) -> torch.Tensor:
    """Where each tap reads the layer's input, in input pixels (x, y):
    ``(N, H', W', k·k, 2)`` from ``offset (N, 2·k·k, H', W')`` (default ``layer.last_offset``).
    Pixel ``(x, y)`` is the centre of column x, row y; taps are ordered row-major."""
    off = layer.last_offset if offset is None else offset
    if off is None:
        raise ValueError("no offsets yet: run a forward pass through the layer first")
    n, c, ho, wo = off.shape
    k, p = layer.kernel_size, layer.padding
    if c != 2 * k * k:
        raise ValueError(f"offset has {c} channels, expected 2·k·k = {2 * k * k}")
    dy, dx = off.view(n, k * k, 2, ho, wo).unbind(2)  # (N, kk, H', W') each
    ty, tx = torch.meshgrid(torch.arange(k, dtype=off.dtype, device=off.device),
                            torch.arange(k, dtype=off.dtype, device=off.device), indexing="ij")
    oy = torch.arange(ho, dtype=off.dtype, device=off.device) - p
    ox = torch.arange(wo, dtype=off.dtype, device=off.device) - p
    y = oy.view(1, 1, ho, 1) + ty.reshape(1, k * k, 1, 1) + dy
    x = ox.view(1, 1, 1, wo) + tx.reshape(1, k * k, 1, 1) + dx
    return torch.stack([x, y], -1).permute(0, 2, 3, 1, 4)


__all__ = ["DeformConv2d", "sampling_positions"]
