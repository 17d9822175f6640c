"""Small untrained checkpoints for the tests of the explorer, the DCN page, the addition page and the
browser tests: real files in the real format, made in well under a second."""

from __future__ import annotations

from pathlib import Path

import torch

from stn_core import registry as reg
from stn_core.analysis import addition as an_add
from stn_core.analysis import stn_vs_dcn as svd
from stn_core.checkpoints import save_checkpoint
from stn_core.data import tasks as ds
from stn_core.models import build_model

#: Parameter budget of the test models.
TINY = 30_000


def make_tiny_checkpoint(folder: Path, dist: str, key: str, seed: int = 0, **meta) -> Path:
    """Save an untrained small model as ``folder/mnist_<dist>_<key>`` (its transformer moved off the
    identity so θ, the grid and the region are not trivial). ``meta`` overrides the JSON fields."""
    name, transform = reg.model_spec(key)
    size = ds.input_size(reg.DIST_TASK[dist])
    torch.manual_seed(seed)
    model = build_model(name, transform, size, target_params=TINY)
    if model.transformer is not None:
        with torch.no_grad():
            model.transformer.regression.weight.normal_(0.0, 0.05)
    fields = {"task": reg.DIST_TASK[dist], "test_error": 12.34, "final": True, "steps": 50,
              "command": f"python -m stn_core.train --task {reg.DIST_TASK[dist]} --model {name} --steps 50",
              "train_args": {"steps": 50, "batch": 32, "lr": 0.01, "momentum": 0.0, "loc_lr_mult": 1.0},
              "test_set": {"seed": ds.TEST_SEED, "size": 10_000}, "train_seconds": 3.0, "device": "cpu"}
    fields.update(meta)
    return save_checkpoint(folder / reg.stem_name(dist, key), model, fields)


def make_tiny(folder: Path, dist: str, key: str, seed: int = 0, offsets: float = 0.7, **meta) -> Path:
    """Save an untrained small model as ``folder/mnist_<dist>_<key>``: the DCN with non-zero offsets
    (random offset-predictor biases of std ``offsets`` px), the ST-CNN off the identity."""
    name, transform = svd.COMPARE_SPECS[key]
    size = ds.input_size(reg.DIST_TASK[dist])
    torch.manual_seed(seed)
    model = build_model(name, transform, size, target_params=TINY)
    with torch.no_grad():
        if model.transformer is not None:
            model.transformer.regression.weight.normal_(0.0, 0.05)
        for layer in getattr(model, "deform_layers", []):
            layer.offset_conv.bias.normal_(0.0, offsets)
            layer.offset_conv.weight.normal_(0.0, 0.02)
    fields = {"task": reg.DIST_TASK[dist], "test_error": 3.21, "final": True, "steps": 5,
              "command": f"python -m stn_core.train --task {reg.DIST_TASK[dist]} --model {name} --steps 5",
              "train_args": {"steps": 5, "batch": 8, "lr": 0.01, "momentum": 0.0, "loc_lr_mult": 1.0}}
    fields.update(meta)
    return save_checkpoint(folder / f"mnist_{dist}_{key}", model, fields)


def make_tiny_addition_checkpoint(folder: Path, key: str, seed: int = 0, **meta) -> Path:
    """An untrained small MNIST-addition model saved as ``folder/mnist_addition_<key>`` (its
    transformers moved off the identity so their boxes are not trivial)."""
    name, transform = reg.ADDITION_SPECS[key]
    torch.manual_seed(seed)
    model = build_model(name, transform, 42, 19, target_params=TINY, in_channels=2)
    with torch.no_grad():
        for st in an_add.transformers_of(model):
            st.regression.weight.normal_(0.0, 0.02)
            st.regression.bias.copy_(torch.tensor([0.6, 0.0, -0.3, 0.0, 0.6, 0.2]))
    fields = {"task": reg.ADDITION_TASK, "test_error": 33.3, "final": True, "steps": 10,
              "command": f"python -m stn_core.train --task mnist-addition --model {name} --steps 10",
              "train_args": {"steps": 10, "batch": 8, "lr": 0.01, "momentum": 0.0},
              "test_set": {"seed": 20150605, "size": 10_000}, "train_seconds": 1.0}
    fields.update(meta)
    return save_checkpoint(folder / reg.addition_stem_name(key), model, fields)
