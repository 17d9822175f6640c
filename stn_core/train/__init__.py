"""Training: one loop (``loop.py``) and one command-line entry per task family.

    python -m stn_core.train --task mnist-rts --model st-cnn --transform affine --out checkpoints/x
    python -m stn_core.train --task cub50 --model cub-2st --out checkpoints/cub50_2st
    python -m stn_core.train.live --steps 1500 --out checkpoints/live/my-run

``--task`` picks the family: ``mnist*`` (distorted MNIST, MNIST addition; :mod:`stn_core.train.mnist`) or
``cub*`` (CUB-200-2011 birds; :mod:`stn_core.train.cub`). The Live page's small runs:
:mod:`stn_core.train.live`.
"""

from __future__ import annotations

import sys

from stn_core.train import cub, mnist
from stn_core.train.loop import task_of


def main(argv: list[str] | None = None) -> dict:
    """Run the training CLI of the family that ``--task`` names; returns the checkpoint's metadata."""
    argv = list(sys.argv[1:] if argv is None else argv)
    family = cub if (task_of(argv) or "").startswith("cub") else mnist
    return family.main(argv)
