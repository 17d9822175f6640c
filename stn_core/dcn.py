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

Two backends compute the same function (``DeformConv2d(backend=...)``):

* ``"torchvision"`` — ``torchvision.ops.deform_conv2d``, the reference (its CPU kernel is a
  plain loop: slow, especially backward).
* ``"sampled"`` — :func:`deform_conv2d_sampled`: the k·k·H'·W' sampling positions
  ``p0 + p_k + Δp_k`` are converted to normalised coordinates (``x_n = (2x + 1)/W − 1``,
  align_corners=False) and read with one ``F.grid_sample`` (bilinear, zero padding), giving
  the columns ``(N, C_in·k·k, H'·W')`` (times the mask when modulated); one matmul with the
  weight finishes the convolution. (The input is read transposed, so a grid of (y, x) pairs —
  the offsets' own (dy, dx) order — needs no reordering.) Batches are processed in chunks
  whose columns stay under ``max_column_bytes`` (16 MiB); backward recomputes each chunk's
  columns instead of keeping them (one extra grid_sample per chunk), so the extra memory is
  one chunk's columns whatever the batch.
* ``"auto"`` (default) — torchvision on CUDA, the sampled path on CPU (there it is several
  times faster: bench/stn_vs_dcn.py, results/bench-stn-vs-dcn.md).

The two agree to float32 rounding in the output and in the gradients w.r.t. input, offsets,
mask, weight and bias (tests/test_dcn.py). Where a tap lands *exactly* on an integer pixel
coordinate the bilinear kernel has a kink and the two may pick different one-sided
sub-gradients w.r.t. the offset there; the tests compare them away from integer positions.

Precision (``torch.autocast``): a :class:`DeformConv2d` under autocast switches it off for its
own forward and runs the offset predictor and the deformable convolution in float32 (a
float16/bfloat16 input — the output of an earlier layer under autocast — is upcast to the
weights' float32); its output is float32 and the layers after it follow autocast as usual.
Why: torchvision's CPU kernel has no bfloat16/float16 implementation ("deformable_im2col"
not implemented for 'BFloat16') and no CPU autocast rule, so it fails under CPU autocast;
torchvision's own CUDA autocast rule runs it in float32 too. The sampled path would run but
with bfloat16 offsets (sampling positions good to ~8 bits) and mixed dtypes in its backward;
running both backends in float32 keeps them computing the same function (tests/test_autocast.py).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .torchvision_lazy import deform_conv2d
from .transforms import autocast_enabled

BACKENDS = ("auto", "torchvision", "sampled")
#: Default budget of one chunk's columns (N_chunk · C_in·k·k · H'·W' floats) on the sampled path.
MAX_COLUMN_BYTES = 16 * 2 ** 20


def _base_grid(k: int, padding: int, out_hw: tuple[int, int], in_hw: tuple[int, int],
               dtype: torch.dtype, device: torch.device, position_major: bool) -> torch.Tensor:
    """Normalised **(y, x)** of the regular taps ``p0 + p_k`` (taps row-major): ``(H'·W', k·k, 2)``
    when ``position_major``, else ``(k·k, H'·W', 2)``. (y, x) because the sampled path reads the
    *transposed* input, so the offsets' own (dy, dx) order needs no reordering.)"""
    (ho, wo), (h, w) = out_hw, in_hw
    ar = lambda n: torch.arange(n, dtype=torch.float64, device=device)  # noqa: E731
    ty, tx = torch.meshgrid(ar(k), ar(k), indexing="ij")
    oy, ox = torch.meshgrid(ar(ho) - padding, ar(wo) - padding, indexing="ij")
    x = tx.reshape(-1, 1) + ox.reshape(1, -1)
    y = ty.reshape(-1, 1) + oy.reshape(1, -1)
    g = torch.stack([(2 * y + 1) / h - 1, (2 * x + 1) / w - 1], -1)  # (kk, hw, 2)
    return (g.transpose(0, 1) if position_major else g).contiguous().to(dtype)


def _columns(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor | None, base: torch.Tensor) -> torch.Tensor:
    """The sampled columns of one chunk (plain autograd ops, differentiable w.r.t. x, offset, mask).

    ``grid_sample`` reads ``x`` transposed (``(n, C, W, H)``), so a grid of (y, x) pairs — the
    offsets' (dy, dx) order — samples ``x[y, x]``. One input channel: position-major grid
    ``(n, H'W', kk, 2)`` (a free view of channels-last offsets), columns ``(n·H'W', kk)``. Several
    channels: tap-major grid ``(n, kk, H'W', 2)``, columns ``(n, C·kk, H'W')``."""
    n, c, h, w = x.shape
    ho, wo = offset.shape[2:]
    kk, hw = offset.shape[1] // 2, ho * wo
    scale = torch.tensor([2.0 / h, 2.0 / w], dtype=x.dtype, device=x.device)  # pixels → normalised (y, x)
    xt = x.transpose(2, 3)
    if c == 1:
        off = offset.permute(0, 2, 3, 1).reshape(n, hw, kk, 2)
        grid = torch.addcmul(base, off, scale).contiguous()
        cols = F.grid_sample(xt, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (n, 1, hw, kk)
        if mask is not None:
            cols = cols * mask.permute(0, 2, 3, 1).reshape(n, 1, hw, kk)
        return cols.reshape(n * hw, kk)
    off = offset.reshape(n, kk, 2, hw).transpose(2, 3)
    grid = torch.addcmul(base, off, scale).contiguous()
    cols = F.grid_sample(xt, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (n, C, kk, hw)
    if mask is not None:
        cols = cols * mask.reshape(n, 1, kk, hw)
    return cols.reshape(n, c * kk, hw)


def _weighted(cols: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, n: int,
              out_hw: tuple[int, int]) -> torch.Tensor:
    """The convolution's output ``(n, C_out, H', W')`` from one chunk's :func:`_columns`."""
    co = weight.shape[0]
    (ho, wo) = out_hw
    if cols.dim() == 2:  # one input channel: (n·H'W', kk) @ (kk, C_out), channels-last output
        w2 = weight.reshape(co, -1).t()
        out = torch.addmm(bias, cols, w2) if bias is not None else cols @ w2
        return out.view(n, ho, wo, co).permute(0, 3, 1, 2)
    # bmm with the weight broadcast (a stride-0 batch): torch.matmul(2-D, 3-D) would fold the batch into the
    # rows and copy all columns transposed first (a forward 4× slower)
    out = torch.bmm(weight.reshape(1, co, -1).expand(n, -1, -1), cols)
    if bias is not None:
        out = out + bias.view(1, co, 1)
    return out.view(n, co, ho, wo)


def _weighted_grads(cols: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor, want_cols: bool,
                    want_weight: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of :func:`_weighted` (without bias) w.r.t. its columns and weight, given the output's ``grad
    (n, C_out, H', W')``: ``(grad_cols, grad_weight)`` (the latter shaped like ``weight``), None where not wanted."""
    n, co = grad.shape[:2]
    gcols = gw = None
    if cols.dim() == 2:
        g = grad.permute(0, 2, 3, 1).reshape(-1, co)  # (n·H'W', C_out)
        if want_cols:
            gcols = g @ weight.reshape(co, -1)
        if want_weight:
            gw = (g.t() @ cols).view_as(weight)
        return gcols, gw
    g = grad.reshape(n, co, -1)  # (n, C_out, H'W')
    hw = g.shape[2]
    if want_cols:
        gcols = (weight.reshape(co, -1).t() @ g.transpose(0, 1).reshape(co, n * hw)).view(-1, n, hw).transpose(0, 1)
    if want_weight and co < hw:  # per-image products summed: n·C_out·C·kk written, fewer than n·C·kk·H'W' columns
        gw = torch.bmm(g, cols.transpose(1, 2)).sum(0).view_as(weight)
    elif want_weight:  # one product over all (image, position) pairs: copies the columns once instead
        gw = (g.transpose(1, 2).reshape(n * hw, co).t() @ cols.transpose(0, 1).reshape(-1, n * hw).t()).view_as(weight)
    return gcols, gw


def _grid_base(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
    return _base_grid(weight.shape[-1], padding, tuple(offset.shape[2:]), tuple(x.shape[2:]), x.dtype, x.device,
                      position_major=x.shape[1] == 1)


class _SampledDeformConv(torch.autograd.Function):
    """Chunked sampled deformable convolution; backward recomputes each chunk's columns (not its output: the
    matmul's gradients are written out by :func:`_weighted_grads`)."""

    @staticmethod
    def forward(ctx, x, offset, weight, bias, mask, padding, chunk):  # noqa: D102
        base = _grid_base(x, offset, weight, padding)
        ctx.save_for_backward(x, offset, weight, bias, mask)
        ctx.padding, ctx.chunk = padding, chunk
        out_hw = tuple(offset.shape[2:])
        parts = [_weighted(_columns(x[i:i + chunk], offset[i:i + chunk], None if mask is None else mask[i:i + chunk],
                                    base), weight, bias, min(chunk, x.shape[0] - i), out_hw)
                 for i in range(0, x.shape[0], chunk)]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, offset, weight, bias, mask = ctx.saved_tensors
        need = ctx.needs_input_grad
        base = _grid_base(x, offset, weight, ctx.padding)
        gb = grad.sum((0, 2, 3)) if bias is not None and need[3] else None
        want_m = mask is not None and need[4]
        parts: dict[int, list[torch.Tensor]] = {0: [], 1: [], 4: []}
        gw = None
        if need[0] or need[1] or need[2] or want_m:
            for i in range(0, x.shape[0], ctx.chunk):
                sl = slice(i, i + ctx.chunk)
                with torch.enable_grad():
                    xc = x[sl].detach().requires_grad_(need[0])
                    oc = offset[sl].detach().requires_grad_(need[1])
                    mc = None if mask is None else mask[sl].detach().requires_grad_(want_m)
                    cols = _columns(xc, oc, mc, base)
                wanted = [(j, t) for j, t, on in ((0, xc, need[0]), (1, oc, need[1]), (4, mc, want_m)) if on]
                gcols, gwc = _weighted_grads(cols.detach(), weight, grad[sl], bool(wanted), need[2])
                if gwc is not None:
                    gw = gwc if gw is None else gw + gwc
                if wanted:
                    for (j, _), g in zip(wanted, torch.autograd.grad(cols, [t for _, t in wanted], gcols)):
                        parts[j].append(g)
        cat = lambda j: (parts[j][0] if len(parts[j]) == 1 else torch.cat(parts[j])) if parts[j] else None  # noqa: E731
        return cat(0), cat(1), gw, gb, cat(4), None, None


def deform_conv2d_sampled(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor | None = None, padding: int = 0, mask: torch.Tensor | None = None,
                          max_column_bytes: int = MAX_COLUMN_BYTES) -> torch.Tensor:
    """Deformable convolution (stride 1, dilation 1, one offset group) by ``grid_sample`` + matmul.

    ``x (N, C_in, H, W)``, ``offset (N, 2·k·k, H', W')`` (torchvision's layout: dy, dx per tap),
    ``weight (C_out, C_in, k, k)``, ``bias (C_out,)``, ``mask (N, k·k, H', W')`` or None →
    ``(N, C_out, H', W')``, equal to ``torchvision.ops.deform_conv2d(x, offset, weight, bias,
    padding=padding, mask=mask)``. The batch is split into chunks of at most
    ``max_column_bytes`` of columns."""
    n, c, h, w = x.shape
    co, ci, k, k2 = weight.shape
    ho, wo = h + 2 * padding - k + 1, w + 2 * padding - k + 1
    if ci != c or k != k2:
        raise ValueError(f"weight {tuple(weight.shape)} does not fit an input with {c} channels and a square kernel")
    if tuple(offset.shape) != (n, 2 * k * k, ho, wo):
        raise ValueError(f"offset has shape {tuple(offset.shape)}, expected {(n, 2 * k * k, ho, wo)}")
    if mask is not None and tuple(mask.shape) != (n, k * k, ho, wo):
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {(n, k * k, ho, wo)}")
    per_image = c * k * k * ho * wo * x.element_size()
    chunk = max(1, min(n, int(max_column_bytes) // max(1, per_image)))
    return _SampledDeformConv.apply(x, offset, weight, bias, mask, int(padding), chunk)


class DeformOutput(NamedTuple):
    """A deformable layer's output ``(N, C_out, H', W')`` with the ``offset (N, 2·k·k, H', W')`` and
    ``mask (N, k·k, H', W')`` (None unless modulated) it used."""

    output: torch.Tensor
    offset: torch.Tensor
    mask: torch.Tensor | None


class DeformConv2d(nn.Module):
    """Deformable k×k convolution, stride 1: ``(N, C_in, H, W)`` → ``(N, C_out, H', W')``
    with ``H' = H + 2·padding − k + 1``.

    ``weight (C_out, C_in, k, k)`` and ``bias (C_out,)`` are those of the equivalent
    ``nn.Conv2d``; ``offset_conv`` is the zero-initialised predictor of the offsets
    (``2·k·k`` channels) and, when ``modulated``, the mask logits (``k·k`` more channels).
    ``forward`` returns the output; :meth:`deform` also returns the ``offset (N, 2·k·k, H', W')``
    and ``mask (N, k·k, H', W')`` (None unless modulated) it used (:class:`DeformOutput`). The
    layer keeps no state between calls.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 bias: bool = True, modulated: bool = False, offset_kernel: int | None = 3,
                 backend: str = "auto") -> None:
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
        self.backend = backend  # validated by the setter; not part of the state_dict
        self.max_column_bytes = MAX_COLUMN_BYTES
        self.reset_parameters()

    @property
    def backend(self) -> str:
        """``"auto"`` (torchvision on CUDA, sampled on CPU), ``"torchvision"`` or ``"sampled"``."""
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {value!r}")
        self._backend = value

    def resolved_backend(self, x: torch.Tensor) -> str:
        """The backend a forward pass on ``x`` uses."""
        if self._backend != "auto":
            return self._backend
        return "torchvision" if x.is_cuda else "sampled"

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
        return self.deform(x).output

    def deform(self, x: torch.Tensor) -> DeformOutput:
        """Like :meth:`forward`, returning the output with the offsets and mask it used."""
        if autocast_enabled(x.device) and self.weight.dtype not in (torch.float16, torch.bfloat16):
            # float32 (the weights' dtype) with autocast off: see the module docstring
            with torch.autocast(x.device.type, enabled=False):
                return self._deform(x.to(self.weight.dtype) if x.is_floating_point() else x)
        return self._deform(x)

    def _deform(self, x: torch.Tensor) -> DeformOutput:
        offset, mask = self.offsets_and_mask(x)
        if self.resolved_backend(x) == "sampled":
            y = deform_conv2d_sampled(x, offset, self.weight, self.bias, self.padding, mask, self.max_column_bytes)
        else:
            y = deform_conv2d(x, offset.contiguous(), self.weight, self.bias, padding=self.padding,
                              mask=None if mask is None else mask.contiguous())
        return DeformOutput(y, offset, mask)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"padding={self.padding}, modulated={self.modulated}, backend={self.backend!r}")


def sampling_positions(layer: DeformConv2d, offset: torch.Tensor) -> torch.Tensor:
    """Where each tap reads the layer's input, in input pixels (x, y):
    ``(N, H', W', k·k, 2)`` from ``offset (N, 2·k·k, H', W')`` (:meth:`DeformConv2d.deform`).
    Pixel ``(x, y)`` is the centre of column x, row y; taps are ordered row-major."""
    off = offset
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


def set_backend(model: nn.Module, backend: str) -> nn.Module:
    """Set ``backend`` on every :class:`DeformConv2d` of ``model`` (returns the model)."""
    for m in model.modules():
        if isinstance(m, DeformConv2d):
            m.backend = backend
    return model


__all__ = ["BACKENDS", "DeformConv2d", "MAX_COLUMN_BYTES", "deform_conv2d_sampled", "sampling_positions",
           "set_backend"]
