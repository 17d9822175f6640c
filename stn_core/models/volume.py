"""Volume classifiers with and without a 3-D spatial transformer (the paper's appendix A.3).

``vol-st-cnn``: a 3-D localisation net regresses an affine θ ``(N, 3, 4)``; the transformer samples a
28³ output volume from the 60³ input (trilinear, :mod:`stn_core.sampling3d`); the volume is flattened
along depth (its mean, :func:`stn_core.data.volumes.projection`) into a 28×28 image, which the Table 1
CNN classifies. The transformer can turn a tilted digit back to face the viewer and zoom onto it, so
the projection it hands on is a clean digit.

``vol-cnn``: the same classifier on the raw volume's projection (60×60), no transformer.

Localisation net [ours; the paper gives none]: 3× average pooling (60³ → 20³), conv 5³ ×8, max-pool 2,
conv 3³ ×16, max-pool 2, FC 32, FC 12; ReLUs; the last layer starts at zero weights and the identity.
(3-D convolutions are slow on a CPU: at 2× pooling and 5³ kernels this net took 2/3 of a training step.)
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from stn_core.data.volumes import VOLUME, projection
from stn_core.models.mnist import cnn_classifier, count_params
from stn_core.sampling3d import sample_3d
from stn_core.transforms3d import affine_grid_3d

#: Model name → transform (the checkpoint JSON's "model" and "transform").
VOLUME_MODELS = {"vol-cnn": None, "vol-st-cnn": "affine3d"}
#: Side of the transformer's output volume (and of its projection).
OUT = 28
#: Channels of the classifier's convolutions.
WIDTH = 48


class VolumeViews(NamedTuple):
    """What a volume model computed for ``x (N, 1, 60, 60, 60)``: ``logits (N, K)``; ``theta (N, 3, 4)`` and
    the transformer's output volume ``(N, 1, 28, 28, 28)`` (None without a transformer); ``projection``
    ``(N, 1, S, S)``: the image the classifier saw."""

    logits: torch.Tensor
    theta: torch.Tensor | None
    volume: torch.Tensor | None
    projection: torch.Tensor


class LocalisationNet3d(nn.Module):
    """``(N, 1, 60, 60, 60)`` → θ ``(N, 3, 4)``, starting at ``start_scale`` × the identity (a centred cube
    that fraction of the volume's side; 1: the identity)."""

    def __init__(self, hidden: int = 32, start_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.AvgPool3d(3), nn.Conv3d(1, 8, 5), nn.ReLU(inplace=True), nn.MaxPool3d(2),   # 20³ → 16³ → 8³
            nn.Conv3d(8, 16, 3), nn.ReLU(inplace=True), nn.MaxPool3d(2), nn.Flatten(),     # → 6³ → 3³
            nn.Linear(16 * 3 * 3 * 3, hidden), nn.ReLU(inplace=True))
        self.head = nn.Linear(hidden, 12)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.copy_((torch.eye(3, 4) * float(start_scale)).flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).view(-1, 3, 4)


class VolumeNet(nn.Module):
    """A volume classifier: optional 3-D affine transformer → depth projection → CNN."""

    def __init__(self, transform: str | None = "affine3d", num_classes: int = 10, width: int = WIDTH,
                 start_scale: float = 1.0) -> None:
        super().__init__()
        if transform not in (None, "affine3d"):
            raise ValueError(f"transform must be 'affine3d' or None, got {transform!r}")
        if not 0.1 <= start_scale <= 1.0:
            raise ValueError(f"start_scale must be in [0.1, 1], got {start_scale}")
        self.transform = transform
        self.loc = LocalisationNet3d(start_scale=start_scale) if transform else None
        self.classifier = cnn_classifier(OUT if transform else VOLUME, int(width), int(num_classes))
        self.config = {"model": "vol-st-cnn" if transform else "vol-cnn", "transform": transform,
                       "input_size": VOLUME, "num_classes": int(num_classes), "width": int(width)}

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 5 or x.shape[1:] != (1, VOLUME, VOLUME, VOLUME):
            raise ValueError(f"x must have shape (N, 1, {VOLUME}, {VOLUME}, {VOLUME}), got {tuple(x.shape)}")

    def views(self, x: torch.Tensor, theta: torch.Tensor | None = None) -> VolumeViews:
        """Every intermediate for drawing; ``theta`` replaces the localisation net's output (a hand θ)."""
        self._check(x)
        if self.loc is None:
            proj = projection(x)
            return VolumeViews(self.classifier(proj), None, None, proj)
        th = self.loc(x) if theta is None else theta.to(x)
        vol = sample_3d(x, affine_grid_3d(th, (OUT, OUT, OUT)))
        proj = projection(vol)
        return VolumeViews(self.classifier(proj), th, vol, proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.views(x).logits

    def localisation_parameters(self) -> list[nn.Parameter]:
        """The localisation net's parameters (trained at a lower learning rate)."""
        return [] if self.loc is None else list(self.loc.parameters())


def build_volume_model(name: str, transform: str | None = None, num_classes: int = 10,
                       width: int | None = None, start_scale: float = 1.0) -> VolumeNet:
    """``vol-cnn`` or ``vol-st-cnn`` (its transform must be ``affine3d``); ``start_scale``: the transformer's
    starting zoom (an initialisation only: the architecture is the same)."""
    if name not in VOLUME_MODELS:
        raise ValueError(f"unknown volume model {name!r}; choose one of {', '.join(VOLUME_MODELS)}")
    want = VOLUME_MODELS[name]
    if transform not in (None, want):
        raise ValueError(f"{name} takes transform {want!r}, got {transform!r}")
    return VolumeNet(want, num_classes, WIDTH if width is None else width, start_scale)


def volume_model_from_meta(meta: dict) -> VolumeNet:
    """The untrained model a volume checkpoint's metadata describes."""
    arch = meta.get("arch") or {}
    return build_volume_model(meta["model"], meta["transform"], meta["num_classes"], arch.get("width"))


__all__ = ["OUT", "VOLUME_MODELS", "WIDTH", "LocalisationNet3d", "VolumeNet", "VolumeViews", "build_volume_model",
           "count_params", "volume_model_from_meta"]
