"""results/colocalisation-tiled.md: co-localisation by SGD from tiled starts (ours), per digit class.

    python scripts/colocalisation_tiled.py [--digits 0 1 ... 9] [--encoder checkpoints/mnist_r_cnn] [--seed 0]

The sets of results/colocalisation.md (per class, the first 100 MNIST test digits on 84×84 canvases, seed
``--seed``; TC with clutter) and the paper's triplet loss on the same encoder, minimised by SGD
(:func:`stn_core.colocalisation.tiled_sgd`): every image starts with a grid of native-scale windows spread
over its canvas (:data:`stn_core.colocalisation.TILES` per side), all descend the loss against the other images' best windows, and the worse half of each
image's windows is dropped at each step of :data:`stn_core.colocalisation.TILED_SCHEDULE` until one is left.
No labels and no boxes; the true boxes only score (correct: IoU > 0.5). Needs the MNIST files.
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
from stn_core.data.common import atomic_write_bytes  # noqa: E402
from stn_core.registry import display_dir  # noqa: E402

PAPER = {"T": "100 %", "TC": "75–93 %"}


def _pct(v: float) -> str:
    return f"{100 * v:.0f} %"


def _phases(run: C.TiledSGD) -> str:
    """The best windows' correct share at the start and at the end of every pruning phase: '31 → 78 → … → 85'."""
    ends = [i for i in range(len(run.steps)) if i == 0 or i == len(run.steps) - 1 or run.kept[i + 1] < run.kept[i]]
    return " → ".join(f"{100 * run.correct[i]:.0f}" for i in ends)


def table(rows: list, schedule: tuple[tuple[int, int], ...]) -> list[str]:
    """The markdown table: per class and setting the final correct share and the share over the phases."""
    marks = ", ".join(f"{k} until {s}" for k, s in schedule)
    lines = ["| digit | T: correct | TC: correct | T: correct over the phases (%) | TC: over the phases (%) |",
             "|---|---|---|---|---|"]
    for d, c in rows:
        lines.append(f"| {d} | {_pct(C.share_correct(c['T'].ious))} | {_pct(C.share_correct(c['TC'].ious))} | "
                     f"{_phases(c['T'])} | {_phases(c['TC'])} |")
    mean = {st: sum(C.share_correct(c[st].ious) for _, c in rows) / len(rows) for st in ("T", "TC")}
    lines += [f"| **mean** | **{100 * mean['T']:.1f} %** | **{100 * mean['TC']:.1f} %** | | |",
              f"| paper (a localisation net, SGD) | {PAPER['T']} | {PAPER['TC']} | | |", "",
              f"Over the phases: the share of images whose best window is correct at the start (each image's most "
              f"central window) and at the end of each phase (windows kept per image, until step: {marks})."]
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digits", nargs="+", type=int, default=list(range(10)))
    ap.add_argument("--encoder", default=str(ROOT / "checkpoints" / "mnist_r_cnn"))
    ap.add_argument("--seed", type=int, default=0, help="seed of the canvases and of the random crops")
    ap.add_argument("--out", default=str(ROOT / "results" / "colocalisation-tiled.md"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    encoder = load_model(a.encoder)[0].classifier.eval()
    x, y = ds.load_split("test")
    t0 = time.time()
    cells: dict[int, dict[str, C.TiledSGD]] = {}
    for d, setting, data in C.paper_sets(x, y, a.digits, a.seed):
        run = cells.setdefault(d, {})[setting] = C.tiled_sgd(data, encoder, schedule=C.TILED_SCHEDULE, seed=a.seed)
        print(f"digit {d} {setting}: {_phases(run)} % correct", flush=True)
    rows = list(cells.items())
    args = sys.argv[1:] if argv is None else argv
    cmd = "python scripts/colocalisation_tiled.py" + (" " + " ".join(args) if args else "")
    lines = ["# Co-localisation by SGD from tiled starts (ours)", "",
             f"Made by `{cmd}` in {time.time() - t0:.0f} s, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. "
             f"Encoder: `{display_dir(Path(a.encoder).parent)}/{Path(a.encoder).name}`. The sets and loss of "
             f"results/colocalisation.md (per class, the first 100 MNIST test digits on 84×84 canvases, seed {a.seed}; "
             "TC: 16 clutter crops; the paper's triplet loss, margin 1). SGD from one shared start gets trapped there "
             "(results/colocalisation-sgd.md); here every image starts with "
             f"{C.TILES} × {C.TILES} free native-scale windows spread over its canvas, each descends the loss against "
             f"the other images' best windows (SGD, momentum {C.BASIN_MOMENTUM:g}, lr {C.BASIN_LR:g} per window), and "
             "each image keeps its windows of lowest loss, fewer at each phase, until one is left "
             "(`stn_core.colocalisation.tiled_sgd`). No labels and no boxes; a window is correct at IoU > 0.5 with "
             "the digit's box. The paper trains one localisation net by SGD from a single start; this is per-image "
             "windows (no net), so its numbers sit beside the paper's, not in place of them.", ""]
    lines += table(rows, C.TILED_SCHEDULE)
    atomic_write_bytes(Path(a.out), ("\n".join(lines) + "\n").encode("utf-8"))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
