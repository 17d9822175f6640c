"""CUB-200-2011 bird classifiers: a fine-tuned ImageNet backbone and N×ST-CNN (paper Table 3).

Reduced-scale analogue of the paper's birds experiment (which used Inception-BN at 448 px):

* backbone: torchvision MobileNetV2 (1280-d pooled features), ImageNet weights loaded from a
  local float state_dict (default ``<repo>/../shared/data/weights/mobilenet_v2_imagenet_float.pth``,
  or ``$STN_LAB_MOBILENET``), or torchvision's own weight enum (``"torchvision"``; needs internet),
  or random init (``None``, for tests).
* ``n_st = 0`` (``cub-baseline``): backbone on the whole image + a new linear classifier.
* ``n_st = 2 / 4`` (``cub-2st`` / ``cub-4st``): a localisation net on backbone features of the
  whole image (``loc_size``: down-sampled to that side first, the paper's 448 → 224) predicts one
  translation (tx, ty) per transformer (``learn_scale``: also its scale s in [0.2, 1], starting at
  ``crop_scale``, the box kept at most half outside the image); otherwise the scale is FIXED at
  ``crop_scale`` (default 0.5: each box is half the image width and height, a quarter of its
  area, like the paper's fixed-scale attention). ``loc_head``: ``"mlp"`` (pooled features → 2-layer
  MLP, the default) or ``"heatmap"`` (:class:`HeatmapLocaliser`, soft-argmax over the feature cells);
  ``loc_init``: boxes start ``"tiled"`` (below) or all on the image ``"centre"``. Translations are bounded,
  ``t = (1 - s/2) · tanh(raw)``, so at most half of a box can leave the image. The last layer
  starts with zero weights and a bias that TILES the boxes over the image (2: left / right
  halves, centred vertically; 4: the 2×2 quadrants), as in the paper. Each crop is sampled
  bilinearly (stn_core ``attention_grid`` + ``sample``, zero padding, in [0, 1] before
  normalisation) at ``crop_size`` (default 112 = native resolution of a half-scale crop of a
  224 image, like the paper's 448 → 224) and goes through the SAME backbone (weights shared
  across branches and with the localisation features: the paper used separate Inception
  branches, too slow on a CPU). Branch features are concatenated for the classifier and
  scaled by 1/√N, so the classifier input has the baseline's norm and one learning rate suits
  baseline, 2×ST and 4×ST alike.
  The localisation features are computed without gradient (``detach_loc_features``): the
  backbone learns from the crops, the localisation head learns where to put them.
* BatchNorm layers of the backbone always stay in eval mode (running statistics frozen), also
  while training: the CPU batches are small (16), so batch statistics would be noisy.

``model(x)``: x RGB float (N, 3, H, W) in [0, 1] at ``input_size``; ImageNet mean/std are
applied inside. Returns logits over ``classes`` (official class ids, in order).
``model.views(x)`` (:class:`CubViews`): the logits with the attention parameters (N, n_st, 3)
(s, tx, ty) and boxes (N, n_st, 4) (x0, y0, x1, y1) in normalised [-1, 1] input coordinates
(align_corners=False convention); None for the baseline. The model keeps no state between calls.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from stn_core.data.common import repo_root
from stn_core.localisers import HeatmapLocaliser
from stn_core.grad_smoothing import sample_smoothed_grad
from stn_core.torchvision_lazy import mobilenet_v2
from stn_core.transforms import attention_grid

CUB_MODEL_NAMES = ("cub-baseline", "cub-2st", "cub-4st")
N_ST = {"cub-baseline": 0, "cub-2st": 2, "cub-4st": 4}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_FILE = "mobilenet_v2_imagenet_float.pth"
ENV_WEIGHTS = "STN_LAB_MOBILENET"
FEAT_DIM = 1280
#: Range of a learned attention scale (``learn_scale``): a box from a fifth of the image to all of it.
LEARNED_SCALE = (0.2, 1.0)
BOX_COLOURS = ("red", "green", "blue", "orange")
#: Where the boxes start (the localisation net's last-layer bias): tiled over the image, or all on its centre.
LOC_INITS = ("tiled", "centre")
#: Localisation heads: "mlp" (1×1 conv, 4×4 pooling, 2-layer MLP regressing (tx, ty)) or "heatmap"
#: (:class:`HeatmapLocaliser`: a score map per transformer over the feature cells, soft-argmax).
LOC_HEADS = ("mlp", "heatmap")
#: Where the crops are embedded: "shared" — one backbone for every crop and the localisation net (ours, cheaper);
#: "separate" — one backbone per transformer, all from the same ImageNet weights (the paper's Inception branches).
BRANCHES = ("shared", "separate")
class WeightsError(ValueError):
    """The ImageNet backbone weights are missing or do not fit MobileNetV2."""


def default_weights_path() -> Path:
    """``$STN_LAB_MOBILENET`` or ``<repo>/../shared/data/weights/mobilenet_v2_imagenet_float.pth``."""
    env = os.environ.get(ENV_WEIGHTS, "").strip()
    if env:
        return Path(env).expanduser()
    return repo_root().parent / "shared" / "data" / "weights" / WEIGHTS_FILE


def mobilenet_v2_features(weights: str | os.PathLike | None = "default") -> nn.Module:
    """MobileNetV2 ``features`` (conv trunk, 1280 channels at stride 32).

    weights: ``"default"`` (the local float file, see :func:`default_weights_path`), a path to a
    float state_dict, ``"torchvision"`` (``MobileNet_V2_Weights.IMAGENET1K_V1``, downloads), or
    None (random init, for tests)."""
    if weights == "torchvision":
        return mobilenet_v2(imagenet_download=True).features
    net = mobilenet_v2()
    if weights is None:
        return net.features
    path = default_weights_path() if weights == "default" else Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"{path}: ImageNet MobileNetV2 weights not found. Put the float state_dict there (see "
            f"../shared/data/weights/SOURCE.md), set ${ENV_WEIGHTS}, pass --backbone-weights PATH, or "
            f"use --backbone-weights torchvision (downloads torchvision's IMAGENET1K_V1 weights).")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling/format problem
        raise WeightsError(f"{path}: not a loadable float state_dict ({type(e).__name__}: {e})") from None
    if not isinstance(sd, dict):
        raise WeightsError(f"{path}: expected a state_dict (dict of tensors), got {type(sd).__name__}")
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{path}: weights do not fit torchvision's mobilenet_v2 ({str(e)[:300]})") from None
    return net.features


def tiled_translations(n_st: int) -> list[tuple[float, float]]:
    """Initial box centres (tx, ty) in [-1, 1]: 1 → centre, 2 → left/right halves, 4 → 2×2 quadrants."""
    if n_st == 1:
        return [(0.0, 0.0)]
    if n_st == 2:
        return [(-0.5, 0.0), (0.5, 0.0)]
    if n_st == 4:
        return [(-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5)]
    raise ValueError(f"n_st must be 1, 2 or 4 for a tiled start, got {n_st}")


class CubViews(NamedTuple):
    """A CUB model's ``logits (N, len(classes))`` with its attention ``params (N, n_st, 3)`` (s, tx, ty)
    and ``boxes (N, n_st, 4)`` (x0, y0, x1, y1), normalised; both None for the baseline."""

    logits: torch.Tensor
    params: Optional[torch.Tensor] = None
    boxes: Optional[torch.Tensor] = None


class CubNet(nn.Module):
    """Backbone classifier (``n_st = 0``) or N×ST-CNN with N parallel attention transformers."""

    def __init__(self, classes: Sequence[int], n_st: int = 0, input_size: int = 224, crop_size: int = 112,
                 crop_scale: float = 0.5, loc_hidden: int = 128, dropout: float = 0.2,
                 backbone_weights: str | os.PathLike | None = "default", backbone: str = "mobilenet_v2",
                 detach_loc_features: bool = True, loc_size: int | None = None, learn_scale: bool = False,
                 loc_init: str = "tiled", loc_head: str = "mlp", branches: str = "shared") -> None:
        super().__init__()
        if backbone != "mobilenet_v2":
            raise ValueError(f"unknown backbone {backbone!r}; available: mobilenet_v2")
        if n_st not in (0, 1, 2, 4):
            raise ValueError(f"n_st must be 0 (baseline), 1, 2 or 4, got {n_st}")
        if not 0.05 <= crop_scale <= 1.0:
            raise ValueError(f"crop_scale must be in [0.05, 1], got {crop_scale}")
        if input_size < 32 or (n_st and crop_size < 32):
            raise ValueError(f"input_size and crop_size must be at least 32 px, got {input_size}, {crop_size}")
        self.classes = [int(c) for c in classes]
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must be a non-empty list of distinct class ids")
        if loc_init not in LOC_INITS:
            raise ValueError(f"loc_init must be one of {', '.join(LOC_INITS)}, got {loc_init!r}")
        self.loc_init = loc_init
        if loc_head not in LOC_HEADS:
            raise ValueError(f"loc_head must be one of {', '.join(LOC_HEADS)}, got {loc_head!r}")
        if loc_head == "heatmap" and learn_scale:
            raise ValueError("the heatmap localisation head places fixed-scale boxes; use loc_head='mlp' with learn_scale")
        self.loc_head = loc_head
        if branches not in BRANCHES:
            raise ValueError(f"branches must be one of {', '.join(BRANCHES)}, got {branches!r}")
        self.branches = branches if n_st else "shared"
        if loc_size is not None and not 32 <= int(loc_size) <= int(input_size):
            raise ValueError(f"loc_size must be between 32 and input_size ({input_size}), got {loc_size}")
        self.n_st = n_st
        self.input_size, self.crop_size, self.crop_scale = int(input_size), int(crop_size), float(crop_scale)
        self.loc_size = None if loc_size is None or int(loc_size) == self.input_size else int(loc_size)
        self.learn_scale = bool(learn_scale) and n_st > 0
        self.detach_loc_features = detach_loc_features
        #: σ (px of the input) of the boxes' smoothed gradient while training (0: the paper's exact sampler
        #: gradient); a training setting, not part of the architecture (inference is the same either way)
        self.grad_blur = 0.0
        self.features = mobilenet_v2_features(backbone_weights)
        # the paper: each transformer's crop goes through its own Inception branch; "shared" (ours, cheaper on a
        # CPU): every crop through self.features, which also serves the localisation net
        self.crop_features = (nn.ModuleList(mobilenet_v2_features(backbone_weights) for _ in range(n_st))
                              if self.branches == "separate" else None)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        n_branch = max(1, n_st)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(FEAT_DIM * n_branch, len(self.classes)))
        nn.init.normal_(self.classifier[1].weight, 0.0, 0.01)
        nn.init.zeros_(self.classifier[1].bias)
        self.loc: Optional[nn.Module] = None
        if n_st and loc_head == "heatmap":
            self.loc = HeatmapLocaliser(FEAT_DIM, n_st)
            self.reset_localisation()
        elif n_st:
            # localisation net: 1x1 conv on the 1280-channel map, 4x4 spatial pooling, 2-layer MLP
            self.loc = nn.Sequential(
                nn.Conv2d(FEAT_DIM, 64, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                nn.Linear(64 * 16, loc_hidden), nn.ReLU(inplace=True),
                nn.Linear(loc_hidden, (3 if self.learn_scale else 2) * n_st))
            self.reset_localisation()
        self.config = {"name": {0: "cub-baseline", 1: "cub-1st", 2: "cub-2st", 4: "cub-4st"}[n_st],
                       "transform": "attention" if n_st else None, "input_size": self.input_size,
                       "num_classes": len(self.classes)}

    # ------------------------------------------------------------------ setup
    @property
    def t_bound(self) -> float:
        """Largest |tx|, |ty| of a fixed-scale box: it may leave the image by at most half its size."""
        return 1.0 - self.crop_scale / 2

    def _scale_logit(self) -> float:
        """The raw scale output that gives ``crop_scale`` (learned scale: s = lo + (hi − lo)·sigmoid(raw))."""
        lo, hi = LEARNED_SCALE
        p = min(max((self.crop_scale - lo) / (hi - lo), 1e-4), 1 - 1e-4)
        return math.log(p / (1 - p))  # plain floats: models are also built on the meta device (load_model)

    def reset_localisation(self) -> None:
        """Zero last-layer weights, bias = the start boxes at ``crop_scale``: tiled (see
        :func:`tiled_translations`) or all centred (``loc_init="centre"``)."""
        with torch.no_grad():
            start = tiled_translations(self.n_st) if self.loc_init == "tiled" else [(0.0, 0.0)] * self.n_st
            t = torch.tensor(start, dtype=torch.float32) / self.t_bound
            raw = torch.atanh(t.clamp(-0.999, 0.999))                     # (n_st, 2)
            if isinstance(self.loc, HeatmapLocaliser):
                nn.init.zeros_(self.loc.score.weight)
                nn.init.zeros_(self.loc.score.bias)
                self.loc.start.copy_(raw)
                return
            last = self.loc[-1]
            nn.init.zeros_(last.weight)
            if self.learn_scale:
                raw = torch.cat([torch.full((self.n_st, 1), self._scale_logit()), raw], 1)
            last.bias.copy_(raw.flatten())

    def localisation_parameters(self) -> list[nn.Parameter]:
        return list(self.loc.parameters()) if self.loc is not None else []

    def head_parameters(self) -> list[nn.Parameter]:
        """The new (not pretrained) layers: classifier + localisation net."""
        return list(self.classifier.parameters()) + self.localisation_parameters()

    def train(self, mode: bool = True) -> "CubNet":
        """As nn.Module.train, but the backbones' BatchNorm layers always stay in eval mode."""
        super().train(mode)
        backbones = [self.features, *(self.crop_features or [])]
        for m in (m for b in backbones for m in b.modules()):
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    # ------------------------------------------------------------------ forward
    def _embed(self, x01: torch.Tensor, features: nn.Module | None = None) -> torch.Tensor:
        """(N, 3, h, w) in [0, 1] → pooled features (N, 1280) of ``features`` (default: the shared backbone)."""
        f = (self.features if features is None else features)((x01 - self.mean) / self.std)
        return F.adaptive_avg_pool2d(f, 1).flatten(1)

    def attention_params(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] → (N, n_st, 3) attention parameters (s, tx, ty)."""
        if self.loc_size is not None:  # the localisation net sees the image down-sampled (the paper: 448 → 224)
            x = F.interpolate(x, size=(self.loc_size, self.loc_size), mode="bilinear", align_corners=False,
                              antialias=True)
        xn = (x - self.mean) / self.std
        if self.detach_loc_features:
            with torch.no_grad():
                fmap = self.features(xn)
        else:
            fmap = self.features(xn)
        raw = self.loc(fmap.float() if isinstance(self.loc, HeatmapLocaliser) else fmap)
        if not self.learn_scale:
            t = self.t_bound * torch.tanh(raw).view(-1, self.n_st, 2)
            return torch.cat([torch.full_like(t[..., :1], self.crop_scale), t], -1)
        raw = raw.view(-1, self.n_st, 3)
        lo, hi = LEARNED_SCALE
        s = lo + (hi - lo) * torch.sigmoid(raw[..., :1])
        return torch.cat([s, (1.0 - s / 2) * torch.tanh(raw[..., 1:])], -1)

    @staticmethod
    def params_to_boxes(params: torch.Tensor) -> torch.Tensor:
        """(…, 3) (s, tx, ty) → (…, 4) boxes (x0, y0, x1, y1) in normalised input coords."""
        s, tx, ty = params[..., 0], params[..., 1], params[..., 2]
        return torch.stack([tx - s, ty - s, tx + s, ty + s], -1)

    def crops(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Crops (N, n_st, 3, c, c) of x (N, 3, H, W) in [0, 1] for params (N, n_st, 3).

        With ``self.grad_blur`` σ > 0 [ours, a training option] the crops are the same, but while autograd
        records, the boxes' gradient is taken on x blurred by σ px (:mod:`stn_core.grad_smoothing`)."""
        n, k = params.shape[:2]
        grid = attention_grid(params.reshape(n * k, 3), (self.crop_size, self.crop_size))
        sigma = self.grad_blur if torch.is_grad_enabled() and grid.requires_grad else 0.0
        v = sample_smoothed_grad(x, grid, sigma, repeat=k)
        return v.view(n, k, x.shape[1], self.crop_size, self.crop_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, H, W) RGB in [0, 1] → logits (N, len(classes))."""
        return self.views(x).logits

    def views(self, x: torch.Tensor) -> CubViews:
        """The logits with the attention parameters and boxes that produced them (:class:`CubViews`)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images (N, 3, H, W), got {tuple(x.shape)}")
        if self.n_st == 0:
            return CubViews(self.classifier(self._embed(x)))
        params = self.attention_params(x)
        return CubViews(self.logits_at(x, params), params, self.params_to_boxes(params))

    def logits_at(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Logits (N, len(classes)) of x (N, 3, H, W) in [0, 1] read through the boxes ``params`` (N, n_st, 3)
        (s, tx, ty), whatever predicted them: the classification half of :meth:`views`, differentiable in
        ``params`` (e.g. the loss's pull on each box)."""
        n = x.shape[0]
        if self.crop_features is None:
            v = self.crops(x, params).flatten(0, 1)  # (N·n_st, 3, c, c): one batch through the shared backbone
            feats = self._embed(v).view(n, self.n_st * FEAT_DIM)
        else:  # crop j through branch j
            v = self.crops(x, params)
            feats = torch.cat([self._embed(v[:, j], b) for j, b in enumerate(self.crop_features)], 1)
        return self.classifier(feats * self.n_st ** -0.5)

    def use_channels_last(self) -> None:
        self.to(memory_format=torch.channels_last)


def build_cub_model(name: str, classes: Sequence[int], input_size: int = 224, crop_size: int = 112,
                    crop_scale: float = 0.5, backbone_weights: str | os.PathLike | None = "default",
                    **kw: Any) -> CubNet:
    """``cub-baseline`` / ``cub-2st`` / ``cub-4st`` → :class:`CubNet`."""
    if name not in N_ST:
        raise ValueError(f"unknown CUB model {name!r}; choose one of {', '.join(CUB_MODEL_NAMES)}")
    return CubNet(classes, N_ST[name], input_size=input_size, crop_size=crop_size, crop_scale=crop_scale,
                  backbone_weights=backbone_weights, **kw)


def arch_of(model: CubNet) -> dict[str, Any]:
    """The JSON-able architecture description stored as meta["extra"]["arch"]."""
    return {"backbone": "mobilenet_v2", "n_st": model.n_st, "crop_size": model.crop_size,
            "crop_scale": model.crop_scale,
            "loc_hidden": model.loc[-1].in_features if isinstance(model.loc, nn.Sequential) else None,
            "input_size": model.input_size, "loc_size": model.loc_size, "learn_scale": model.learn_scale,
            "loc_init": model.loc_init if model.n_st else None, "loc_head": model.loc_head if model.n_st else None,
            "branches": model.branches}


def model_from_meta(meta: dict[str, Any]) -> CubNet:
    """Rebuild an (untrained, random-init) CubNet described by checkpoint metadata."""
    extra = meta.get("extra") or {}
    arch = extra.get("arch") or {}
    classes = meta.get("classes")
    if not isinstance(classes, list) or len(classes) != meta["num_classes"]:
        raise ValueError("a CUB checkpoint needs 'classes' (list of official class ids) of length num_classes")
    kw = {}
    if arch.get("loc_hidden"):
        kw["loc_hidden"] = int(arch["loc_hidden"])
    if arch.get("loc_size"):
        kw["loc_size"] = int(arch["loc_size"])
    if arch.get("learn_scale"):
        kw["learn_scale"] = True
    if arch.get("loc_head"):
        kw["loc_head"] = str(arch["loc_head"])
    if arch.get("loc_init"):
        kw["loc_init"] = str(arch["loc_init"])
    if arch.get("branches"):
        kw["branches"] = str(arch["branches"])
    return build_cub_model(meta["model"], [int(c) for c in classes], input_size=int(meta["input_size"]),
                           crop_size=int(arch.get("crop_size", 112)), crop_scale=float(arch.get("crop_scale", 0.5)),
                           backbone_weights=None, **kw)


def boxes_to_pixels(boxes: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Normalised (…, 4) boxes (align_corners=False) → pixel coords (x0, y0, x1, y1) of a W×H image."""
    b = boxes.clone().double() if isinstance(boxes, torch.Tensor) else torch.as_tensor(boxes, dtype=torch.float64)
    b[..., 0::2] = (b[..., 0::2] + 1) * width / 2
    b[..., 1::2] = (b[..., 1::2] + 1) * height / 2
    return b


__all__ = ["BRANCHES", "BOX_COLOURS", "CUB_MODEL_NAMES", "CubNet", "HeatmapLocaliser", "LEARNED_SCALE", "LOC_HEADS", "LOC_INITS", "N_ST", "WeightsError", "arch_of", "boxes_to_pixels",
           "build_cub_model", "default_weights_path", "mobilenet_v2_features", "model_from_meta",
           "tiled_translations"]
