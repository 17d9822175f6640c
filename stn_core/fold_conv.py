"""A ``Conv2d`` whose input gradient is one matmul and a col2im: the ST-CNN's first conv on a CPU.

In the CNN the first convolution's input is the data, so its backward pass only computes the weight
gradient. In the ST-CNN the same convolution's input is the transformer's output, and the transformer
needs its gradient: on a CPU, oneDNN's input-gradient kernel for a convolution with **one** input channel
and a 9×9 kernel (the paper's conv 1) costs several times the weight gradient (issue #16 measured 4.4× in
fp32; ``bench/train_throughput.py`` measures the step). The same gradient written as

    cols (N, C·k·k, L) = Wᵀ (C·k·k, O) @ grad_out (N, O, L)      L = output positions
    grad_in (N, C, H, W) = col2im(cols)    (F.fold: add every window's share back to its pixels)

is one well-shaped matmul (O = 88 → C·k·k = 81) and a scatter-add, several times faster
(``python bench/train_throughput.py --sections conv1`` measures both, and the step).

:class:`FoldGradConv2d` is ``nn.Conv2d`` (same parameters, same state-dict keys, same forward) with that
backward for stride 1, dilation 1, one group and zero padding on a CPU, when the input needs a gradient.
Everything else (CUDA, where cuDNN is fast; eval; the CNN, whose input needs no gradient) runs
``nn.Conv2d``'s own path, which is also the reference the tests compare against. Under ``torch.autocast``
the layer casts its input and weights to the autocast dtype as ``F.conv2d`` would, so the forward is the
same kernel; col2im sums in float32 and its result is rounded to the input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FoldGradConv2d", "conv2d_input_grad"]


def conv2d_input_grad(grad_out: torch.Tensor, weight: torch.Tensor, in_size: tuple[int, int],
                      padding: tuple[int, int]) -> torch.Tensor:
    """Gradient of a stride-1, dilation-1, one-group ``conv2d`` w.r.t. its input, as matmul + col2im.

    grad_out ``(N, O, Ho, Wo)`` (any memory format), weight ``(O, C, kh, kw)``, in_size ``(H, W)`` →
    ``(N, C, H, W)`` in float32 (float64 for float64 input). The matmul gives one ``(N, Ho, Wo)`` plane
    per kernel tap (c, a, b); col2im adds each plane into the padded input at offset (a, b) — the sum
    ``F.fold`` computes, as C·kh·kw shifted adds of contiguous planes (twice as fast as ``F.fold`` on the
    transposed columns here), in float32 at least, whatever the matmul's dtype.
    """
    n, o, ho, wo = grad_out.shape
    c, kh, kw = weight.shape[1:]
    (h, w), (ph, pw) = in_size, padding
    g = grad_out.permute(0, 2, 3, 1).reshape(n * ho * wo, o)          # a view for channels-last grad_out
    planes = weight.reshape(o, -1).to(g.dtype).t() @ g.t()            # (C·kh·kw, N·Ho·Wo), one row per tap
    acc = torch.promote_types(g.dtype, torch.float32)                 # float32, or float64 for float64 input
    out = torch.zeros(n, c, h + 2 * ph, w + 2 * pw, dtype=acc, device=g.device)
    for tap in range(c * kh * kw):
        ci, a, b = tap // (kh * kw), (tap // kw) % kh, tap % kw
        out[:, ci, a:a + ho, b:b + wo] += planes[tap].view(n, ho, wo)
    return out[:, :, ph:ph + h, pw:pw + w]


class _FoldGradConv2dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                padding: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if need_w or (need_b and ctx.has_bias):
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad_out, x, weight, [weight.shape[0]] if ctx.has_bias else None, [1, 1], list(ctx.padding),
                [1, 1], False, [0, 0], 1, [False, bool(need_w), bool(need_b and ctx.has_bias)])
        if need_x:
            grad_x = conv2d_input_grad(grad_out, weight, tuple(x.shape[-2:]), ctx.padding).to(x.dtype)
            if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
                grad_x = grad_x.contiguous(memory_format=torch.channels_last)
        return grad_x, grad_w, grad_b, None


class FoldGradConv2d(nn.Conv2d):
    """``nn.Conv2d`` with :func:`conv2d_input_grad` as its input gradient on a CPU (see the module docstring).

    Forward ``x (N, C, H, W)`` → ``(N, O, H', W')``, identical to ``nn.Conv2d``'s.
    """

    def _fold_path(self, x: torch.Tensor) -> bool:
        return (x.device.type == "cpu" and x.requires_grad and torch.is_grad_enabled() and x.dim() == 4
                and self.stride == (1, 1) and self.dilation == (1, 1) and self.groups == 1
                and self.padding_mode == "zeros" and not isinstance(self.padding, str))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fold_path(x):
            return super().forward(x)
        weight, bias = self.weight, self.bias
        if torch.is_autocast_enabled("cpu"):
            dtype = torch.get_autocast_dtype("cpu")
            x, weight = x.to(dtype), weight.to(dtype)
            bias = bias.to(dtype) if bias is not None else None
            with torch.autocast("cpu", enabled=False):
                return _FoldGradConv2dFn.apply(x, weight, bias, tuple(self.padding))
        if x.dtype != weight.dtype:  # as F.conv2d: a dtype mismatch is the caller's error
            return super().forward(x)
        return _FoldGradConv2dFn.apply(x, weight, bias, tuple(self.padding))
