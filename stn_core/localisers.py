"""Localisation heads that place attention boxes from a feature map.

:class:`HeatmapLocaliser`: a soft-argmax head (a score map per transformer over the feature cells; the
box centre moves by the expected cell position), used by the CUB models (``loc_head="heatmap"``).
Coordinates: normalised [-1, 1], ``align_corners=False``
(cell centres at (i + 0.5)/h · 2 − 1).
"""

from __future__ import annotations

import torch
from torch import nn

#: raw translation = start + HEATMAP_GAIN · (expected cell position); with a tanh bound on the
#: translation a box can then reach most of the image from any start.
HEATMAP_GAIN = 2.0


class HeatmapLocaliser(nn.Module):
    """Soft-argmax localisation head: (N, C, h, w) features → raw translations (N, n_st, 2).

    Per transformer k, a 1×1 conv scores every feature cell, a softmax over the h·w cells turns the
    scores into a distribution p_k, and the box centre moves by the expected cell position
    E_p[(x, y)] (cell centres in normalised [-1, 1] coordinates): raw_k = start_k + gain · E_p[(x, y)].
    The conv starts at zero (uniform p: E = 0, the box sits at its start), so the start is exact.
    A regression head whose last layer starts at zero moves every image's box alike at first (its update
    is the same for every image but for the hidden activations' size); here every image gets its own p
    from its own features, so the boxes can follow each image from the first step: the head learns
    *what* to look for, the soft-argmax says *where* it is."""

    def __init__(self, channels: int, n_st: int, gain: float = HEATMAP_GAIN) -> None:
        super().__init__()
        self.score = nn.Conv2d(channels, n_st, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)
        self.start = nn.Parameter(torch.zeros(n_st, 2))
        self.gain = float(gain)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        n, _, h, w = fmap.shape
        p = torch.softmax(self.score(fmap).flatten(2).float(), -1)               # (N, n_st, h·w)
        ys = (torch.arange(h, device=fmap.device, dtype=torch.float32) + 0.5) / h * 2 - 1
        xs = (torch.arange(w, device=fmap.device, dtype=torch.float32) + 0.5) / w * 2 - 1
        pos = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).view(h * w, 2)  # (h·w, 2) as (x, y)
        return self.start + self.gain * (p @ pos)                                # (N, n_st, 2)


__all__ = ["HEATMAP_GAIN", "HeatmapLocaliser"]
