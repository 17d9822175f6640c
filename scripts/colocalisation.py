"""results/colocalisation.md: co-localisation without labels (the paper's appendix A.2) per digit class.

    python scripts/colocalisation.py [--digits 0 1 ... 9] [--encoder checkpoints/mnist_r_cnn] [--seed 0]

For each digit class, the first 100 MNIST test digits of that class on 84×84 canvases, without (T) and with
clutter (TC, 16 random 6×6 crops of other digits); the paper's triplet loss on the encoder features of a
Table 1 CNN (``stn_core.colocalisation``), minimised by coordinate descent over native-scale windows
(:func:`stn_core.colocalisation.search`: no labels, no boxes; the true boxes only score the result). A
window is correct at IoU > 0.5 with the digit's box. The paper trains a localisation net by SGD; that got
trapped on background here (0 %), see the module docstring. Needs the MNIST files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stn_core import colocalisation as C  # noqa: E402
from stn_core.checkpoints import load_model  # noqa: E402
from stn_core.data import tasks as ds  # noqa: E402
from stn_core.registry import display_dir  # noqa: E402

PAPER = {"T": "100 %", "TC": "75–93 %"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digits", nargs="+", type=int, default=list(range(10)))
    ap.add_argument("--encoder", default=str(ROOT / "checkpoints" / "mnist_r_cnn"))
    ap.add_argument("--seed", type=int, default=0, help="seed of the canvases (positions and clutter)")
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--out", default=str(ROOT / "results" / "colocalisation.md"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    encoder = load_model(a.encoder)[0].classifier.eval()
    x, y = ds.load_split("test")
    rows, t0 = [], time.time()
    for d in a.digits:
        cells = {}
        for setting in ("T", "TC"):
            data = C.make_set(x[y == d][:C.N_IMAGES], setting == "TC", torch.Generator().manual_seed(a.seed))
            res = C.search(data, encoder, iters=a.iters)
            cells[setting] = res
            print(f"digit {d} {setting}: {100 * res.final_correct:.0f} % correct, per sweep "
                  f"{[round(100 * c) for c in res.correct]}", flush=True)
        rows.append((d, cells))
    mean = {s: sum(c[s].final_correct for _, c in rows) / len(rows) for s in ("T", "TC")}
    cmd = "python scripts/colocalisation.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    lines = ["# Co-localisation without labels (appendix A.2)", "",
             f"Made by `{cmd}` in {time.time() - t0:.0f} s, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. "
             f"Encoder: `{display_dir(Path(a.encoder).parent)}/{Path(a.encoder).name}` (a Table 1 CNN, its three "
             "layers' activations, each scaled to unit length per image). Per digit class: the first "
             f"{C.N_IMAGES} MNIST test digits of the class, each at a uniform random place on an 84×84 canvas "
             f"(seed {a.seed}); TC adds 16 random 6×6 crops of other digits. The loss is the paper's triplet hinge "
             "(margin 1). **The optimiser is ours**: coordinate descent over one 28×28 window per image on a grid of "
             "15×15 positions (`stn_core.colocalisation.search`, all images starting centred, "
             f"{a.iters} sweeps); the paper trains a localisation net by SGD, which got trapped on background here "
             "(0 % correct; the module docstring says what was tried). No label and no box is used; a window is "
             "correct when its IoU with the digit's box exceeds 0.5.", "",
             "| digit | T: correct | TC: correct | T per sweep | TC per sweep |", "|---|---|---|---|---|"]
    for d, c in rows:
        lines.append(f"| {d} | {100 * c['T'].final_correct:.0f} % | {100 * c['TC'].final_correct:.0f} % | "
                     f"{', '.join(str(round(100 * v)) for v in c['T'].correct)} | "
                     f"{', '.join(str(round(100 * v)) for v in c['TC'].correct)} |")
    lines += [f"| **mean** | **{100 * mean['T']:.1f} %** | **{100 * mean['TC']:.1f} %** | | |",
              f"| paper | {PAPER['T']} | {PAPER['TC']} | | |", "",
              "The windows are found per set, not predicted by a network for new images; a localisation net that "
              "reproduces them and is then fine-tuned by SGD on the same loss is the next step."]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
