"""Write results/cub.md (+ results/cub.json, the page's data): CUB birds accuracy and part analysis.

    python scripts/make_cub_results.py [--data-root ../shared/data/cub] [--threads 1]

Uses only FINAL checkpoints (``final: true``) ``checkpoints/cub50_{baseline,2st,4st}``. Runs each on
the official test split of its classes (cached in runs/cub_eval/ by checkpoint id), and reports
accuracy beside the paper's Table 3 plus the part analysis of stn_core.analysis.cub.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stn_core.checkpoints import load_meta, load_model  # noqa: E402
from stn_core.data.cub import load_cub  # noqa: E402
from stn_core.analysis.cub import (BODY_PARTS, HEAD_PARTS, Bird, centre_spread, head_detector_verdict,  # noqa: E402
                                   mean_boxes, paired_diff_ci, part_stats, tiled_boxes, whole_image_iou)
from stn_core.train.cub import FULL_SCALE_COMMAND, PAPER_TABLE3, eval_cache_path, load_split_tensors, predict  # noqa: E402
from stn_core.fileio import atomic_write_bytes  # noqa: E402

NAMES = {"baseline": "CNN baseline (MobileNetV2)", "2st": "2×ST-CNN", "4st": "4×ST-CNN"}
SELF = "python scripts/make_cub_results.py"


def evaluate_checkpoint(stem: Path, data_root: str | None) -> dict | None:
    """Accuracy, predictions and test boxes of a final checkpoint (cached by checkpoint id)."""
    if not stem.with_suffix(".json").is_file():
        return None
    meta = load_meta(stem)
    if not meta.get("final"):
        return {"meta": meta, "final": False}
    cache = eval_cache_path(stem.with_suffix(".json"), meta["checkpoint_id"])
    classes = ",".join(str(c) for c in meta["classes"])
    if cache.is_file():
        recs = load_cub(Path(data_root) if data_root else None, classes=classes, split="test")
        with np.load(cache, allow_pickle=False) as z:
            logits, boxes, ids = z["logits"], z["boxes"], z["image_ids"]
    else:
        model, meta = load_model(stem)
        x, _, recs = load_split_tensors(data_root, classes, "test", meta["input_size"], limit=None)
        lg, bx = predict(model, x, torch.device("cpu"))
        logits = lg.numpy()
        boxes = bx.numpy() if bx is not None else np.zeros((len(recs), 0, 4))
        ids = np.array([r.image_id for r in recs])
        if stem.resolve().parent == ROOT / "checkpoints":  # cache only the repo's own checkpoints
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.stem + ".tmp.npz")
            np.savez(tmp, logits=logits, boxes=boxes, image_ids=ids)
            tmp.replace(cache)
    if [r.image_id for r in recs] != ids.tolist():
        raise SystemExit(f"error: test images changed since {cache} was written; delete it and rerun")
    index = {c: i for i, c in enumerate(meta["classes"])}
    y = np.array([index[r.class_id] for r in recs])
    acc = 100.0 * float((logits.argmax(1) == y).mean())
    return {"meta": meta, "final": True, "accuracy": acc, "boxes": boxes, "records": recs, "n": len(recs)}


def birds_of(records) -> list[Bird]:
    from PIL import Image

    out = []
    for r in records:
        if r.size is not None:
            w, h = r.size
        else:
            with Image.open(r.path) as im:
                w, h = im.size
        out.append(Bird.from_pixels(r.parts, r.bbox, w, h, r.part_names))
    return out


def pct(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "results" / "cub.md"), help="markdown; the data go beside as .json")
    ap.add_argument("--checkpoints", default=str(ROOT / "checkpoints"), help="folder with cub50_*.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    res = {k: evaluate_checkpoint(Path(a.checkpoints) / f"cub50_{k}", a.data_root) for k in NAMES}
    L = ["# CUB-200-2011 birds: attention boxes (paper Table 3), reduced scale", "",
         f"Made by `{SELF}` from the final checkpoints `checkpoints/cub50_*.json`; every number "
         "below comes from that script (test-set predictions recomputed from the weights).", "",
         "**Reduced scale**: 50 classes (the images on hand: 1,500 train / 1,389 test, official split), "
         "MobileNetV2 (ImageNet) backbone, 224-px input, crops of 112 px at fixed scale 0.5, "
         "2 epochs, one protocol for all three models. The paper: 200 classes, Inception-BN, 224/448 px, "
         "full training. Numbers are therefore not comparable one to one.", ""]
    data: dict = {"models": {}, "command": SELF, "head_parts": list(HEAD_PARTS), "body_parts": list(BODY_PARTS)}

    L += ["## Test accuracy", "", "| model | ours: test accuracy (%) | test images | steps | training command |",
          "|---|---|---|---|---|"]
    for k, name in NAMES.items():
        r = res[k]
        if r is None:
            L.append(f"| {name} | not trained (no checkpoints/cub50_{k}.json) | | | `python scripts/train_cub.py` |")
            continue
        if not r["final"]:
            L.append(f"| {name} | unfinished run (step {r['meta'].get('steps')}), not reported | | | "
                     f"`{r['meta'].get('command')}` |")
            continue
        m = r["meta"]
        L.append(f"| {name} | **{r['accuracy']:.2f}** | {r['n']} | {m.get('steps')} | `{m.get('command')}` |")
        data["models"][k] = {"accuracy": r["accuracy"], "command": m.get("command"), "steps": m.get("steps"),
                             "checkpoint_id": m.get("checkpoint_id"), "n_test": r["n"]}
    L += ["", "Paper, Table 3 (CUB-200-2011, 200 classes, Inception-BN; **the paper's numbers, different scale**):", "",
          "| model (paper) | accuracy (%) |", "|---|---|"]
    L += [f"| {k} | {v} |" for k, v in PAPER_TABLE3.items()]

    # ---- part analysis
    L += ["", "## Where do the boxes look? Part analysis on the test birds", "",
          "A box *hits* a part group if it contains at least half of the bird's visible parts of that group "
          f"(head: {', '.join(HEAD_PARTS)}; body: {', '.join(BODY_PARTS)}); birds with no visible part of a group "
          "are left out of that rate. Union IoU: IoU of the union of a model's boxes with the annotated bird box. "
          "The *tiled start* rows are the same statistics for the boxes every ST model starts from "
          "(before training): the control a learned head detector must beat.", ""]
    birds_cache = None
    verdicts = {}
    for k in ("2st", "4st"):
        r = res[k]
        if r is None or not r["final"]:
            L += [f"- {NAMES[k]}: no final checkpoint, no part analysis.", ""]
            continue
        birds = birds_cache if birds_cache is not None and len(birds_cache) == r["n"] else birds_of(r["records"])
        birds_cache = birds
        st = part_stats(r["boxes"], birds)
        ctl = part_stats(tiled_boxes(st.n_st, len(birds), r["meta"]["extra"]["arch"]["crop_scale"]), birds)
        mst = part_stats(mean_boxes(r["boxes"]), birds)
        spread = centre_spread(r["boxes"])
        v = head_detector_verdict(st)
        vc = head_detector_verdict(ctl)
        verdicts[k] = v
        L += [f"### {NAMES[k]}", "", "| transformer | head-hit (%) | birds | body-hit (%) | birds | "
              "tiled start: head-hit (%) | tiled start: body-hit (%) | mean box for every bird: head-hit (%) | "
              "box-centre spread over birds (std x, y) |", "|---|---|---|---|---|---|---|---|---|"]
        colours = ["red", "green", "blue", "orange"]
        rows = []
        for rr, cc, mm in zip(st.rates(), ctl.rates(), mst.rates()):
            j = rr["transformer"]
            L.append(f"| {j + 1} ({colours[j]}) | {pct(rr['head_hit'])} | {rr['n_head']} | {pct(rr['body_hit'])} | "
                     f"{rr['n_body']} | {pct(cc['head_hit'])} | {pct(cc['body_hit'])} | {pct(mm['head_hit'])} | "
                     f"{spread[j, 0]:.3f}, {spread[j, 1]:.3f} |")
            rows.append({**rr, "colour": colours[j], "tiled_head_hit": cc["head_hit"], "tiled_body_hit": cc["body_hit"],
                         "mean_box_head_hit": mm["head_hit"], "centre_std": spread[j].tolist()})
        b = v["best"]
        dm, lom, him = paired_diff_ci(st.head[:, b], mst.head[:, b])
        L += ["", f"Mean union IoU with the bird box: **{st.mean_iou():.3f}** (tiled start: {ctl.mean_iou():.3f}; "
              f"whole image: {whole_image_iou(birds):.3f}).", "",
              f"**One transformer becomes a head detector: {'yes' if v['holds'] else 'no'}** — transformer "
              f"{v['best'] + 1} vs {v['runner_up'] + 1}: head-hit difference {100 * v['diff']:.1f} points, "
              f"95% paired bootstrap CI [{100 * v['ci'][0]:.1f}, {100 * v['ci'][1]:.1f}] "
              f"(rule: {v['rule']}). Same rule on the tiled start boxes: {'yes' if vc['holds'] else 'no'} "
              f"({100 * vc['diff']:.1f} points).", "",
              f"Per-bird localisation: transformer {b + 1}'s head-hit rate minus that of its mean box given to every "
              f"bird: {100 * dm:+.1f} points (95% CI [{100 * lom:.1f}, {100 * him:.1f}]). "
              + ("Near zero: the transformer moved to where heads usually are, rather than finding each bird's head."
                 if abs(dm) < 0.05 else
                 ("Positive: the boxes follow each bird's head beyond a fixed offset." if dm > 0 else
                  "Negative: the per-bird movement does not help hitting the head.")), ""]
        data["models"][k].update({"transformers": rows, "mean_union_iou": st.mean_iou(),
                                  "tiled_mean_union_iou": ctl.mean_iou(),
                                  "head_detector": {**v, "ci": list(v["ci"])},
                                  "tiled_head_detector": {**vc, "ci": list(vc["ci"])},
                                  "per_bird_vs_mean_box": {"diff": dm, "ci": [lom, him]}})

    # ---- goal check
    L += ["## Goal check", ""]
    acc = {k: data["models"][k]["accuracy"] for k in data["models"]}
    if "baseline" in acc and "2st" in acc:
        d = acc["2st"] - acc["baseline"]
        L.append(f"- 2×ST-CNN beats the baseline on the same data and schedule: **{'yes' if d > 0 else 'no'}** "
                 f"({acc['2st']:.2f}% vs {acc['baseline']:.2f}%, {d:+.2f} points; commands in the table above).")
    else:
        L.append("- 2×ST-CNN vs baseline: not both runs are final yet (`python scripts/train_cub.py`).")
    if "4st" in acc and "baseline" in acc:
        L.append(f"- 4×ST-CNN vs baseline: {acc['4st']:.2f}% vs {acc['baseline']:.2f}% "
                 f"({acc['4st'] - acc['baseline']:+.2f} points).")
    for k, v in verdicts.items():
        pb = data["models"][k]["per_bird_vs_mean_box"]
        L.append(f"- {NAMES[k]} transformers specialise (head detector): **{'yes' if v['holds'] else 'no'}** "
                 f"(difference {100 * v['diff']:.1f} points, CI [{100 * v['ci'][0]:.1f}, {100 * v['ci'][1]:.1f}]); "
                 f"per-bird localisation beyond a fixed offset: {100 * pb['diff']:+.1f} points "
                 f"(CI [{100 * pb['ci'][0]:.1f}, {100 * pb['ci'][1]:.1f}]).")
    if not all(v["holds"] for v in verdicts.values()) or ("2st" in acc and "baseline" in acc
                                                           and acc["2st"] <= acc["baseline"]):
        L += ["", "What would close the gap (reasons read off the numbers above): (1) each ST crop is a fixed "
              "half-width, half-height box (a quarter of the image), so the 2×ST-CNN's two boxes cover about "
              "half of the image and part of each bird is never seen by its classifier, while the baseline "
              "sees the whole bird; (2) 112-px "
              "crops of a 224-px image carry no more detail than the baseline's input (the paper's 448-px "
              "setting gives the crops full resolution); (3) 2 epochs on a CPU, while the paper trains far "
              "longer, with separate Inception branches per transformer; (4) the boxes barely move bird by "
              "bird (centre spread above), so the localisation net has not yet learned to follow the bird. "
              "Next steps: the full-scale command below (448 px, longer), a learnable or larger scale, and "
              "a longer CPU run of the same protocol (`--epochs`)."]
    L += ["", "## Full-scale command (paper setting; needs the full dataset and a GPU)", "",
          "```", "python -m stn_core.data cub --from CUB_200_2011.tgz",
          FULL_SCALE_COMMAND, "```",
          "(and `--model cub-baseline` / `cub-4st` with the same flags; not run here: no GPU and only 50 "
          "classes of images on hand. Its learning rates are scaled from the CPU protocol, untested.)", "",
          f"_Generated in {time.time() - t0:.0f} s by `{SELF}`._", ""]
    out = Path(a.out)
    atomic_write_bytes(out, "\n".join(L).encode())
    atomic_write_bytes(out.with_suffix(".json"), (json.dumps(data, indent=1, default=float) + "\n").encode())
    print("\n".join(L))


if __name__ == "__main__":
    main()
