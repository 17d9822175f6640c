"""Digit-string readers with spatial transformers in the conv stack (the paper's Table 2, SVHN).

Three models, the paper's scaled to a CPU (every size here is ours unless marked):

* ``seq-cnn``: 4 conv blocks — conv 5×5 ×32, conv 5×5 ×48, conv 3×3 ×64, conv 3×3 ×96, each "same"
  padded, ReLU, max-pool 2 [paper: 8 conv layers of 48–192 filters, then 2 FC of 3072] — then FC 256 and
  the heads: a length head (1–5) and 5 digit heads [paper: "5 softmax heads plus a length head", the
  Goodfellow et al. sequence model].
* ``seq-st-single``: one affine transformer on the input, its localisation net a 4-layer CNN
  (:func:`stn_core.stn.conv_localisation`: conv, conv, FC 20, FC 6) [paper: 4-layer CNN], then ``seq-cnn``.
* ``seq-st-multi``: an affine transformer before each of the first 4 conv layers [paper], each with a
  2-layer FC localisation net of 32 units (FC 32, FC 6) [paper]; the first warps the image, the other
  three warp convolutional feature maps. Before its FC layers each localisation net averages its input
  down to 16×16 (the image) or 8×8 (feature maps) [ours: keeps them ~100k weights on a CPU].

Every transformer's output has its input's size (the conv stack keeps its shapes) and starts at the
identity. Sequence read-out: the length head's argmax L and the first L digit heads' argmaxes; a string
counts as right only when all of them are [the paper's "sequence error"]. Coordinates: normalised
[-1, 1], ``align_corners=False`` — a "same" convolution and a 2×2 pool keep them, so the product of the
four θ (as 3×3 matrices, first to last) maps the last transformer's output onto the input image
(:func:`composite_theta`: the paper's Table 2 right, (b)).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from stn_core.data.sequences import MAX_DIGITS, NULL, SIZES
from stn_core.stn import SpatialTransformer

#: Model name → where its transformers sit.
SEQUENCE_MODELS = {"seq-cnn": "none", "seq-st-single": "input", "seq-st-multi": "first 4 conv layers"}
#: Model name → its transform (the checkpoint JSON's "transform").
SEQUENCE_TRANSFORMS = {"seq-cnn": None, "seq-st-single": "affine", "seq-st-multi": "affine"}
#: Output channels of the 4 conv blocks, and their kernel sizes.
CHANNELS = (32, 48, 64, 96)
KERNELS = (5, 5, 3, 3)
HIDDEN = 256
LOC_HIDDEN = 32


class SequenceViews(NamedTuple):
    """What a sequence model computed for ``x (N, 1, S, S)``: ``length_logits (N, 5)`` (lengths 1..5),
    ``digit_logits (N, 5, 10)``; per transformer (none for ``seq-cnn``): ``thetas`` ``(N, 2, 3)``, the
    map it warped ``st_inputs`` ``(N, C, h, w)`` and its output ``st_outputs``."""

    length_logits: torch.Tensor
    digit_logits: torch.Tensor
    thetas: list[torch.Tensor]
    st_inputs: list[torch.Tensor]
    st_outputs: list[torch.Tensor]


def fc_localisation_pooled(channels: int, side: int, pool: int, hidden: int = LOC_HIDDEN) -> nn.Sequential:
    """``(N, channels, side, side)`` → ``(N, hidden)``: an average pool to ``min(pool, side)``² then FC ``hidden``."""
    p = min(int(pool), int(side))
    return nn.Sequential(nn.AdaptiveAvgPool2d(p), nn.Flatten(), nn.Linear(channels * p * p, hidden),
                         nn.ReLU(inplace=True))


def composite_theta(thetas: list[torch.Tensor]) -> torch.Tensor:
    """The product ``θ₁ θ₂ … θ_k`` of affine maps ``(N, 2, 3)`` (first transformer first) as ``(N, 2, 3)``:
    where the last transformer's output grid lies in the first one's input."""
    if not thetas:
        raise ValueError("composite_theta needs at least one θ")
    n = thetas[0].shape[0]
    row = thetas[0].new_tensor([0.0, 0.0, 1.0]).expand(n, 1, 3)
    m = torch.cat([thetas[0], row], 1)
    for t in thetas[1:]:
        m = m @ torch.cat([t, row], 1)
    return m[:, :2]


class SequenceNet(nn.Module):
    """A digit-string reader: optional transformers → 4 conv blocks → FC → length and digit heads.
    ``channels`` / ``hidden``: other widths (the cost benchmark's wider variant; checkpoints use the defaults)."""

    def __init__(self, name: str = "seq-cnn", input_size: int = 64, channels: tuple[int, ...] = CHANNELS,
                 hidden: int = HIDDEN) -> None:
        super().__init__()
        if name not in SEQUENCE_MODELS:
            raise ValueError(f"unknown sequence model {name!r}; choose one of {', '.join(SEQUENCE_MODELS)}")
        if int(input_size) not in SIZES.values():
            raise ValueError(f"input_size must be one of {sorted(SIZES.values())}, got {input_size}")
        s = int(input_size)
        self.name, self.input_size = name, s
        if len(channels) != len(KERNELS) or min(channels) < 1 or hidden < 1:
            raise ValueError(f"channels must be {len(KERNELS)} positive widths and hidden positive, got {channels}, {hidden}")
        chans = (1,) + tuple(int(c) for c in channels)
        self.convs = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], k, padding=k // 2) for i, k in enumerate(KERNELS))
        sides = [s // 2 ** i for i in range(len(CHANNELS))]                # input side of each conv block
        if name == "seq-st-single":
            self.transformers = nn.ModuleList([SpatialTransformer("affine", (s, s), in_channels=1, in_size=(s, s))])
        elif name == "seq-st-multi":
            self.transformers = nn.ModuleList(
                SpatialTransformer("affine", (sd, sd), fc_localisation_pooled(c, sd, 16 if i == 0 else 8))
                for i, (c, sd) in enumerate(zip(chans[:-1], sides)))
        else:
            self.transformers = nn.ModuleList()
        flat = chans[-1] * (s // 2 ** len(KERNELS)) ** 2
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(flat, int(hidden)), nn.ReLU(inplace=True))
        self.length_head = nn.Linear(int(hidden), MAX_DIGITS)
        self.digit_heads = nn.Linear(int(hidden), MAX_DIGITS * 10)
        self.config = {"model": name, "transform": SEQUENCE_TRANSFORMS[name], "input_size": s,
                       "num_classes": 10}

    def _check(self, x: torch.Tensor) -> None:
        s = self.input_size
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1:] != (1, s, s):
            raise ValueError(f"x must have shape (N, 1, {s}, {s}), got {tuple(getattr(x, 'shape', ()))}")

    def views(self, x: torch.Tensor) -> SequenceViews:
        """Every intermediate for drawing (:class:`SequenceViews`)."""
        self._check(x)
        thetas, ins, outs = [], [], []
        h = x
        for i, conv in enumerate(self.convs):
            if self.name == "seq-st-multi" or (self.name == "seq-st-single" and i == 0):
                st = self.transformers[i]
                ins.append(h)
                h, theta, _ = st.warp(h)
                thetas.append(theta)
                outs.append(h)
            h = F.max_pool2d(F.relu(conv(h)), 2)
        z = self.fc(h)
        return SequenceViews(self.length_head(z), self.digit_heads(z).view(-1, MAX_DIGITS, 10), thetas, ins, outs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (N, 1, S, S)`` → ``(length_logits (N, 5), digit_logits (N, 5, 10))``."""
        v = self.views(x)
        return v.length_logits, v.digit_logits

    def localisation_parameters(self) -> list[nn.Parameter]:
        """The transformers' parameters (trained at a lower learning rate)."""
        return list(self.transformers.parameters())


def sequence_loss(length_logits: torch.Tensor, digit_logits: torch.Tensor, digits: torch.Tensor,
                  length: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of −log p(L) − Σ_{k<L} log p(digit k) (positions past the end are ignored)."""
    n = length.shape[0]
    nll_len = F.cross_entropy(length_logits.float(), length - 1, reduction="sum")
    nll_dig = F.cross_entropy(digit_logits.float().reshape(-1, 10), digits.reshape(-1), ignore_index=NULL,
                              reduction="sum")
    return (nll_len + nll_dig) / n


def read_strings(length_logits: torch.Tensor, digit_logits: torch.Tensor) -> torch.Tensor:
    """Predicted ``digits (N, 5)`` with ``NULL`` past the predicted length."""
    length = length_logits.argmax(1) + 1
    pred = digit_logits.argmax(2)
    past = torch.arange(MAX_DIGITS, device=pred.device).view(1, -1) >= length.view(-1, 1)
    return pred.masked_fill(past, NULL)


def sequence_errors(length_logits: torch.Tensor, digit_logits: torch.Tensor, digits: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: the string was read wrong (any digit or the length)."""
    return (read_strings(length_logits, digit_logits) != digits).any(1)


def build_sequence_model(name: str, input_size: int = 64) -> SequenceNet:
    """``seq-cnn``, ``seq-st-single`` or ``seq-st-multi`` for ``input_size`` 64 (tight) or 128 (loose) crops."""
    return SequenceNet(name, input_size)


def sequence_model_from_meta(meta: dict) -> SequenceNet:
    """The untrained model a sequence checkpoint's metadata describes."""
    return build_sequence_model(meta["model"], meta["input_size"])


__all__ = ["CHANNELS", "SEQUENCE_MODELS", "SEQUENCE_TRANSFORMS", "SequenceNet", "SequenceViews", "build_sequence_model", "composite_theta",
           "fc_localisation_pooled", "read_strings", "sequence_errors", "sequence_loss", "sequence_model_from_meta"]
