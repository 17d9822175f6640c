"""Train/eval mode switches of a model, shared by training, evaluation and analysis."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

__all__ = ["eval_mode"]


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` in eval mode inside the block, its previous train/eval mode restored after (errors too)."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)
