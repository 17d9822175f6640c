"""Part analysis of learned attention boxes on CUB birds (does a transformer become a head detector?).

All geometry is in normalised image coordinates [-1, 1] (x right, y down), continuous
convention of ``align_corners=False``: a pixel coordinate ``p`` of a W-wide image is
``2 p / W - 1``. Because the models see the whole image resized to a square, these coordinates
are the same for the file on disk and the model input.

Definitions (used by ``scripts/make_cub_results.py`` and the app's CUB page):

* head parts: beak, crown, forehead, left eye, right eye, nape, throat; body parts: back,
  breast, belly, left wing, right wing (CUB's 15 parts minus legs and tail). Only parts
  annotated as visible count.
* a box *hits* a part group on a bird if it contains at least half of that group's visible
  parts (birds with no visible part of the group are left out of that rate).
* union IoU: IoU of the union of a model's boxes (clipped to the image) with the bird's
  annotated bounding box, rasterised on a 112×112 grid.
* head detector verdict: in a model, take the transformer with the highest head-hit rate and
  the one with the next highest; the claim holds if the difference is at least
  ``MIN_DIFF`` (0.15) AND its 95 % paired bootstrap interval (over birds) excludes 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from stn_core.models.cub import tiled_translations

HEAD_PARTS = ("beak", "crown", "forehead", "left eye", "right eye", "nape", "throat")
BODY_PARTS = ("back", "breast", "belly", "left wing", "right wing")
MIN_DIFF = 0.15
IOU_GRID = 112


def to_normalised(xy: np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixel coords (..., 2) of a W×H image → normalised [-1, 1] coords (..., 2)."""
    xy = np.asarray(xy, dtype=np.float64)
    return np.stack([2 * xy[..., 0] / width - 1, 2 * xy[..., 1] / height - 1], -1)


def bbox_to_normalised(bbox: Sequence[float], width: float, height: float) -> np.ndarray:
    """CUB bbox (x, y, w, h) in pixels → (x0, y0, x1, y1) normalised."""
    x, y, w, h = (float(v) for v in bbox)
    return np.array([2 * x / width - 1, 2 * y / height - 1, 2 * (x + w) / width - 1, 2 * (y + h) / height - 1])


def group_points(parts_xyv: np.ndarray, part_names: Sequence[str], group: Sequence[str]) -> np.ndarray:
    """Visible points (K, 2) of one part group from (15, 3) rows (x, y, visible)."""
    names = list(part_names)
    idx = [names.index(g) for g in group]
    rows = np.asarray(parts_xyv, dtype=np.float64)[idx]
    return rows[rows[:, 2] > 0, :2]


def box_contains(box: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Which points (K, 2) lie inside box (x0, y0, x1, y1) → bool (K,)."""
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    return (pts[:, 0] >= box[0]) & (pts[:, 0] <= box[2]) & (pts[:, 1] >= box[1]) & (pts[:, 1] <= box[3])


def group_hit(box: np.ndarray, pts: np.ndarray) -> Optional[bool]:
    """True if ``box`` holds at least half of the points; None when there are no points."""
    if len(pts) == 0:
        return None
    return bool(box_contains(box, pts).mean() >= 0.5)


def union_iou(boxes: np.ndarray, bbox: np.ndarray, n: int = IOU_GRID) -> float:
    """IoU of the union of boxes (K, 4) (clipped to [-1, 1]) with bbox (4,), on an n×n grid."""
    c = (np.arange(n) + 0.5) / n * 2 - 1
    xx, yy = np.meshgrid(c, c)

    def mask(b: np.ndarray) -> np.ndarray:
        return (xx >= b[0]) & (xx <= b[2]) & (yy >= b[1]) & (yy <= b[3])

    u = np.zeros_like(xx, dtype=bool)
    for b in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        u |= mask(b)
    g = mask(np.asarray(bbox, dtype=np.float64))
    union = (u | g).sum()
    return float((u & g).sum() / union) if union else 0.0


@dataclass
class Bird:
    """One test bird for the analysis: parts in normalised coords (15, 3) rows (x, y, visible)."""

    parts: np.ndarray
    bbox: np.ndarray  # (x0, y0, x1, y1) normalised
    part_names: tuple[str, ...]

    @classmethod
    def from_pixels(cls, parts_xyv: np.ndarray, bbox_xywh: Sequence[float], width: float, height: float,
                    part_names: Sequence[str]) -> "Bird":
        p = np.asarray(parts_xyv, dtype=np.float64).copy()
        p[:, :2] = to_normalised(p[:, :2], width, height)
        return cls(p, bbox_to_normalised(bbox_xywh, width, height), tuple(part_names))


@dataclass
class PartStats:
    """Per-bird hit matrices of one model: head/body (N, n_st) float with NaN = not applicable."""

    head: np.ndarray
    body: np.ndarray
    iou: np.ndarray  # (N,)
    head_frac: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N, n_st) fraction of head parts inside

    @property
    def n_st(self) -> int:
        return self.head.shape[1]

    def rates(self) -> list[dict]:
        """Per transformer: head/body hit rates, counts, mean head fraction."""
        out = []
        for k in range(self.n_st):
            h, b = self.head[:, k], self.body[:, k]
            out.append({"transformer": k, "head_hit": float(np.nanmean(h)) if np.isfinite(h).any() else None,
                        "n_head": int(np.isfinite(h).sum()),
                        "body_hit": float(np.nanmean(b)) if np.isfinite(b).any() else None,
                        "n_body": int(np.isfinite(b).sum())})
        return out

    def mean_iou(self) -> float:
        return float(np.mean(self.iou)) if len(self.iou) else float("nan")


def part_stats(boxes: np.ndarray, birds: Sequence[Bird]) -> PartStats:
    """boxes (N, n_st, 4) normalised, one row per bird → :class:`PartStats`."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 3 or boxes.shape[0] != len(birds) or boxes.shape[2] != 4:
        raise ValueError(f"boxes must be (N={len(birds)}, n_st, 4), got {boxes.shape}")
    n, k = boxes.shape[:2]
    head = np.full((n, k), np.nan)
    body = np.full((n, k), np.nan)
    frac = np.full((n, k), np.nan)
    iou = np.zeros(n)
    for i, bird in enumerate(birds):
        hp = group_points(bird.parts, bird.part_names, HEAD_PARTS)
        bp = group_points(bird.parts, bird.part_names, BODY_PARTS)
        for j in range(k):
            h = group_hit(boxes[i, j], hp)
            b = group_hit(boxes[i, j], bp)
            if h is not None:
                head[i, j] = float(h)
                frac[i, j] = float(box_contains(boxes[i, j], hp).mean())
            if b is not None:
                body[i, j] = float(b)
        iou[i] = union_iou(boxes[i], bird.bbox)
    return PartStats(head, body, iou, frac)


def paired_diff_ci(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float, float]:
    """Mean of a − b over birds where both are defined, with a paired bootstrap interval."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(d.mean()), float(lo), float(hi)


def head_detector_verdict(stats: PartStats, min_diff: float = MIN_DIFF) -> dict:
    """Does one transformer become a head detector? See the module docstring for the rule.

    Returns {"holds": bool, "best": k, "runner_up": k2, "diff": d, "ci": (lo, hi), "rule": str}."""
    rates = [r["head_hit"] if r["head_hit"] is not None else -1.0 for r in stats.rates()]
    if stats.n_st < 2:
        return {"holds": False, "best": 0, "runner_up": None, "diff": float("nan"), "ci": (float("nan"),) * 2,
                "rule": "needs at least 2 transformers"}
    order = np.argsort(rates)[::-1]
    best, second = int(order[0]), int(order[1])
    d, lo, hi = paired_diff_ci(stats.head[:, best], stats.head[:, second])
    holds = bool(np.isfinite(d) and d >= min_diff and lo > 0)
    return {"holds": holds, "best": best, "runner_up": second, "diff": d, "ci": (lo, hi),
            "rule": f"head-hit(best) − head-hit(runner-up) ≥ {min_diff:g} and its 95% paired bootstrap CI > 0"}


def tiled_boxes(n_st: int, n: int, scale: float = 0.5) -> np.ndarray:
    """The tiled start boxes (n, n_st, 4) of an n_st×ST model (the control for the analysis)."""
    return start_boxes(n_st, n, scale, "tiled")


def start_boxes(n_st: int, n: int, scale: float = 0.5, loc_init: str = "tiled") -> np.ndarray:
    """The boxes (n, n_st, 4) an n_st×ST model starts from: tiled, or all centred (``loc_init="centre"``)."""
    t = np.array(tiled_translations(n_st) if loc_init == "tiled" else [(0.0, 0.0)] * n_st, dtype=np.float64)
    b = np.stack([t[:, 0] - scale, t[:, 1] - scale, t[:, 0] + scale, t[:, 1] + scale], 1)
    return np.broadcast_to(b, (n, n_st, 4)).copy()


def mean_boxes(boxes: np.ndarray) -> np.ndarray:
    """Control for per-bird localisation: every bird gets each transformer's MEAN box (N, n_st, 4).

    If a transformer's head-hit rate is no higher than with its mean box, it did not learn to find
    heads bird by bird; it only moved to where heads usually are."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.broadcast_to(boxes.mean(0, keepdims=True), boxes.shape).copy()


def centre_spread(boxes: np.ndarray) -> np.ndarray:
    """Std over birds of each transformer's box centre → (n_st, 2) (x, y), normalised units."""
    boxes = np.asarray(boxes, dtype=np.float64)
    c = np.stack([(boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2], -1)
    return c.std(0)


def whole_image_iou(birds: Sequence[Bird]) -> float:
    """Mean IoU of the whole image with the bird box (what a model without attention 'looks at')."""
    return float(np.mean([union_iou(np.array([[-1.0, -1.0, 1.0, 1.0]]), b.bbox) for b in birds]))


__all__ = ["BODY_PARTS", "Bird", "HEAD_PARTS", "MIN_DIFF", "PartStats", "bbox_to_normalised", "box_contains",
           "centre_spread", "group_hit", "group_points", "head_detector_verdict", "mean_boxes", "paired_diff_ci", "part_stats", "start_boxes", "tiled_boxes",
           "to_normalised", "union_iou", "whole_image_iou"]


# --------------------------------------------------------------------------- the loss's pull on each box
def group_centroid(bird: Bird, group: Sequence[str]) -> np.ndarray:
    """Mean (x, y) of a bird's visible parts of ``group`` (normalised); (NaN, NaN) when none is visible."""
    pts = group_points(bird.parts, bird.part_names, group)
    return pts.mean(0) if len(pts) else np.full(2, np.nan)


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A seeded permutation of range(n) with no fixed point (n ≥ 2): every bird paired with another bird."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 items, got {n}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)  # one random cycle through all n birds: order[i] → order[i + 1]
    out = np.empty(n, dtype=np.int64)
    out[order] = np.roll(order, -1)
    return out


def pull_cosines(descent: np.ndarray, centres: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Cosine between the loss's descent direction on each box and the way to a target.

    descent (N, 2): −∂L/∂(tx, ty) of one transformer per bird; centres (N, 2): its box centres; targets
    (N, 2): a point per bird (NaN rows: no target). Returns (N,) with NaN where the target is missing or
    either vector is zero."""
    d = np.asarray(descent, dtype=np.float64)
    v = np.asarray(targets, dtype=np.float64) - np.asarray(centres, dtype=np.float64)
    nd, nv = np.linalg.norm(d, axis=1), np.linalg.norm(v, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (d * v).sum(1) / (nd * nv)
    cos[~np.isfinite(cos) | (nd == 0) | (nv == 0)] = np.nan
    return cos
