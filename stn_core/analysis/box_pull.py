"""Where the classification loss pulls each attention box of a CUB model (``scripts/cub_box_pull.py``).

Two measurements at the boxes a model predicts, in eval mode and float32, per image: the exact gradient
that training follows (:func:`box_pull`; for bilinear sampling a pixel-scale quantity) and the loss's slope
over a coarse shift of each box (:func:`box_slope`, central differences). Box parameters are (s, tx, ty) in
normalised coordinates [-1, 1] (``align_corners=False``), as :class:`stn_core.models.cub.CubNet` uses them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stn_core.models.cub import CubNet
from stn_core.modes import eval_mode


def box_pull(model: CubNet, x: torch.Tensor, y_idx: torch.Tensor, device: torch.device,
             chunk: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where the classification loss pulls each attention box, in eval mode and float32.

    x: uint8 images (N, 3, H, W); y_idx: class indices (N,). Returns (params (N, n_st, 3) the boxes the
    model predicts, grads (N, n_st, 3) ∂L_i/∂params of each image's own cross-entropy L_i, losses (N,)).
    −grads[..., 1:] is the way a gradient step would move each box centre (tx, ty)."""
    if model.n_st == 0:
        raise ValueError("the baseline has no attention boxes")
    params, grads, losses = [], [], []
    with eval_mode(model):
        for i in range(0, x.shape[0], chunk):
            xb = x[i:i + chunk].to(device).float() / 255.0
            with torch.no_grad():
                p = model.attention_params(xb).float()
            p.requires_grad_(True)
            loss = F.cross_entropy(model.logits_at(xb, p).float(), y_idx[i:i + chunk].to(device), reduction="none")
            (g,) = torch.autograd.grad(loss.sum(), p)  # images are independent: row i is ∂L_i/∂p_i
            params.append(p.detach().cpu())
            grads.append(g.cpu())
            losses.append(loss.detach().cpu())
    return torch.cat(params), torch.cat(grads), torch.cat(losses)


def box_slope(model: CubNet, x: torch.Tensor, y_idx: torch.Tensor, device: torch.device, step: float,
              chunk: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss's slope over box position at a coarse scale: central differences of width ±``step``.

    Each image's own cross-entropy with transformer k's box moved by ±step along x, then y (the other boxes
    held), in eval mode and float32: (params (N, n_st, 3), slopes (N, n_st, 2) ≈ ∂L_i/∂(tx, ty)). Unlike
    :func:`box_pull` (the gradient that training follows, a pixel-scale quantity for bilinear sampling) it
    measures whether the loss itself falls towards a part over ``step`` (normalised units)."""
    if model.n_st == 0:
        raise ValueError("the baseline has no attention boxes")
    if not step > 0:
        raise ValueError(f"step must be positive, got {step}")
    params, slopes = [], []
    with eval_mode(model), torch.no_grad():
        for i in range(0, x.shape[0], chunk):
            xb, yb = x[i:i + chunk].to(device).float() / 255.0, y_idx[i:i + chunk].to(device)
            p = model.attention_params(xb).float()
            sl = torch.zeros(p.shape[0], model.n_st, 2)
            for k in range(model.n_st):
                for axis in (0, 1):
                    loss = []
                    for sign in (1.0, -1.0):
                        q = p.clone()
                        q[:, k, 1 + axis] += sign * step
                        loss.append(F.cross_entropy(model.logits_at(xb, q).float(), yb, reduction="none"))
                    sl[:, k, axis] = ((loss[0] - loss[1]) / (2 * step)).cpu()
            params.append(p.cpu())
            slopes.append(sl)
    return torch.cat(params), torch.cat(slopes)
