"""Fine-tune a CUB-200-2011 bird classifier: baseline or N×ST-CNN (paper Table 3, reduced scale).

    python -m stn_core.train --task cub50 --model cub-2st --epochs 2 --batch 16 --lr 0.005 \\
        --seed 0 --threads 1 --out checkpoints/cub50_2st

Reached through ``python -m stn_core.train`` (it hands ``--task cub*`` here). Tasks: ``cub50``
(classes 1-50, the images on hand), ``cub200`` (all 200 classes), ``cub`` (``--classes``).
``--classes`` always overrides the task's class list (e.g. ``--classes 1-3`` for a tiny run).

Data: the official split of the classes present under ``--data-root`` (default: the imported copy
or ``../shared/data/cub``). Every image is decoded once and resized to ``input × input`` px
(aspect ratio NOT kept: the whole bird stays in view and boxes/parts map per axis), kept in
memory as uint8. Augmentation (training only, a pure function of (seed, step)): random
horizontal flip, and a random crop covering 85-100 % of each side, resampled to the input size.

Optimiser: SGD (momentum 0.9, weight decay 1e-4), Adam or AdamW; cosine learning-rate decay to 0 over
the run (``--warmup`` steps of linear warm-up first; ``--schedule paper``: ÷10 at 1/3 and 2/3 instead,
``stn_core.train.loop.lr_at``); the new classifier learns at ``--head-lr-mult`` × lr, the localisation net at
``--loc-lr-mult`` × lr (the paper: "much smaller"; 1e-4 × over a long run, here 0.1 × over a
short one). Backbone BatchNorm statistics stay frozen (see stn_core.models.cub).

Every ``--box-every`` steps the boxes of 6 fixed test birds are recorded into the checkpoint's
``extra.box_history`` (replayed on the app's CUB page). ``--resume`` continues a run exactly;
``--time-limit`` stops with a resumable checkpoint. ``torchrun`` splits the global batch.

Speed: ``--precision auto`` (the default) trains under bfloat16 autocast on a CPU with
AVX-512-BF16/AMX and on a bfloat16 GPU (stn_core.train.loop); channels-last is on by default. The
test accuracy and the recorded boxes are evaluated in float32. The resolved precision is recorded in
the checkpoint's ``extra.precision``; a resume keeps it.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from stn_core.checkpoints import CheckpointError, load_meta, optimizer_tensors, save_checkpoint, validation_split
from stn_core.checkpoints.prediction_cache import cache_path, save_cached
from stn_core.data.common import DataError, repo_root
from stn_core.data.cub import CubRecord, find_cub_root, load_cub, parse_classes
from stn_core.data.samples import load_cub_metadata
from stn_core.models.cub import BRANCHES, CUB_MODEL_NAMES, LOC_HEADS, LOC_INITS, CubNet, arch_of, build_cub_model
from stn_core.paper import PAPER_TABLE3
from stn_core.train.box_spsa import spsa_train_step
from stn_core.train.loop import (PRECISION_HELP, PRECISIONS, SCHEDULES, all_reduce, barrier, command_line,
                                 default_ckpt_every, eval_mode, keep_depthwise_fp32, lr_at, make_grad_scaler,
                                 make_optimizer, open_run, refuse_to_overwrite, resume_state, rng_tensors,
                                 scaler_tensors, set_lr, start_run, task_of, train_step, wrap_ddp)

#: task name -> class list (None: --classes required)
CUB_TASKS: dict[str, Optional[str]] = {"cub50": "1-50", "cub200": "1-200", "cub": None}
#: Documented full-scale run (paper setting: 200 classes, 448-px input, crops at 224; needs the full
#: CUB-200-2011 imported with ``python -m stn_core.data cub --from CUB_200_2011.tgz`` and a GPU; not run
#: here). lr scaled linearly with the batch from the CPU protocol (0.001 at batch 16).
FULL_SCALE_COMMAND = ("torchrun --nproc_per_node 1 -m stn_core.train --task cub200 --model cub-2st --epochs 30 "
                      "--batch 64 --lr 0.004 --head-lr-mult 10 --loc-lr-mult 0.01 --input-size 448 --crop-size 224 "
                      "--crop-scale 0.5 --seed 0 --device cuda --out checkpoints/cub200_2st_448")
RESUME_FIXED = ("task", "model", "classes", "epochs", "steps", "batch", "lr", "momentum", "weight_decay",
                "optimizer", "head_lr_mult", "loc_lr_mult", "seed", "input_size", "crop_size", "crop_scale",
                "train_limit", "aug", "loc_size", "learn_scale", "loc_init", "val_fraction", "loc_head", "branches",
                "grad_blur", "box_grad", "spsa_delta", "schedule", "warmup")
#: seed of the validation split carved from train (fixed: every setting of a search sees the same split)
VAL_SEED = 20150605
N_BOX_BIRDS = 6


def is_cub_task(argv: list[str]) -> bool:
    """True if ``argv`` asks for a CUB task (``--task cub…``)."""
    return (task_of(argv) or "").startswith("cub")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m stn_core.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", required=True, choices=list(CUB_TASKS))
    p.add_argument("--model", required=True, choices=list(CUB_MODEL_NAMES))
    p.add_argument("--classes", default=None, help="class subset like '1-50' or '1,5,17-20' (default: the task's)")
    p.add_argument("--data-root", default=None, help="CUB folder (default: imported copy, then ../shared/data/cub)")
    p.add_argument("--backbone-weights", default="default",
                   help="ImageNet MobileNetV2: 'default' (../shared/data/weights/mobilenet_v2_imagenet_float.pth), "
                        "a path to a float state_dict, 'torchvision' (downloads), or 'none' (random init)")
    p.add_argument("--epochs", type=float, default=2.0, help="passes over the training images")
    p.add_argument("--steps", type=int, default=None, help="total steps (overrides --epochs)")
    p.add_argument("--batch", type=int, default=16, help="global batch size")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"])
    p.add_argument("--lr", type=float, default=0.005, help="backbone learning rate (peak of --schedule)")
    p.add_argument("--schedule", default="cosine", choices=list(SCHEDULES),
                   help="cosine: decay to 0 (after --warmup steps); paper: ÷10 at 1/3 and 2/3 of the steps")
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps of the cosine schedule")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--head-lr-mult", type=float, default=2.0, help="lr multiplier of the new classifier")
    p.add_argument("--loc-lr-mult", type=float, default=0.1, help="lr multiplier of the localisation net")
    p.add_argument("--input-size", type=int, default=224, help="input image side (paper: 224 or 448)")
    p.add_argument("--crop-size", type=int, default=112, help="side of each transformer's crop")
    p.add_argument("--crop-scale", type=float, default=0.5, help="scale s of the attention boxes (the start with --learn-scale)")
    p.add_argument("--learn-scale", action="store_true", help="the localisation net also predicts each box's scale")
    p.add_argument("--loc-size", type=int, default=None,
                   help="side the localisation net sees the image at (paper: 224 for 448-px input; default: input size)")
    p.add_argument("--loc-init", default="tiled", choices=list(LOC_INITS),
                   help="where the boxes start: 'tiled' (side by side / quadrants) or 'centre' (all on the image centre)")
    p.add_argument("--loc-head", default="mlp", choices=list(LOC_HEADS),
                   help="localisation head: 'mlp' (pooled features → 2-layer MLP) or 'heatmap' (a score map per "
                        "transformer, soft-argmax: the box follows each image's features)")
    p.add_argument("--branches", default="shared", choices=list(BRANCHES),
                   help="'shared': every crop through one backbone (ours, cheaper on a CPU); 'separate': one "
                        "backbone per transformer, all from the ImageNet weights (the paper's branches)")
    p.add_argument("--grad-blur", type=float, default=0.0,
                   help="[ours] σ (px of the input) of the boxes' smoothed gradient: crops unchanged, their gradient "
                        "w.r.t. the boxes taken on the blurred image (stn_core.grad_smoothing); 0: the paper's")
    p.add_argument("--box-grad", default="exact", choices=["exact", "spsa"],
                   help="the boxes' training signal: the paper's exact sampler gradient, or [ours] an SPSA estimate of "
                        "the loss's slope over ±--spsa-delta (stn_core.train.box_spsa)")
    p.add_argument("--spsa-delta", type=float, default=0.1, help="the SPSA shift (normalised units) of --box-grad spsa")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="carve this fraction of each class's TRAINING images as a validation split, train on the "
                        "rest and evaluate there (never on the test split): for choosing settings")
    p.add_argument("--aug", action=argparse.BooleanOptionalAction, default=True, help="flip + small random crop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="checkpoint stem, e.g. checkpoints/cub50_2st")
    p.add_argument("--resume", action="store_true", help="continue from <out> if it exists")
    p.add_argument("--overwrite", action="store_true", help="start afresh even if <out> exists")
    p.add_argument("--ckpt-every", type=int, default=None,
                   help="write a resumable checkpoint every K steps (0: only at --stop-at / --time-limit); "
                        "default min(20, max(1, steps // 10))")
    p.add_argument("--box-every", type=int, default=10, help="record the boxes of 6 test birds every K steps")
    p.add_argument("--stop-at", type=int, default=None, help="stop (resumable) once this step is reached")
    p.add_argument("--time-limit", type=float, default=None, help="stop (resumable) after this many seconds")
    p.add_argument("--train-limit", type=int, default=None, help="use the first N training images only (tests)")
    p.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument("--precision", default="auto", choices=list(PRECISIONS), help=PRECISION_HELP)
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="channels-last convolutions (faster on CPU)")
    p.add_argument("--log-every", type=int, default=1, help="progress-bar update interval (steps)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.classes is None:
        if CUB_TASKS[a.task] is None:
            p.error("--task cub needs --classes (e.g. --classes 1-10)")
        a.classes = CUB_TASKS[a.task]
    if a.batch < 1 or (a.steps is not None and a.steps < 1) or a.epochs <= 0:
        p.error("--batch, --steps and --epochs must be positive")
    if a.val_fraction is not None and not 0.0 < a.val_fraction < 1.0:
        p.error("--val-fraction must be between 0 and 1")
    if a.backbone_weights.lower() == "none":
        a.backbone_weights = None
    return a


# --------------------------------------------------------------------------- data

def carve_validation(recs: list[CubRecord], fraction: float, seed: int = VAL_SEED) -> tuple[list, list]:
    """Split training records → (train, validation): ``round(fraction · n_c)`` images of each class
    (at least 1 where the class has 2 or more), chosen by a seeded permutation; order kept."""
    by_class: dict[int, list[int]] = {}
    for i, r in enumerate(recs):
        by_class.setdefault(r.class_id, []).append(i)
    val: set[int] = set()
    for c, idx in sorted(by_class.items()):
        k = min(len(idx) - 1, max(1, round(fraction * len(idx)))) if len(idx) > 1 else 0
        perm = torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed * 1009 + c))
        val.update(idx[int(j)] for j in perm[:k])
    return [r for i, r in enumerate(recs) if i not in val], [r for i, r in enumerate(recs) if i in val]


def load_split_tensors(root: Optional[str], classes: str, split: str, size: int,
                       limit: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Decode a split → (images uint8 (N, 3, size, size), class ids int64 (N,), records)."""
    recs = load_cub(Path(root) if root else None, classes=classes, split=split)
    if limit is not None:
        recs = recs[:limit]
    if not recs:
        raise SystemExit(f"error: no {split} images of classes {classes} found under the CUB folder")
    return decode_records(recs, size)


def decode_records(recs: list[CubRecord], size: int) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Records → (images uint8 (N, 3, size, size), class ids int64 (N,), records)."""
    out = np.empty((len(recs), size, size, 3), dtype=np.uint8)
    for i, r in enumerate(recs):
        with Image.open(r.path) as im:
            out[i] = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR, reducing_gap=2.0))
    x = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor([r.class_id for r in recs], dtype=torch.int64)
    return x, y, recs


def data_digest(*tensors: torch.Tensor) -> str:
    """md5 over the bytes of the given tensors (the exact preprocessed data)."""
    h = hashlib.md5()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def augment(x: torch.Tensor, seed: int, step: int, rank: int = 0) -> torch.Tensor:
    """x float (N, 3, S, S) → random flip + random crop (85-100 % per side, bilinear back to S)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step * 101 + rank)
    n = x.shape[0]
    s = 0.85 + 0.15 * torch.rand(n, generator=g)
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    tx = (1 - s) * (2 * torch.rand(n, generator=g) - 1)
    ty = (1 - s) * (2 * torch.rand(n, generator=g) - 1)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = s * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = s, ty
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def box_birds(test_y: torch.Tensor, n: int = N_BOX_BIRDS, image_ids: Optional[list[int]] = None) -> list[int]:
    """Indices of ``n`` fixed test birds: preferably birds shipped in data/samples/cub (so a fresh
    clone can replay their boxes), one per class; else the first test image of n evenly spaced classes."""
    if image_ids is not None:
        try:
            shipped = [b["image_id"] for b in load_cub_metadata()["birds"]]
        except Exception:  # noqa: BLE001 - samples missing: fall back
            shipped = []
        pos = {iid: i for i, iid in enumerate(image_ids)}
        idx, seen = [], set()
        for iid in shipped:
            if iid in pos and int(test_y[pos[iid]]) not in seen:
                seen.add(int(test_y[pos[iid]]))
                idx.append(pos[iid])
        if len(idx) >= n:
            return idx[:n]
    classes = sorted(set(test_y.tolist()))
    pick = [classes[round(i * (len(classes) - 1) / max(1, n - 1))] for i in range(min(n, len(classes)))]
    idx = []
    for c in dict.fromkeys(pick):
        idx.append(int((test_y == c).nonzero()[0]))
    return idx


# --------------------------------------------------------------------------- eval

@torch.no_grad()
def predict(model: CubNet, x: torch.Tensor, device: torch.device, chunk: int = 32,
            lo: int = 0, hi: Optional[int] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Logits (n, C) and boxes (n, n_st, 4) or None for uint8 images ``x[lo:hi]``."""
    hi = x.shape[0] if hi is None else hi
    logits, boxes = [], []
    with eval_mode(model):
        for i in range(lo, hi, chunk):
            xb = x[i:min(i + chunk, hi)].to(device).float() / 255.0
            out = model.views(xb)
            logits.append(out.logits.float().cpu())
            if out.boxes is not None:
                boxes.append(out.boxes.float().cpu())
    lg = torch.cat(logits) if logits else torch.zeros(0, len(model.classes))
    return lg, (torch.cat(boxes) if boxes else None)


def evaluate(model: CubNet, x: torch.Tensor, y_idx: torch.Tensor, device: torch.device,
             rank: int = 0, world: int = 1) -> tuple[float, float]:
    """(accuracy %, mean loss) on uint8 images ``x`` with class indices ``y_idx``; ranks share."""
    n = x.shape[0]
    lo, hi = rank * n // world, (rank + 1) * n // world
    logits, _ = predict(model, x, device, lo=lo, hi=hi)
    yb = y_idx[lo:hi]
    stats = torch.tensor([float((logits.argmax(1) == yb).sum()),
                          float(F.cross_entropy(logits, yb, reduction="sum")) if hi > lo else 0.0,
                          float(hi - lo)], dtype=torch.float64, device=device)
    all_reduce(stats, world)
    cnt = max(1.0, float(stats[2]))
    return 100.0 * float(stats[0]) / cnt, float(stats[1]) / cnt


def box_stats(boxes: torch.Tensor) -> dict[str, Any]:
    """Boxes (n, n_st, 4) → per transformer: mean and std over images of the box centre (x, y) and
    the mean side (normalised units); the std is how much a box follows each image (the population
    std, as :func:`stn_core.analysis.cub.centre_spread` reports it in results/cub.md)."""
    c = (boxes[..., :2] + boxes[..., 2:]) / 2
    side = (boxes[..., 2] - boxes[..., 0]).mean(0)
    r = lambda t: [[round(float(v), 4) for v in row] for row in t]  # noqa: E731
    return {"images": int(boxes.shape[0]), "centre_mean": r(c.mean(0)), "centre_std": r(c.std(0, correction=0)),
            "side_mean": [round(float(v), 4) for v in side]}


def _save_eval_cache(meta_path: Path, logits: torch.Tensor, boxes: Optional[torch.Tensor],
                     image_ids: list[int]) -> None:
    """Store final test predictions (:mod:`stn_core.checkpoints.prediction_cache`) for the repo's own
    checkpoints (``checkpoints/``) and for the runs of ``scripts/train_cub.py`` (``runs/cub/``, promoted to
    checkpoints/ with the same checkpoint id) only."""
    meta_path = Path(meta_path).resolve()
    if meta_path.parent not in ((repo_root() / "checkpoints").resolve(), (repo_root() / "runs" / "cub").resolve()):
        return
    try:
        cache = cache_path(meta_path, load_meta(meta_path)["checkpoint_id"])
        b = boxes.numpy() if boxes is not None else np.zeros((len(image_ids), 0, 4), np.float32)
        save_cached(cache, image_ids, logits=logits.numpy(), boxes=b)
    except (OSError, KeyError, CheckpointError) as e:
        print(f"warning: could not cache the test predictions ({e})", file=sys.stderr)


# --------------------------------------------------------------------------- main

def main(argv: list[str]) -> dict[str, Any]:
    a = parse_args(argv)
    rank, world, device, threads, precision, main_proc, say, paths = start_run(a)
    refuse_to_overwrite(a, paths)  # before the data: a mistake is said at once

    # ---- data
    try:
        class_ids = sorted(parse_classes(a.classes))
        t0 = time.perf_counter()
        if a.val_fraction is None:
            x_tr, y_tr_id, _ = load_split_tensors(a.data_root, a.classes, "train", a.input_size, a.train_limit)
            x_te, y_te_id, te_recs = load_split_tensors(a.data_root, a.classes, "test", a.input_size, a.test_limit)
        else:  # a validation split carved from train: the test split is never read
            recs = load_cub(Path(a.data_root) if a.data_root else None, classes=a.classes, split="train")
            tr_recs, va_recs = carve_validation(recs[:a.train_limit] if a.train_limit else recs, a.val_fraction)
            if not tr_recs or not va_recs:
                raise DataError(f"too few training images of classes {a.classes} to carve a validation split")
            x_tr, y_tr_id, _ = decode_records(tr_recs, a.input_size)
            x_te, y_te_id, te_recs = decode_records(va_recs[:a.test_limit] if a.test_limit else va_recs, a.input_size)
    except (DataError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    present = sorted(set(y_tr_id.tolist()) | set(y_te_id.tolist()))
    missing = sorted(set(class_ids) - set(present))
    if missing and a.train_limit is None:
        say(f"warning: no images of classes {missing[:10]}{'…' if len(missing) > 10 else ''} are present")
    index = {c: i for i, c in enumerate(class_ids)}
    y_tr = torch.tensor([index[int(c)] for c in y_tr_id])
    y_te = torch.tensor([index[int(c)] for c in y_te_id])
    data_md5 = data_digest(x_tr, y_tr_id, x_te, y_te_id)
    test_md5 = data_digest(x_te, y_te_id)
    eval_name = "test" if a.val_fraction is None else "validation"
    say(f"CUB {a.task}: {len(class_ids)} classes, {len(y_tr)} train / {len(y_te)} {eval_name} images at "
        f"{a.input_size}px ({time.perf_counter() - t0:.1f}s to load)")
    steps_per_epoch = max(1, len(y_tr) // a.batch)
    total = a.steps if a.steps is not None else max(1, round(a.epochs * steps_per_epoch))
    if a.schedule == "paper" and a.warmup:
        raise SystemExit("error: --warmup applies to --schedule cosine only")
    if not 0 <= a.warmup <= total:
        raise SystemExit(f"error: --warmup must be in 0..{total} (the run's steps), got {a.warmup}")
    ckpt_every = default_ckpt_every(total, cap=20) if a.ckpt_every is None else a.ckpt_every

    # ---- model and optimiser
    torch.manual_seed(a.seed)
    try:
        model = build_cub_model(a.model, class_ids, input_size=a.input_size, crop_size=a.crop_size,
                                crop_scale=a.crop_scale, backbone_weights=a.backbone_weights, loc_size=a.loc_size,
                                learn_scale=a.learn_scale, loc_init=a.loc_init, loc_head=a.loc_head,
                                branches=a.branches).to(device)
    except ValueError as e:  # WeightsError and bad architecture settings: a sentence, not a traceback
        raise SystemExit(f"error: {e}") from None
    if not 0 <= a.grad_blur <= a.input_size / 4:
        raise SystemExit(f"error: --grad-blur must be between 0 and a quarter of the input ({a.input_size / 4:g} px), "
                         f"got {a.grad_blur:g}")
    if a.grad_blur and not model.n_st:
        raise SystemExit("error: --grad-blur smooths the attention boxes' gradient; the baseline has none")
    model.grad_blur = float(a.grad_blur)
    if a.box_grad == "spsa":
        refusals = ((not model.n_st, "the baseline has no boxes"),
                    (a.learn_scale, "it moves (tx, ty) only, not a learned scale"),
                    (world > 1, "it runs in one process"), (precision == "fp16", "it takes no gradient scaler (fp16)"),
                    (a.grad_blur, "--grad-blur smooths the exact gradient it replaces"),
                    (not a.spsa_delta > 0, "--spsa-delta must be positive"))
        for refused, why in refusals:
            if refused:
                raise SystemExit(f"error: --box-grad spsa: {why}")
    if a.channels_last:
        model.use_channels_last()
    loc = model.localisation_parameters()
    head = list(model.classifier.parameters())
    special = {id(p) for p in loc + head}
    body = [p for p in model.parameters() if id(p) not in special]
    groups = [{"params": body, "lr_mult": 1.0}, {"params": head, "lr_mult": a.head_lr_mult}]
    if loc:
        groups.append({"params": loc, "lr_mult": a.loc_lr_mult})
    opt = make_optimizer(groups, a.optimizer, a.lr, a.momentum, a.weight_decay)

    train_args = {k: getattr(a, k) for k in RESUME_FIXED if k not in ("steps",)}
    # recorded when set: older runs resume as before
    for k, default in (("loc_size", None), ("learn_scale", False), ("loc_init", "tiled"), ("val_fraction", None),
                       ("loc_head", "mlp"), ("branches", "shared"), ("grad_blur", 0.0), ("box_grad", "exact"),
                       ("schedule", "cosine"), ("warmup", 0)):
        if train_args[k] == default:
            del train_args[k]
    if "box_grad" not in train_args:
        del train_args["spsa_delta"]
    train_args["steps"] = total
    bird_idx = box_birds(y_te, image_ids=[r.image_id for r in te_recs] if a.val_fraction is None else None)
    birds = [{"image_id": te_recs[i].image_id, "class_id": te_recs[i].class_id,
              "class_name": te_recs[i].class_name, "test_index": i} for i in bird_idx]
    box_hist: dict[str, Any] = {"birds": birds, "steps": [], "boxes": []}
    eval_boxes: dict[str, Any] = {}  # box statistics over the evaluated images (final run only)
    start, history, train_seconds = 0, [], 0.0
    scaler = make_grad_scaler(precision, device)
    meta, precision = open_run(a, paths, train_args, say, precision, device)  # refuses again: cheap
    if meta is not None:
        if meta.get("final"):
            return meta
        scaler = make_grad_scaler(precision, device)
        start, history, train_seconds = resume_state(paths, meta, model, opt, device, scaler)
        box_hist = (meta.get("extra") or {}).get("box_history", box_hist)
        say(f"resuming {a.out} at step {start}/{total} ({precision})")

    keep_depthwise_fp32(model, precision, device)  # no-op unless CPU autocast and depthwise convs
    net = wrap_ddp(model, world, device)
    command = command_line(argv, world)
    try:
        cub_root = str(find_cub_root(Path(a.data_root) if a.data_root else None))
    except Exception:  # noqa: BLE001
        cub_root = a.data_root

    def record_boxes(step: int) -> None:
        if not model.n_st or (box_hist["steps"] and box_hist["steps"][-1] == step):
            return
        _, b = predict(model, x_te[bird_idx], device)
        box_hist["steps"].append(step)
        box_hist["boxes"].append(np.round(b.numpy(), 4).tolist())

    def meta_now(step: int, acc: Optional[float], final: bool) -> dict[str, Any]:
        return {
            "task": a.task, "model": a.model, "transform": "attention" if model.n_st else None,
            "input_size": a.input_size, "num_classes": len(class_ids), "classes": class_ids,
            "test_error": None if acc is None else round(100.0 - acc, 4), "command": command, "steps": step,
            "seed": a.seed, "data_md5": data_md5, "torch_version": torch.__version__, "train_args": train_args,
            "final": final, "world_size": world, "device": str(device), "threads": threads,
            "history": history, "train_seconds": round(train_seconds, 2),
            "samples_per_s": round(step * a.batch / train_seconds, 2) if train_seconds > 0 else None,
            "test_set": {"split": "official test" if a.val_fraction is None else
                         validation_split(f"{a.val_fraction:g} of each class's training images (seed {VAL_SEED})"),
                         "size": int(len(y_te)), "md5": test_md5},
            "extra": {
                "test_accuracy": acc, "backbone": "mobilenet_v2 (ImageNet, torchvision layout)",
                "backbone_weights": str(a.backbone_weights), "arch": arch_of(model),
                "class_subset": a.classes, "class_names": {str(r.class_id): r.class_name for r in te_recs},
                "data_root": cub_root, "n_train": int(len(y_tr)), "n_test": int(len(y_te)),
                "epochs": round(total / steps_per_epoch, 3), "steps_per_epoch": steps_per_epoch,
                "augmentation": "random horizontal flip + random crop 85-100% per side" if a.aug else "none",
                "box_history": box_hist if model.n_st else None,
                "scale_note": f"reduced scale: MobileNetV2 backbone, {a.input_size} px input; the paper used "
                              "Inception-BN, 200 classes, 224/448 px",
                "precision": precision, "channels_last": bool(a.channels_last),
                "eval_box_stats": eval_boxes or None,
            },
        }

    def checkpoint(step: int, acc: Optional[float], final: bool) -> None:
        if main_proc:
            state = {**optimizer_tensors(opt), **rng_tensors(device), **scaler_tensors(scaler)}
            save_checkpoint(a.out, model, meta_now(step, acc, final), state,
                            train_info={"step": step, "data_seed": a.seed})
        barrier(world)

    # ---- loop
    bar = tqdm(total=total, initial=start, disable=not main_proc or a.no_progress, dynamic_ncols=True,
               unit="step", file=sys.stderr)
    net.train()
    if main_proc:
        record_boxes(start)
    t_start = time.perf_counter()
    t_win, n_win, loss_win, acc_win = time.perf_counter(), 0, 0.0, 0.0
    ema = None
    stop_at = total if a.stop_at is None else min(total, a.stop_at)
    step, stopped = start, False
    local_b = a.batch // world
    while step < stop_at:
        lr = lr_at(step, total, a.lr, a.schedule, a.warmup)
        set_lr(opt, lr)
        epoch, k = divmod(step, steps_per_epoch)
        perm = torch.randperm(len(y_tr), generator=torch.Generator().manual_seed(a.seed * 7919 + epoch))
        idx = perm[k * a.batch + rank * local_b:k * a.batch + (rank + 1) * local_b]
        xb = x_tr[idx].float() / 255.0
        if a.aug:
            xb = augment(xb, a.seed, step, rank)
        xb, yb = xb.to(device), y_tr[idx].to(device)
        if a.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        if a.box_grad == "spsa":  # the perturbations are seeded by the step: a resumed run draws the same ones
            logits, loss = spsa_train_step(model, opt, xb, yb, a.spsa_delta, precision,
                                           torch.Generator().manual_seed(a.seed * 104729 + step))
        else:
            logits, loss = train_step(net, opt, xb, yb, precision, scaler)
        step += 1
        n_win += 1
        loss_win += float(loss)
        acc_win += float((logits.argmax(1) == yb).float().mean())
        if not math.isfinite(float(loss)):
            raise SystemExit(f"error: training diverged at step {step} (loss {float(loss)}); try a smaller --lr")
        if n_win >= a.log_every or step == stop_at:
            dt = time.perf_counter() - t_win
            ema = loss_win / n_win if ema is None else 0.8 * ema + 0.2 * loss_win / n_win
            bar.set_postfix(loss=f"{ema:.3f}", acc=f"{100 * acc_win / n_win:.0f}%",
                            ips=f"{n_win * a.batch / dt:.1f}", lr=f"{lr:.2g}")
            bar.update(n_win)
            t_win, n_win, loss_win, acc_win = time.perf_counter(), 0, 0.0, 0.0
        if main_proc and a.box_every and (step % a.box_every == 0 or step == total):
            record_boxes(step)
        elapsed = train_seconds + time.perf_counter() - t_start
        out_of_time = a.time_limit is not None and elapsed > a.time_limit
        if world > 1 and a.time_limit is not None:
            out_of_time = bool(all_reduce(torch.tensor([float(out_of_time)], device=device), world).item() > 0)
        periodic = ckpt_every > 0 and step % ckpt_every == 0
        if step < total and (periodic or step == stop_at or out_of_time):
            train_seconds += time.perf_counter() - t_start
            checkpoint(step, None, final=False)
            t_start = time.perf_counter()
        if out_of_time and step < total:
            stopped = True
            break
    bar.close()
    train_seconds += time.perf_counter() - t_start
    if step < total or stopped:
        say(f"stopped at step {step}/{total}; continue with --resume")
        return meta_now(step, None, False)

    say(f"evaluating on {len(y_te)} {eval_name} images ...")
    preds = None
    if world == 1:  # keep the predictions: scripts/make_cub_results.py reuses them
        logits, boxes = predict(model, x_te, device)
        acc = 100.0 * float((logits.argmax(1) == y_te).double().mean())
        tl = float(F.cross_entropy(logits, y_te))
        preds = (logits, boxes)
        if boxes is not None:
            eval_boxes.update(box_stats(boxes))
    else:
        acc, tl = evaluate(model, x_te, y_te, device, rank, world)
    history.append({"step": step, "test_accuracy": round(acc, 4), "test_loss": round(tl, 5),
                    "train_loss": None if ema is None else round(ema, 5)})
    checkpoint(step, round(acc, 4), final=True)
    if preds is not None and main_proc and a.val_fraction is None:
        _save_eval_cache(paths["meta"], preds[0], preds[1], [r.image_id for r in te_recs])
    meta = meta_now(step, round(acc, 4), True)
    say(f"{eval_name} accuracy {acc:.2f}% on {len(y_te)} images ({len(class_ids)} classes); wrote {paths['meta']}")
    if world > 1:
        torch.distributed.destroy_process_group()
    return meta


__all__ = ["CUB_TASKS", "FULL_SCALE_COMMAND", "PAPER_TABLE3", "augment", "box_birds", "box_stats", "carve_validation", "decode_records", "evaluate", "is_cub_task",
           "load_split_tensors", "main", "parse_args", "predict"]
