"""Every model family of STN Lab, and one way to rebuild any of them from checkpoint metadata.

- :mod:`stn_core.models.mnist`: Table 1's FCN / CNN / ST-FCN / ST-CNN (affine, projective, TPS), the
  deformable-conv CNN and the MNIST-addition 2×ST-FCN (:func:`build_model`).
- :mod:`stn_core.models.cub`: the CUB-200-2011 N×ST-CNN on a MobileNetV2 backbone (:func:`build_cub_model`).
- :mod:`stn_core.models.volume`: volume classifiers with and without a 3-D transformer (:func:`build_volume_model`).
- :mod:`stn_core.models.sequence`: digit-string readers with transformers in the conv stack, Table 2's
  analogue (:func:`build_sequence_model`).
- :class:`stn_core.colocalisation.CoLocBank`: the co-localisation nets of the appendix, one per digit class.

Each model declares its localisation net's weights with ``localisation_parameters()`` (the training
loop gives them their own learning-rate multiplier).
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from .cub import CUB_MODEL_NAMES, CubNet, build_cub_model
from .cub import model_from_meta as cub_model_from_meta
from .mnist import (ALL_MODEL_NAMES, EXTRA_MODEL_NAMES, MODEL_NAMES, MODELS, ST_TRANSFORMS, TPS_POINTS, DeformableCNN,
                    DistortedMNISTNet, ModelViews, ParallelSTNet, build_model, count_params, solve_width)
from .sequence import SEQUENCE_TRANSFORMS, SequenceNet, build_sequence_model, sequence_model_from_meta
from .volume import VOLUME_MODELS, VolumeNet, build_volume_model, volume_model_from_meta

#: The co-localisation bank (:class:`stn_core.colocalisation.CoLocBank`) and its one transform.
COLOC_MODELS = {"coloc-bank": "attention"}

__all__ = [
    "ALL_MODEL_NAMES", "COLOC_MODELS", "CUB_MODEL_NAMES", "EXTRA_MODEL_NAMES", "MODEL_NAMES", "MODELS", "ST_TRANSFORMS",
    "SEQUENCE_TRANSFORMS", "TPS_POINTS", "VOLUME_MODELS", "CubNet", "SequenceNet", "DeformableCNN", "ModelViews", "DistortedMNISTNet", "ParallelSTNet",
    "VolumeNet", "build_cub_model", "build_model", "build_sequence_model", "build_volume_model", "count_params", "model_from_meta",
    "solve_width", "volume_model_from_meta",
]


def model_from_meta(meta: dict[str, Any]) -> nn.Module:
    """An untrained model with the architecture a checkpoint's metadata describes (``meta["model"]``,
    ``"transform"``, ``"input_size"``, ``"num_classes"``, ``"arch"``). ValueError/TypeError if it cannot."""
    if str(meta["model"]).startswith("cub-"):  # CUB birds: classes and sizes from the metadata
        return cub_model_from_meta(meta)
    if meta["model"] in VOLUME_MODELS:
        return volume_model_from_meta(meta)
    if meta["model"] in SEQUENCE_TRANSFORMS:
        return sequence_model_from_meta(meta)
    if meta["model"] in COLOC_MODELS:
        from stn_core.colocalisation import bank_from_meta  # not at import: it needs stn_core.data

        return bank_from_meta(meta)
    arch = meta.get("arch") or {}
    optional = {k: arch[k] for k in ("target_params", "modulated", "in_channels") if k in arch}
    return build_model(meta["model"], meta["transform"], meta["input_size"], meta["num_classes"],
                       width=arch.get("width"), downsample=arch.get("downsample"), **optional)
