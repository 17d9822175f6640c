"""results/colocalisation.md: co-localisation without labels (the paper's appendix A.2) per digit class.

    python scripts/colocalisation.py [--digits 0 1 ... 9] [--encoder checkpoints/mnist_r_cnn] [--seed 0]
                                     [--save checkpoints]

For each digit class, the first 100 MNIST test digits of that class on 84×84 canvases, without (T) and with
clutter (TC, 16 random 6×6 crops of other digits); the paper's triplet loss on the encoder features of a
Table 1 CNN (``stn_core.colocalisation``), minimised by coordinate descent over native-scale windows
(:func:`stn_core.colocalisation.search`: no labels, no boxes; the true boxes only score the result). A
window is correct at IoU > 0.5 with the digit's box. The paper trains a localisation net by SGD; that got
trapped on background here (0 %), see the module docstring. So, second, a localisation net is taught the
searched windows (:func:`stn_core.colocalisation.distil`, native scale, translation only) and then trained
further by SGD on the paper's loss (``--finetune-steps``, lr ``--finetune-lr``); both are scored on the set
and on held-out images of the same class (the next 100 test digits, canvases seeded ``--seed`` + 1), which
the net never saw. Needs the MNIST files.

``--save DIR`` (all ten classes) also writes the localisation nets after SGD as two checkpoints,
``DIR/coloc_t`` and ``DIR/coloc_tc`` (:class:`stn_core.colocalisation.CoLocBank`, one net per class), whose
``test_error`` is the share of held-out canvases whose window misses the digit (IoU ≤ 0.5), averaged over the
classes, with every class's numbers under ``extra.per_class``; the co-localisation page loads them.
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
from stn_core.checkpoints import load_model, save_checkpoint  # noqa: E402
from stn_core.data import tasks as ds  # noqa: E402
from stn_core.data.common import atomic_write_bytes  # noqa: E402
from stn_core.registry import display_dir  # noqa: E402

PAPER = {"T": "100 %", "TC": "75–93 %"}


#: A class's taught windows count as kept by SGD when its correct share on the set falls by at most this much.
KEPT_DROP = 0.05


def _kept_sentence(rows: list, n_classes: int) -> str:
    """Whether SGD on the loss kept the taught windows (the set's correct share, per setting), naming the classes
    whose share fell by more than :data:`KEPT_DROP`."""
    pct = lambda v: f"{100 * v:.0f} %"  # noqa: E731
    kept = {st: sum(c[st][1]["sgd"][0] >= c[st][1]["distilled"][0] - KEPT_DROP for _, c in rows) for st in ("T", "TC")}
    moved = [f"{st} {d}s ({pct(c[st][1]['distilled'][0])} → {pct(c[st][1]['sgd'][0])})" for st in ("T", "TC")
             for d, c in rows if c[st][1]["sgd"][0] < c[st][1]["distilled"][0] - KEPT_DROP]
    return (f"SGD on the loss (scale fixed at the native window) kept the taught windows on the set, within "
            f"{100 * KEPT_DROP:.0f} pp, for {kept['T']} of {n_classes} classes without clutter and {kept['TC']} with"
            + (f"; it moved them off the digits for {', '.join(moved)}." if moved else ".")
            + " With the scale free (the module's default), SGD moved even well-placed windows off the digits in "
              "earlier trials.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digits", nargs="+", type=int, default=list(range(10)))
    ap.add_argument("--encoder", default=str(ROOT / "checkpoints" / "mnist_r_cnn"))
    ap.add_argument("--seed", type=int, default=0, help="seed of the canvases (positions and clutter)")
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--finetune-steps", type=int, default=300)
    ap.add_argument("--finetune-lr", type=float, default=1e-4)
    ap.add_argument("--out", default=str(ROOT / "results" / "colocalisation.md"))
    ap.add_argument("--save", default=None, help="folder for the checkpoints coloc_t and coloc_tc (all ten digits)")
    a = ap.parse_args()
    if a.save and sorted(a.digits) != list(range(10)):
        ap.error("--save needs all ten digit classes (a bank has one net per class)")
    torch.set_num_threads(1)
    encoder_model, encoder_meta = load_model(a.encoder)
    encoder = encoder_model.classifier.eval()
    x, y = ds.load_split("test")
    rows, t0 = [], time.time()
    banks = {s: C.CoLocBank() for s in ("T", "TC")}
    for d in a.digits:
        cells = {}
        for setting in ("T", "TC"):
            digits = x[y == d]
            data = C.make_set(digits[:C.N_IMAGES], setting == "TC", torch.Generator().manual_seed(a.seed))
            held = C.make_set(digits[C.N_IMAGES:2 * C.N_IMAGES], setting == "TC",
                              torch.Generator().manual_seed(a.seed + 1))
            res = C.search(data, encoder, iters=a.iters)
            model = C.distil(data, res.params, seed=a.seed)
            learned = {"distilled": (C.correct_fraction(model, data), C.correct_fraction(model, held))}
            C.train(data, encoder, C.CoLocConfig(steps=a.finetune_steps, lr=a.finetune_lr, seed=a.seed,
                                                 every=max(1, a.finetune_steps)), model=model)
            learned["sgd"] = (C.correct_fraction(model, data), C.correct_fraction(model, held))
            banks[setting].nets[d].load_state_dict(model.state_dict())
            cells[setting] = (res, learned)
            print(f"digit {d} {setting}: {100 * res.final_correct:.0f} % correct, per sweep "
                  f"{[round(100 * c) for c in res.correct]}; learned (set, held-out): {learned}", flush=True)
        rows.append((d, cells))
    mean = {s: sum(c[s][0].final_correct for _, c in rows) / len(rows) for s in ("T", "TC")}
    pct = lambda v: f"{100 * v:.0f} %"  # noqa: E731
    mean_l = {(s, k, i): sum(c[s][1][k][i] for _, c in rows) / len(rows)
              for s in ("T", "TC") for k in ("distilled", "sgd") for i in (0, 1)}
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
        lines.append(f"| {d} | {pct(c['T'][0].final_correct)} | {pct(c['TC'][0].final_correct)} | "
                     f"{', '.join(str(round(100 * v)) for v in c['T'][0].correct)} | "
                     f"{', '.join(str(round(100 * v)) for v in c['TC'][0].correct)} |")
    lines += [f"| **mean** | **{100 * mean['T']:.1f} %** | **{100 * mean['TC']:.1f} %** | | |",
              f"| paper | {PAPER['T']} | {PAPER['TC']} | | |", "",
              "## A localisation net: taught the searched windows, then trained by SGD on the loss", "",
              "The search finds windows for one set; a spatial transformer should predict them for any image. A "
              "localisation net (the paper's: conv 8 × 9×9 stride 4, pool, FC 8, FC 8, FC 3; scale fixed at a "
              "native 28×28 window, translation learned [ours]) is first taught each image's searched window "
              "(`stn_core.colocalisation.distil`, squared error, 600 Adam steps), then trained by SGD on the paper's "
              f"triplet loss alone ({a.finetune_steps} steps, lr {a.finetune_lr:g}, momentum 0.9, batches of 20). "
              "Correct fractions on the set it learned from and on held-out canvases (the class's next "
              f"{C.N_IMAGES} test digits, seed {a.seed + 1}); still no label and no box.", "",
              "| digit | T: taught (set / held-out) | T: after SGD | TC: taught | TC: after SGD |", "|---|---|---|---|---|"]
    for d, c in rows:
        cell = lambda s, k: f"{pct(c[s][1][k][0])} / {pct(c[s][1][k][1])}"  # noqa: E731
        lines.append(f"| {d} | {cell('T', 'distilled')} | {cell('T', 'sgd')} | {cell('TC', 'distilled')} | "
                     f"{cell('TC', 'sgd')} |")
    mcell = lambda s, k: f"**{100 * mean_l[(s, k, 0)]:.1f} % / {100 * mean_l[(s, k, 1)]:.1f} %**"  # noqa: E731
    lines += [f"| **mean** | {mcell('T', 'distilled')} | {mcell('T', 'sgd')} | {mcell('TC', 'distilled')} | "
              f"{mcell('TC', 'sgd')} |", f"| paper (SGD from the start) | | {PAPER['T']} | | {PAPER['TC']} |", "",
              _kept_sentence(rows, len(a.digits))]
    if a.save:
        for setting, bank in banks.items():
            per_class = {str(d): {"search_correct": round(c[setting][0].final_correct, 4),
                                  "taught_set": round(c[setting][1]["distilled"][0], 4),
                                  "taught_held_out": round(c[setting][1]["distilled"][1], 4),
                                  "sgd_set": round(c[setting][1]["sgd"][0], 4),
                                  "sgd_held_out": round(c[setting][1]["sgd"][1], 4)} for d, c in rows}
            held = mean_l[(setting, "sgd", 1)]
            meta = {"task": C.BANK_TASKS[setting], "test_error": round(100 * (1 - held), 2), "final": True,
                    "command": cmd, "seed": a.seed, "steps": 600 + a.finetune_steps, "data_md5": ds.mnist_md5(),
                    "train_seconds": round(time.time() - t0, 1), "device": "cpu", "threads": 1,
                    "train_args": {"digits": a.digits, "iters": a.iters, "finetune_steps": a.finetune_steps,
                                   "finetune_lr": a.finetune_lr, "distil_steps": 600, "seed": a.seed},
                    "test_set": {"what": f"held-out canvases: each class's test digits {C.N_IMAGES}–"
                                         f"{2 * C.N_IMAGES - 1}, placed with seed {a.seed + 1}",
                                 "size": 10 * C.N_IMAGES, "seed": a.seed + 1},
                    "extra": {"per_class": per_class, "precision": "fp32",
                              "encoder": {"checkpoint": Path(a.encoder).name,
                                          "weights_sha256": encoder_meta.get("weights_sha256")},
                              "metric": "test_error = % of held-out canvases whose window has IoU <= 0.5 with the "
                                        "digit's box, mean over the ten classes (no label or box used to learn)"}}
            out = Path(a.save) / ("coloc_" + setting.lower())
            save_checkpoint(out, bank, meta)
            print(f"wrote {out}.json: held-out windows correct {100 * held:.1f} %")
    atomic_write_bytes(Path(a.out), ("\n".join(lines) + "\n").encode("utf-8"))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
