"""The distorted-MNIST models of the paper (Table 1): FCN, CNN, ST-FCN, ST-CNN; and DCN.

Paper (appendix): all models have about the same number of parameters and three weight
layers in the classifier, ReLU, softmax (here: logits; the loss applies the softmax).

* FCN: FC → ReLU → FC → ReLU → FC (two hidden layers of ``width`` units).
* CNN: conv 9×9 (``width`` filters) → max-pool 2×2 → ReLU → conv 7×7 (``width``) → max-pool
  2×2 → ReLU → FC. (Pool-then-ReLU equals ReLU-then-pool exactly — both are monotone —
  and is 4× cheaper.) Convolutions are 'valid'; when the input is smaller than 28×28
  (the 21×21 ST output of RTS) conv 1 gets padding 4 ('same'), so the conv 2 map is still
  at least 4×4 [ours]. Conv 1 is a :class:`stn_core.fold_conv.FoldGradConv2d`: ``nn.Conv2d`` with a
  faster input gradient on a CPU, which the ST-CNN's transformer needs (the CNN's data input does not).
* ST-FCN: a spatial transformer at the input whose localisation net is FC 32 → FC 32
  (:func:`stn_core.fc_localisation`) [notes], then the FCN.
* ST-CNN: a spatial transformer whose localisation net is 2× max-pool → conv 5×5 (20) →
  max-pool → conv 5×5 (20) → FC 20 (:func:`stn_core.conv_localisation`) [paper], then the CNN.

* DCN [ours, issue 7]: the CNN with both convolutions deformable (:class:`stn_core.dcn.DeformConv2d`,
  DCNv1 by default, DCNv2 modulation with ``modulated=True``): conv 9×9 → max-pool → ReLU →
  conv 7×7 → max-pool → ReLU → FC. Each offset predictor is a zero-initialised 3×3
  convolution dilated over its layer's window, so at initialisation the DCN *is* the CNN
  (same layout, same init). Deforming both layers (rather than only the second, as DCN
  does for the top of deep nets) is the counterpart of the ST-CNN: there the transformer
  resamples the input image before conv 1; here conv 1 resamples the image and conv 2 the
  pooled features, with offsets free at every position instead of a global warp.

MNIST addition [paper appendix, issue 8]: every model takes ``in_channels=2`` (one digit per
channel) and has ``num_classes=19``; the FCN/CNN's first layer and the localisation nets see both
channels. ``st-fcn`` warps both channels with one θ. ``2st-fcn`` (:class:`ParallelSTNet`) has two
transformers in parallel, each with its own FC localisation net on both channels, each warping
both channels; their 2-channel outputs are concatenated (4 channels) and 2× average-pooled for the
FCN. Parameter counts are equalised with the same width solver.

The transformer's output has the input's size; for inputs of 42×42 or more (RTS) it is
2× down-sampled by average pooling before the classifier (42 → 21) [paper]. The width of
each classifier is solved so that the *whole* model has about ``target_params`` weights
(default 400k [notes]), so parameter counts agree to well under 1 %.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from stn_core.dcn import DeformConv2d
from stn_core.fold_conv import FoldGradConv2d
from stn_core.stn import SpatialTransformer, conv_localisation, fc_localisation

#: The models of the paper's Table 1.
MODEL_NAMES = ("fcn", "cnn", "st-fcn", "st-cnn")
#: Models beyond Table 1 (issue 7: deformable convolution; issue 8: MNIST addition's 2×ST-FCN).
EXTRA_MODEL_NAMES = ("dcn", "2st-fcn")
#: Parallel transformers of the "2st-fcn" model.
N_PARALLEL_ST = 2
#: Every name :func:`build_model` accepts.
ALL_MODEL_NAMES = MODEL_NAMES + EXTRA_MODEL_NAMES
ST_TRANSFORMS = ("affine", "projective", "tps")
DEFAULT_TARGET_PARAMS = 400_000
TPS_POINTS = 16
ST_FCN_HIDDEN = 32
ST_CNN_FILTERS, ST_CNN_HIDDEN = 20, 20


def count_params(model: nn.Module) -> int:
    """Number of trainable weights."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def default_downsample(input_size: int) -> int:
    """ST output down-sampling factor: 2 for inputs of 42×42 or more (RTS, TC), else 1."""
    return 2 if input_size >= 42 else 1


def _cnn_padding(side: int) -> int:
    """Padding of conv 1: 0 ('valid') unless the conv 2 map would be smaller than 4×4."""
    for pad in range(0, 5):
        if (side + 2 * pad - 8) // 2 - 6 >= 4:
            return pad
    return 4


def fcn_classifier(side: int, width: int, num_classes: int, in_channels: int = 1) -> nn.Sequential:
    """FCN: ``(N, in_channels, side, side)`` → logits ``(N, num_classes)``."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * side * side, width), nn.ReLU(inplace=True),
                         nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, num_classes))


def cnn_classifier(side: int, width: int, num_classes: int, in_channels: int = 1) -> nn.Sequential:
    """CNN: ``(N, in_channels, side, side)`` → logits ``(N, num_classes)``."""
    pad = _cnn_padding(side)
    s = ((side + 2 * pad - 8) // 2 - 6) // 2
    if s < 1:
        raise ValueError(f"input {side}×{side} is too small for the CNN (conv 9×9, pool, conv 7×7, pool)")
    return nn.Sequential(
        FoldGradConv2d(in_channels, width, 9, padding=pad), nn.MaxPool2d(2), nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 7), nn.MaxPool2d(2), nn.ReLU(inplace=True),
        nn.Flatten(), nn.Linear(width * s * s, num_classes))


def dcn_classifier(side: int, width: int, num_classes: int, modulated: bool = False) -> nn.Sequential:
    """DCN: the CNN with both convolutions deformable; ``(N, 1, side, side)`` → logits."""
    pad = _cnn_padding(side)
    s = ((side + 2 * pad - 8) // 2 - 6) // 2
    if s < 1:
        raise ValueError(f"input {side}×{side} is too small for the DCN (conv 9×9, pool, conv 7×7, pool)")
    return nn.Sequential(
        DeformConv2d(1, width, 9, padding=pad, modulated=modulated), nn.MaxPool2d(2), nn.ReLU(inplace=True),
        DeformConv2d(width, width, 7, modulated=modulated), nn.MaxPool2d(2), nn.ReLU(inplace=True),
        nn.Flatten(), nn.Linear(width * s * s, num_classes))


class ModelViews(NamedTuple):
    """What a distorted-MNIST model computed for a batch ``x (N, C, S, S)``, for drawing and analysis:

    * ``logits (N, num_classes)``, the same as ``model(x)``;
    * ``outputs``: the transformer output V before pooling, ``(N, C, S, S)``; for T parallel
      transformers ``(N, T, C, S, S)``; None without a transformer;
    * ``theta``: θ in the transform's natural form, ``(N, …)`` or ``(N, T, …)``; ``grid`` the sampling
      grid ``(N, S, S, 2)`` or ``(N, T, S, S, 2)``; None without a transformer;
    * ``offsets``: for a DCN, each deformable layer's ``offset (N, 2·k·k, H', W')`` (conv 1, conv 2);
      empty otherwise.

    Tensors are part of the autograd graph unless computed under ``torch.no_grad`` / inference mode.
    """

    logits: torch.Tensor
    outputs: torch.Tensor | None = None
    theta: torch.Tensor | None = None
    grid: torch.Tensor | None = None
    offsets: tuple[torch.Tensor, ...] = ()


class DistortedMNISTNet(nn.Module):
    """[spatial transformer] → [2× average pooling] → classifier.

    ``forward(x (N, 1, S, S))`` → logits ``(N, num_classes)``; :meth:`views` → :class:`ModelViews`
    (logits with the transformer's output, θ and grid). ``.transformer`` is the
    :class:`~stn_core.SpatialTransformer` (or None); ``.config`` holds the arguments of :func:`build_model`.
    """

    def __init__(self, classifier: nn.Module, transformer: SpatialTransformer | None,
                 downsample: int, config: dict) -> None:
        super().__init__()
        self.transformer = transformer
        self.classifier = classifier
        self.downsample = int(downsample)
        self.config = dict(config)
        self.channels_last = False

    def localisation_parameters(self) -> list[nn.Parameter]:
        """The localisation net's weights (trained at ``--loc-lr-mult`` × lr); empty without a transformer."""
        return list(self.transformer.parameters()) if self.transformer is not None else []

    def pooled(self, v: torch.Tensor) -> torch.Tensor:
        """What the classifier sees of ``v (N, C, S, S)``: ``(N, C, S', S')`` (S' = S / downsample)."""
        if self.downsample > 1:
            v = F.avg_pool2d(v, self.downsample)
        if self.channels_last:
            v = v.contiguous(memory_format=torch.channels_last)
        return v

    def transformed(self, x: torch.Tensor) -> torch.Tensor:
        """What the classifier sees: ``(N, 1, S', S')``."""
        return self.pooled(self.transformer(x) if self.transformer is not None else x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.transformed(x))

    def views(self, x: torch.Tensor) -> ModelViews:
        """The logits with what the transformer computed (:class:`ModelViews`), in one forward pass."""
        if self.transformer is None:
            return ModelViews(self(x))
        w = self.transformer.warp(x)
        return ModelViews(self.classifier(self.pooled(w.output)), w.output, w.theta, w.grid)

    def use_channels_last(self, on: bool = True) -> "DistortedMNISTNet":
        """Run the classifier's convolutions in channels-last memory format (faster on CPU)."""
        self.channels_last = bool(on)
        fmt = torch.channels_last if on else torch.contiguous_format
        self.classifier.to(memory_format=fmt)
        return self


class DeformableCNN(DistortedMNISTNet):
    """The DCN model: no transformer; ``deform_layers`` are its :class:`DeformConv2d` layers (conv 1,
    conv 2); :meth:`views` returns their offsets with the logits."""

    @property
    def deform_layers(self) -> list[DeformConv2d]:
        return [m for m in self.classifier if isinstance(m, DeformConv2d)]

    def offset_parameters(self) -> list[nn.Parameter]:
        """Weights of the offset (and mask) predictors — the DCN's 'localisation' weights."""
        return [p for layer in self.deform_layers for p in layer.offset_conv.parameters()]

    def localisation_parameters(self) -> list[nn.Parameter]:
        """The offset predictors play the localisation net's part (``--loc-lr-mult``)."""
        return self.offset_parameters()

    def views(self, x: torch.Tensor) -> ModelViews:
        """The logits with each deformable layer's offsets, in one forward pass."""
        y, offsets = self.transformed(x), []
        for layer in self.classifier:
            if isinstance(layer, DeformConv2d):
                d = layer.deform(y)
                y = d.output
                offsets.append(d.offset)
            else:
                y = layer(y)
        return ModelViews(y, offsets=tuple(offsets))


class ParallelSTNet(DistortedMNISTNet):
    """2×ST-FCN of the paper's MNIST addition (appendix): ``N_PARALLEL_ST`` spatial transformers
    side by side → their outputs concatenated along channels → [2× average pooling] → FCN.

    Choices [ours, following the paper's description]: each transformer has its own FC
    localisation net (FC 32 → FC 32, like the ST-FCN) that sees *all* input channels, and
    warps *all* channels with its θ, so with a 2-channel input each transformer outputs a
    2-channel image and the classifier sees ``2·C`` channels (4 for addition). Nothing tells a
    transformer which digit to take; the paper reports that each learns to attend to one.

    ``.transformer`` is None; ``.transformers`` the :class:`~stn_core.SpatialTransformer` list;
    :meth:`views` stacks their outputs ``(N, T, C, H, W)``, θ ``(N, T, 2, 3)`` and grids
    ``(N, T, H, W, 2)`` (T transformers).
    """

    def __init__(self, classifier: nn.Module, transformers: list[SpatialTransformer], downsample: int,
                 config: dict) -> None:
        super().__init__(classifier, None, downsample, config)
        self.transformers = nn.ModuleList(transformers)

    def localisation_parameters(self) -> list[nn.Parameter]:
        """Every parallel transformer's localisation net."""
        return [p for st in self.transformers for p in st.parameters()]

    def transformer_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each transformer's output ``(N, C, H, W)`` for ``x (N, C, H, W)`` (before pooling)."""
        return [st(x) for st in self.transformers]

    def transformed(self, x: torch.Tensor) -> torch.Tensor:
        """What the classifier sees: ``(N, K·C, S', S')``."""
        return self.pooled(torch.cat(self.transformer_outputs(x), 1))

    def views(self, x: torch.Tensor) -> ModelViews:
        ws = [st.warp(x) for st in self.transformers]
        logits = self.classifier(self.pooled(torch.cat([w.output for w in ws], 1)))
        return ModelViews(logits, torch.stack([w.output for w in ws], 1), torch.stack([w.theta for w in ws], 1),
                          torch.stack([w.grid for w in ws], 1))


def _normalise_transform(name: str, transform: str | None) -> str | None:
    if name in ("fcn", "cnn", "dcn"):
        if transform not in (None, "", "none"):
            raise ValueError(f"model {name!r} has no spatial transformer; transform must be None, got {transform!r}")
        return None
    if transform not in ST_TRANSFORMS:
        raise ValueError(f"model {name!r} needs transform one of {', '.join(ST_TRANSFORMS)}, got {transform!r}")
    return transform


def _make(name: str, transform: str | None, input_size: int, num_classes: int, width: int,
          downsample: int, modulated: bool = False, in_channels: int = 1) -> DistortedMNISTNet:
    if name == "2st-fcn":
        sts = [SpatialTransformer(transform, out_size=(input_size, input_size),
                                  localisation=fc_localisation(in_channels, (input_size, input_size),
                                                               hidden=ST_FCN_HIDDEN), tps_points=TPS_POINTS)
               for _ in range(N_PARALLEL_ST)]
        classifier = fcn_classifier(input_size // downsample, width, num_classes, N_PARALLEL_ST * in_channels)
        config = {"name": name, "transform": transform, "input_size": input_size, "num_classes": num_classes,
                  "width": width, "downsample": downsample, "in_channels": in_channels}
        return ParallelSTNet(classifier, sts, downsample, config)
    if in_channels != 1 and name == "dcn":
        raise ValueError("the dcn model takes one input channel")
    if name == "dcn":
        config = {"name": name, "transform": None, "input_size": input_size, "num_classes": num_classes,
                  "width": width, "downsample": 1, "modulated": bool(modulated)}
        return DeformableCNN(dcn_classifier(input_size, width, num_classes, modulated), None, 1, config)
    side_in = input_size
    side_cls = side_in // downsample
    base = "fcn" if name.endswith("fcn") else "cnn"
    classifier = (fcn_classifier if base == "fcn" else cnn_classifier)(side_cls, width, num_classes, in_channels)
    st = None
    if transform is not None:
        if base == "fcn":
            loc = fc_localisation(in_channels, (side_in, side_in), hidden=ST_FCN_HIDDEN)
        else:
            loc = conv_localisation(in_channels, (side_in, side_in), filters=ST_CNN_FILTERS, hidden=ST_CNN_HIDDEN)
        st = SpatialTransformer(transform, out_size=(side_in, side_in), localisation=loc,
                                tps_points=TPS_POINTS)
    config = {"name": name, "transform": transform, "input_size": input_size, "num_classes": num_classes,
              "width": width, "downsample": downsample}
    if in_channels != 1:  # only recorded when not 1, so Table 1 configs stay as they were
        config["in_channels"] = in_channels
    return DistortedMNISTNet(classifier, st, downsample, config)


def _classifier_count(base: str, side_cls: int, num_classes: int, width: int, modulated: bool = False,
                      in_channels: int = 1) -> int:
    """Parameter count of a classifier (``base`` fcn | cnn | dcn), closed form (checked against
    the modules by the tests)."""
    if base == "dcn":  # the CNN + two 3×3 offset predictors with 2kk (+kk modulated) outputs each
        c1, c2 = (3 if modulated else 2) * 81, (3 if modulated else 2) * 49
        return _classifier_count("cnn", side_cls, num_classes, width) + (9 * c1 + c1) + (9 * width * c2 + c2)
    if base == "fcn":
        return (in_channels * side_cls * side_cls * width + width + width * width + width + width * num_classes
                + num_classes)
    pad = _cnn_padding(side_cls)
    s = ((side_cls + 2 * pad - 8) // 2 - 6) // 2
    return 81 * in_channels * width + width + 49 * width * width + width + width * s * s * num_classes + num_classes


def _transformer_count(name: str, transform: str | None, input_size: int, num_classes: int,
                       downsample: int, in_channels: int = 1) -> int:
    """Weights outside the classifier (the transformer(s)), counted on a width-1 model."""
    if transform is None:
        return 0
    m = _make(name, transform, input_size, num_classes, 1, downsample, in_channels=in_channels)
    return count_params(m) - count_params(m.classifier)


def solve_width(name: str, transform: str | None, input_size: int, num_classes: int = 10,
                target_params: int = DEFAULT_TARGET_PARAMS, downsample: int | None = None,
                modulated: bool = False, in_channels: int = 1) -> int:
    """Classifier width whose model has the parameter count closest to ``target_params``."""
    ds = default_downsample(input_size) if downsample is None else downsample
    if name == "dcn":
        base, ds = "dcn", 1
    else:
        base = "fcn" if name.endswith("fcn") else "cnn"
    st = _transformer_count(name, transform, input_size, num_classes, ds, in_channels)
    cls_in = in_channels * (N_PARALLEL_ST if name == "2st-fcn" else 1)

    def total(w: int) -> int:
        return st + _classifier_count(base, input_size // ds, num_classes, w, modulated, cls_in)

    lo, hi = 1, 1 << 14
    while lo < hi:  # counts grow with the width: binary search the first width reaching the target
        mid = (lo + hi) // 2
        if total(mid) < target_params:
            lo = mid + 1
        else:
            hi = mid
    if lo > 1 and abs(total(lo - 1) - target_params) <= abs(total(lo) - target_params):
        return lo - 1
    return lo


def build_model(name: str, transform: str | None = None, input_size: int = 28, num_classes: int = 10,
                target_params: int = DEFAULT_TARGET_PARAMS, width: int | None = None,
                downsample: int | None = None, modulated: bool | None = None,
                in_channels: int = 1) -> DistortedMNISTNet:
    """Registry: ``name`` in fcn, cnn, st-fcn, st-cnn, dcn; ``transform`` affine | projective |
    tps for the ST models (None for fcn/cnn/dcn); ``input_size`` the side of the square input
    (28 or 42). ``width`` overrides the solved classifier width; ``downsample`` the ST output
    down-sampling (default :func:`default_downsample`); ``modulated`` DCNv2 masks (dcn only,
    default False: DCNv1). ``in_channels``: 2 for MNIST addition (the two digit channels);
    ``"2st-fcn"`` is :class:`ParallelSTNet` (two transformers, then the FCN)."""
    if name not in ALL_MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(ALL_MODEL_NAMES)}")
    if modulated and name != "dcn":
        raise ValueError(f"modulated applies to the deformable model dcn only, not {name!r}")
    modulated = bool(modulated)
    transform = _normalise_transform(name, transform)
    input_size = int(input_size)
    if input_size < 16:
        raise ValueError(f"input_size must be at least 16, got {input_size}")
    ds = default_downsample(input_size) if downsample is None else int(downsample)
    if ds < 1 or input_size % ds:
        raise ValueError(f"downsample must be a positive divisor of input_size {input_size}, got {ds}")
    if transform is None and ds != 1 and downsample is not None:
        raise ValueError("downsample only applies to the ST models (it acts on the transformer output)")
    if transform is None:
        ds = 1
    in_channels = int(in_channels)
    if in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels}")
    if width is None:
        width = solve_width(name, transform, input_size, num_classes, target_params, ds, modulated, in_channels)
    model = _make(name, transform, input_size, num_classes, int(width), ds, modulated, in_channels)
    model.config["target_params"] = int(target_params)
    return model


#: Registry: name → constructor ``(transform, input_size, num_classes, **kw)``.
MODELS: dict[str, Callable[..., DistortedMNISTNet]] = {n: partial(build_model, n) for n in ALL_MODEL_NAMES}

__all__ = ["ALL_MODEL_NAMES", "DEFAULT_TARGET_PARAMS", "DeformableCNN", "DistortedMNISTNet", "EXTRA_MODEL_NAMES",
           "MODELS", "MODEL_NAMES", "N_PARALLEL_ST", "ParallelSTNet", "ST_TRANSFORMS", "build_model", "cnn_classifier", "count_params",
           "dcn_classifier", "default_downsample", "fcn_classifier", "solve_width"]
