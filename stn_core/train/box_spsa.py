"""A training step whose attention boxes learn from the loss's coarse slope (SPSA) [ours, not the paper's].

The paper trains the localisation net with the exact (sub)gradient of the bilinear sampler. On CUB at 448 px
that gradient does not point to each bird's parts, while the loss's slope over a shift of the box by ~0.1
(normalised units) does (``scripts/cub_box_pull.py`` → results/cub-pull.md). This step replaces only the
boxes' gradient by a simultaneous-perturbation estimate of that coarse slope:

    Δ ~ Rademacher (N, n_st, 2),   ĝ_i = (L_i(t_i + δΔ_i) − L_i(t_i − δΔ_i)) / (2δ) · Δ_i,

where L_i is image i's cross-entropy with every box of image i moved together; ĝ_i is an unbiased estimate
of the gradient of L_i smoothed over the ±δ shifts. The classifier and the backbone train as before on the
crops at the predicted boxes; the localisation net receives ĝ through the surrogate Σ_i ⟨ĝ_i, t_i⟩ / N.
Cost: two more forward passes of the crops per step (no backward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stn_core.models.cub import CubNet
from stn_core.train.loop import autocast_context, eval_mode


def spsa_box_grad(model: CubNet, x: torch.Tensor, y: torch.Tensor, params: torch.Tensor, delta: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """ĝ (N, n_st, 2): the SPSA estimate of ∂L_i/∂(tx, ty) at ``params`` (N, n_st, 3) over ±``delta``, each
    image's own cross-entropy (``y`` (N,) class indices), classifier in eval mode (no dropout noise in the
    difference). Runs under the caller's autocast; returns float32."""
    if not delta > 0:
        raise ValueError(f"delta must be positive, got {delta}")
    sign = torch.randint(0, 2, (params.shape[0], params.shape[1], 2), generator=generator).to(params.device)
    sign = sign.to(torch.float32) * 2 - 1
    with eval_mode(model), torch.no_grad():
        losses = []
        for s in (1.0, -1.0):
            q = params.detach().float().clone()
            q[..., 1:] += s * delta * sign
            losses.append(F.cross_entropy(model.logits_at(x, q).float(), y, reduction="none"))
    return ((losses[0] - losses[1]) / (2 * delta)).view(-1, 1, 1) * sign


def spsa_train_step(model: CubNet, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, delta: float,
                    precision: str = "fp32", generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step: cross-entropy at the predicted boxes for the classifier and backbone, the SPSA
    estimate for the localisation net (module docstring). Returns the detached logits and loss, as
    :func:`stn_core.train.loop.train_step` does. Single process, no gradient scaler (fp32 or bf16)."""
    if model.n_st == 0:
        raise ValueError("the baseline has no attention boxes")
    with autocast_context(precision, x.device):
        params = model.attention_params(x)
        logits = model.logits_at(x, params.detach())
        loss = F.cross_entropy(logits, y)
        g = spsa_box_grad(model, x, y, params, delta, generator)
        surrogate = (params[..., 1:].float() * g.to(params.device)).sum() / x.shape[0]
    opt.zero_grad(set_to_none=True)
    (loss + surrogate).backward()
    opt.step()
    return logits.detach(), loss.detach()
