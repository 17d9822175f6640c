"""Training: one loop (``loop.py``) and one command-line entry per task family.

    python -m stn_core.train --task mnist-rts --model st-cnn --transform affine --out checkpoints/x
    python -m stn_core.train --task cub50 --model cub-2st --out checkpoints/cub50_2st

``--task`` picks the family: ``mnist*`` (distorted MNIST, MNIST addition; ``stn_core.train.mnist``) or
``cub*`` (CUB-200-2011 birds; ``stn_core.train.cub``).
"""

from __future__ import annotations

import sys


def task_of(argv: list[str]) -> str | None:
    """The value of ``--task`` in ``argv`` (``--task X`` or ``--task=X``), or None."""
    for i, a in enumerate(argv):
        if a == "--task" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--task="):
            return a.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> dict:
    """Run the training CLI of the family that ``--task`` names; returns the checkpoint's metadata."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if (task_of(argv) or "").startswith("cub"):
        from stn_core.train import cub as family
    else:
        from stn_core.train import mnist as family
    return family.main(argv)
