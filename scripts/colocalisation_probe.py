"""Where the co-localisation loss is low: its value at the true boxes against other windows (issue #19).

Usage: python scripts/colocalisation_probe.py [--digit 3] [--encoder checkpoints/mnist_r_cnn]

For the first 100 MNIST test digits of one class on 84×84 canvases (no clutter), the triplet loss of
``stn_core.colocalisation`` averaged over 5 draws of the random crops, with raw and with per-image
normalised encoder features, and random crops at 28 px or at the window's scale, for four sets of
windows: the true boxes, an empty corner (s 0.2), the whole canvas and the centred half window the
localisation net starts from. Needs the MNIST files (``python -m stn_core.data``). Prints a table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stn_core import colocalisation as C  # noqa: E402
from stn_core.checkpoints import load_model  # noqa: E402
from stn_core.data import tasks as ds  # noqa: E402
from stn_core.sampling import sample  # noqa: E402
from stn_core.transforms import attention_grid  # noqa: E402


@torch.no_grad()
def loss_at(data: C.CoLocSet, encoder, params: torch.Tensor, same_scale: bool, normalise: bool, reps: int = 5) -> float:
    crops = sample(data.x, attention_grid(params, (C.CROP, C.CROP)))
    total = 0.0
    for r in range(reps):
        rand = C.random_crops(data.x, torch.Generator().manual_seed(r), params[:, 0] if same_scale else None)
        total += float(C.triplet_loss(C.encoder_features(encoder, crops, normalise),
                                      C.encoder_features(encoder, rand, normalise)))
    return total / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--digit", type=int, default=3)
    ap.add_argument("--encoder", default=str(ROOT / "checkpoints" / "mnist_r_cnn"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    encoder = load_model(a.encoder)[0].classifier.eval()
    x, y = ds.load_split("test")
    data = C.paper_set(x, y, a.digit, "T")
    n, b = data.x.shape[0], data.boxes
    centre = C.box_centres(b)
    windows = {"true boxes": torch.cat([torch.full((n, 1), C.CROP / C.CANVAS), centre], 1),
               "empty corner": torch.tensor([[0.2, 0.8, 0.8]]).repeat(n, 1),
               "whole canvas": torch.tensor([[1.0, 0.0, 0.0]]).repeat(n, 1),
               "centred half (start)": torch.tensor([[0.5, 0.0, 0.0]]).repeat(n, 1)}
    print(f"digit {a.digit}, {n} images, encoder {Path(a.encoder).name}")
    print("| features | random crops | " + " | ".join(windows) + " |")
    print("|---|---|" + "---|" * len(windows))
    for normalise in (False, True):
        for same in (False, True):
            vals = [f"{loss_at(data, encoder, p, same, normalise):.3f}" for p in windows.values()]
            print(f"| {'per-image normalised' if normalise else 'raw'} | {'window scale' if same else '28 px'} | "
                  + " | ".join(vals) + " |")


if __name__ == "__main__":
    main()
