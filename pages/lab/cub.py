"""Logic of the app's CUB attention page (and the Tour page): predictions, boxes, drawings.

Public API (stable, used by pages/cub.py and pages/tour.py):

* ``predict_bird(model, meta, image) -> BirdPrediction``: image float (H, W, 3) RGB in [0, 1],
  any size (resized to the model's square input as in training). Fields:
  ``boxes`` float (n_st, 4) pixel coords (x0, y0, x1, y1) of the GIVEN image (empty (0, 4) for
  the baseline), ``boxes_norm`` the same in normalised [-1, 1] coords, ``crops`` list of float
  (c, c, 3) in [0, 1] (what each transformer passed to the backbone), ``top5`` list of
  (class_id, class_name, prob).
* ``draw_boxes(image, boxes, parts=None, bbox=None) -> uint8 (H, W, 3)``: boxes in pixel coords
  drawn in the fixed colours red, green, blue, orange (transformer 1, 2, 3, 4); optional CUB
  parts (15, 3) rows (x, y, visible) as dots (head parts white, body parts yellow, others grey)
  and the annotated bird box (x, y, w, h) dashed in white.
* ``box_replay_gif(image, steps, boxes (T, n_st, 4) normalised, per_epoch) -> bytes``: one bird's
  boxes through training (the checkpoint's ``extra.box_history``) as an animated GIF.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from pages.lab import links
from pages.lab.export import subsample, training_replay_gif
from stn_core.analysis.cub import BODY_PARTS, HEAD_PARTS
from stn_core.data.common import repo_root
from stn_core.data.cub import load_cub
from stn_core.data.images import load_image_file
from stn_core.data.samples import load_cub_metadata, load_cub_sample
from stn_core.registry import CUB_LABELS, CUB_SIZES, cub_key, cub_st_keys

#: Transformer colours, in order (RGB).
COLOURS: tuple[tuple[int, int, int], ...] = ((230, 25, 25), (30, 180, 40), (40, 90, 235), (255, 150, 0))
COLOUR_NAMES = ("red", "green", "blue", "orange")
@dataclass
class BirdPrediction:
    boxes: np.ndarray  # (n_st, 4) pixel coords of the given image
    boxes_norm: np.ndarray  # (n_st, 4) normalised [-1, 1]
    crops: list[np.ndarray]  # float (c, c, 3) in [0, 1]
    top5: list[tuple[int, str, float]]


# --------------------------------------------------------------------------- checkpoints

def class_names(meta: dict[str, Any]) -> dict[int, str]:
    """Official class id → display name (from the checkpoint; falls back to the id)."""
    names = (meta.get("extra") or {}).get("class_names") or {}
    return {int(c): names.get(str(c), f"class {c}") for c in meta.get("classes", [])}


# --------------------------------------------------------------------------- prediction

def to_model_input(image: np.ndarray, size: int) -> torch.Tensor:
    """float (H, W, 3) in [0, 1] → (1, 3, size, size) as in training (uint8, PIL bilinear resize)."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {img.shape}")
    u8 = np.clip(np.rint(img[..., :3].astype(np.float64) * 255), 0, 255).astype(np.uint8)
    r = np.asarray(Image.fromarray(u8).resize((size, size), Image.BILINEAR, reducing_gap=2.0))
    return torch.from_numpy(r.copy()).permute(2, 0, 1)[None].float() / 255.0


def norm_to_pixels(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised (…, 4) boxes → pixel (x0, y0, x1, y1) of a W×H image (continuous coords)."""
    b = np.array(boxes, dtype=np.float64, copy=True)
    b[..., 0::2] = (b[..., 0::2] + 1) * width / 2
    b[..., 1::2] = (b[..., 1::2] + 1) * height / 2
    return b


@torch.no_grad()
def predict_batch(model, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, C) and normalised boxes (N, n_st, 4) for float (H, W, 3) images."""
    model.eval()
    x = torch.cat([to_model_input(im, model.input_size) for im in images])
    out = model.views(x)
    probs = torch.softmax(out.logits, 1).numpy()
    nb = out.boxes.numpy() if out.boxes is not None else np.zeros((len(images), 0, 4))
    return probs, nb


@torch.no_grad()
def predict_bird(model, meta: dict[str, Any], image: np.ndarray) -> BirdPrediction:
    """Top-5 classes, boxes (pixels of ``image``) and crops of one bird photo; see the module doc."""
    model.eval()
    x = to_model_input(image, int(meta.get("input_size", model.input_size)))
    out = model.views(x)
    probs = torch.softmax(out.logits, 1)[0].numpy()
    names = class_names(meta)
    classes = [int(c) for c in meta.get("classes", model.classes)]
    order = np.argsort(-probs)[:5]
    top5 = [(classes[i], names.get(classes[i], str(classes[i])), float(probs[i])) for i in order]
    h, w = image.shape[:2]
    if out.params is None:
        return BirdPrediction(np.zeros((0, 4)), np.zeros((0, 4)), [], top5)
    bn = out.boxes[0].numpy().astype(np.float64)
    crops_t = model.crops(x, out.params)[0]  # (n_st, 3, c, c)
    crops = [c.permute(1, 2, 0).clamp(0, 1).numpy().astype(np.float32) for c in crops_t]
    return BirdPrediction(norm_to_pixels(bn, w, h), bn, crops, top5)


# --------------------------------------------------------------------------- drawing

def _to_uint8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    if img.dtype == np.uint8:
        return img[..., :3].copy()
    return np.clip(np.rint(img[..., :3].astype(np.float64) * 255), 0, 255).astype(np.uint8)


def draw_boxes(image: np.ndarray, boxes: np.ndarray, parts: Optional[np.ndarray] = None,
               bbox: Optional[Sequence[float]] = None, part_names: Optional[Sequence[str]] = None,
               width: Optional[int] = None) -> np.ndarray:
    """Draw transformer boxes (K, 4) pixel (x0, y0, x1, y1) in red/green/blue/orange → uint8 (H, W, 3).

    parts: optional (15, 3) rows (x, y, visible) in pixels; bbox: optional (x, y, w, h)."""

    rgb = _to_uint8(image)
    h, w = rgb.shape[:2]
    lw = width or max(1, round(max(h, w) / 120))
    im = Image.fromarray(rgb)
    d = ImageDraw.Draw(im)
    if bbox is not None:
        x, y, bw, bh = (float(v) for v in bbox)
        _dashed_rect(d, (x, y, x + bw, y + bh), (255, 255, 255), lw)
    for k, b in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        if not np.isfinite(b).all():
            continue
        x0, y0, x1, y1 = (float(v) for v in b)
        # at least one pixel wide and tall, corners in order, whatever the image size (a 1×1 upload)
        x0, x1 = min(x0, x1), max(x0, x1 - 1, x0 + 1)
        y0, y1 = min(y0, y1), max(y0, y1 - 1, y0 + 1)
        d.rectangle([x0, y0, x1, y1], outline=COLOURS[k % len(COLOURS)], width=lw)
    if parts is not None:
        names = list(part_names) if part_names is not None else None
        r = max(2, lw + 1)
        for i, (px, py, vis) in enumerate(np.asarray(parts, dtype=np.float64).reshape(-1, 3)):
            if vis <= 0:
                continue
            name = names[i] if names and i < len(names) else ""
            fill = (255, 255, 255) if name in HEAD_PARTS else (255, 230, 0) if name in BODY_PARTS else (160, 160, 160)
            d.ellipse([px - r, py - r, px + r, py + r], fill=fill, outline=(0, 0, 0))
    return np.asarray(im)


def _dashed_rect(d, box, colour, lw: int, dash: int = 6) -> None:
    x0, y0, x1, y1 = box
    for a, b, horizontal, fixed in ((x0, x1, True, y0), (x0, x1, True, y1), (y0, y1, False, x0), (y0, y1, False, x1)):
        t = a
        while t < b:
            e = min(b, t + dash)
            d.line([(t, fixed), (e, fixed)] if horizontal else [(fixed, t), (fixed, e)], fill=colour, width=lw)
            t += 2 * dash


def history_frames(meta: dict[str, Any]) -> tuple[list[int], np.ndarray, list[dict]]:
    """Box history recorded during training: (steps, boxes (T, n_birds, n_st, 4) normalised, birds)."""
    hist = (meta.get("extra") or {}).get("box_history") or {}
    steps = [int(s) for s in hist.get("steps", [])]
    boxes = np.asarray(hist.get("boxes", []), dtype=np.float64)
    if not steps or boxes.ndim != 4:
        return [], np.zeros((0, 0, 0, 4)), list(hist.get("birds", []))
    return steps, boxes, list(hist.get("birds", []))


def steps_per_epoch(meta: dict[str, Any]) -> Optional[int]:
    """Training steps per epoch recorded in a CUB checkpoint (``extra.steps_per_epoch``), or None."""
    v = (meta.get("extra") or {}).get("steps_per_epoch")
    try:
        return int(v) if v and int(v) > 0 else None
    except (TypeError, ValueError):
        return None


def box_replay_frames(image: np.ndarray, steps: Sequence[int], boxes: np.ndarray,
                      per_epoch: Optional[int] = None, side: int = 320) -> tuple[list[np.ndarray], list[str]]:
    """Frames of one bird's box replay: ``image`` float/uint8 (H, W, 3) scaled so its longer side
    is ``side`` px, with the boxes ``boxes (T, n_st, 4)`` (normalised [-1, 1], as in
    :func:`history_frames` for one bird) at each of ``steps`` (T,) drawn by :func:`draw_boxes`.
    Longer histories are thinned evenly to :data:`pages.lab.export.MAX_FRAMES` (first and last
    kept). Returns (uint8 frames, captions "step N · epoch E")."""


    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 3 or b.shape[-1] != 4 or b.shape[0] != len(steps):
        raise ValueError(f"expected boxes (T, n_st, 4) for {len(steps)} steps, got shape {b.shape}")
    if len(steps) < 1:
        raise ValueError("this checkpoint has no box history to replay")
    u8 = _to_uint8(image)
    h, w = u8.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    base = Image.fromarray(u8).resize(size, Image.BILINEAR)
    # one shared palette of 224 colours (room left for the box colours and the caption): the GIF
    # encoder's per-frame colour reduction is then about 3x faster, and the photo looks the same
    base = np.asarray(base.quantize(224, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).convert("RGB"))
    frames, captions = [], []
    for t in subsample(len(steps)):
        frames.append(draw_boxes(base, norm_to_pixels(b[t], size[0], size[1])))
        step = int(steps[t])
        captions.append(f"step {step}" + (f" · epoch {step / per_epoch:.2f}" if per_epoch else ""))
    return frames, captions


def box_replay_gif(image: np.ndarray, steps: Sequence[int], boxes: np.ndarray, per_epoch: Optional[int] = None,
                   fps: float = 4.0, side: int = 320) -> bytes:
    """Animated GIF of :func:`box_replay_frames` (one bird, its boxes through training)."""
    frames, captions = box_replay_frames(image, steps, boxes, per_epoch, side)
    return training_replay_gif(frames, fps=fps, captions=captions, side=side)


def read_part_table(path: Optional[Path] = None) -> Optional[dict[str, Any]]:
    """``results/cub.json`` (written by scripts/make_cub_results.py) or None when absent/unreadable."""
    p = path or repo_root() / "results" / "cub.json"
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def part_table_rows(data: dict[str, Any], size: int = 224) -> list[dict[str, Any]]:
    """Flat rows (model, transformer, colour, head-hit %, body-hit %, start boxes …) of the models of
    one input size, for a table."""
    rows = []
    for key in cub_st_keys(size):
        m = (data.get("models") or {}).get(cub_key(key, size))
        if not m or "transformers" not in m:
            continue
        for t in m["transformers"]:
            def p(v):
                return None if v is None else round(100 * float(v), 1)
            rows.append({"model": CUB_LABELS[key], "transformer": f"{t['transformer'] + 1} ({t['colour']})",
                         "head-hit %": p(t["head_hit"]), "body-hit %": p(t["body_hit"]),
                         "start boxes head-hit %": p(t.get("tiled_head_hit")),
                         "mean box for every bird: head-hit %": p(t.get("mean_box_head_hit")),
                         "start boxes body-hit %": p(t.get("tiled_body_hit"))})
    return rows


# --------------------------------------------------------------------------- birds

def sample_birds() -> list[dict[str, Any]]:
    """The shipped test birds (data/samples/cub) as dicts: image_id, class_id, class_name, image
    float (H, W, 3), bbox (x, y, w, h), parts (15, 3), part_names."""

    names = tuple(load_cub_metadata().get("part_names", []))
    out = []
    for r in load_cub_sample(load_images=True):
        out.append({"image_id": r["image_id"], "class_id": r["class_id"], "class_name": r["class_name"],
                    "image": r["image"], "bbox": r["bbox"], "parts": r["parts_xyv"], "part_names": names,
                    "source": "shipped sample"})
    return out


def dataset_birds(classes: Sequence[int], root: Optional[Path] = None, limit: Optional[int] = None
                  ) -> list[dict[str, Any]]:
    """Test birds of ``classes`` from the full CUB copy (images not loaded: key "path")."""
    recs = load_cub(root, classes=list(classes), split="test")
    if limit is not None:
        recs = recs[:limit]
    return [{"image_id": r.image_id, "class_id": r.class_id, "class_name": r.class_name, "path": str(r.path),
             "bbox": r.bbox, "parts": r.parts, "part_names": r.part_names, "source": "CUB test split"}
            for r in recs]


def load_bird_image(bird: dict[str, Any]) -> np.ndarray:
    """The float (H, W, 3) image of a bird dict (from ``image`` or by reading ``path``)."""
    if bird.get("image") is not None:
        return bird["image"]

    img, _ = load_image_file(bird["path"], max_side=None)
    return img if img.ndim == 3 else np.repeat(img[..., None], 3, -1)


# --------------------------------------------------------------------------- page state

SOURCES = ("sample", "dataset", "upload")
SOURCE_LABELS = {"sample": "Shipped test birds", "dataset": "CUB test split (full copy)", "upload": "Your photo"}


@dataclass
class PageState:
    """The CUB page's view (kept in the URL): bird source, class filter (0 = all), index within
    the filtered birds, overlays, the ST model of the gallery/replay tabs, and the models' input size."""

    src: str = "sample"
    cls: int = 0
    i: int = 0
    parts: bool = False
    bbox: bool = False
    st_model: str = "2st"
    res: int = 448

    def query(self) -> dict[str, str]:
        return {"src": self.src, "cls": str(self.cls), "i": str(self.i), "parts": str(int(self.parts)),
                "bbox": str(int(self.bbox)), "st": self.st_model, "res": str(self.res)}


def parse_state(q: dict[str, str], dataset_available: bool) -> tuple[PageState, list[str]]:
    """PageState from URL query parameters; bad values fall back to defaults with a warning."""
    s, warns = PageState(), []
    src = q.get("src", "sample")
    if src not in SOURCES or (src == "dataset" and not dataset_available):
        if src != "sample":
            warns.append(f"Bird source {src!r} is not available here; showing the shipped birds.")
        src = "sample"
    s.src = src
    for key in ("cls", "i"):
        if key in q:
            v = links.parse_int(q[key], 0)
            if v is None:
                warns.append(f"Ignored the bad value {q[key][:20]!r} of {key!r} in the link.")
            else:
                setattr(s, key, v)
    s.parts = q.get("parts", "0") == "1"
    s.bbox = q.get("bbox", "0") == "1"
    st_model = q.get("st", "2st")
    if st_model not in cub_st_keys(448):  # any size's: the size is read below
        warns.append(f"Unknown ST model {st_model!r}; showing the 2×ST-CNN.")
        st_model = "2st"
    s.st_model = st_model
    res = links.parse_int(q.get("res", "448"))
    if res not in CUB_SIZES:
        warns.append(f"Unknown input size {q.get('res', '')[:10]!r}; showing the 448-px models.")
        res = 448
    s.res = res
    return s, warns


def filter_birds(birds: Sequence[dict[str, Any]], cls: int) -> list[dict[str, Any]]:
    """Birds of one class id (0: all)."""
    return [b for b in birds if cls == 0 or b["class_id"] == cls]


def column_grid(n: int, max_per_row: int = 3) -> tuple[int, int]:
    """(rows, columns per row) for ``n`` equal-width model columns: at most ``max_per_row`` a row, the rows as
    even as they can be (6 → 2 rows of 3, 8 → 3 rows of 3 with one left empty, 4 → 2 of 2), so a column on a
    projector keeps room for its crops and its top-5 table."""
    if n < 1:
        return 1, 1
    rows = -(-n // max_per_row)
    return rows, -(-n // rows)


def side_by_side(images: Sequence[np.ndarray], height: int = 240, gap: int = 8) -> np.ndarray:
    """Images (any sizes, float or uint8) resized to ``height`` and joined left to right → uint8."""
    tiles = []
    for im in images:
        u8 = _to_uint8(im)
        w = max(1, round(u8.shape[1] * height / u8.shape[0]))
        tiles.append(np.asarray(Image.fromarray(u8).resize((w, height), Image.BILINEAR)))
    if not tiles:
        return np.full((height, height, 3), 255, np.uint8)
    out = [tiles[0]]
    for t in tiles[1:]:
        out += [np.full((height, gap, 3), 255, np.uint8), t]
    return np.concatenate(out, 1)

