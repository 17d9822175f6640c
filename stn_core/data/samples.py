"""Small real samples shipped in ``data/samples/`` (cut by ``scripts/make_samples.py``).

- ``mnist_test_500.npz``: the first 500 digits of the official MNIST test set.
- ``cub/``: CUB-200-2011 test-split birds (JPEG, longer side 160 px) + ``metadata.json``
  with boxes and 15 parts in the pixel coordinates of the shipped files.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from .common import DataError, repo_root
from .images import load_image_file


def samples_dir() -> Path:
    """``<repo>/data/samples``."""
    return repo_root() / "data" / "samples"


MNIST_SAMPLE = "mnist_test_500.npz"
CUB_DIR = "cub"
CUB_METADATA = "metadata.json"


@functools.lru_cache(maxsize=2)
def _mnist_sample(path: str) -> tuple[np.ndarray, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: MNIST sample missing; recreate it with: python scripts/make_samples.py")
    try:
        with np.load(p, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{p}: unreadable MNIST sample ({e})") from None
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{p}: images must be uint8 (N,28,28), got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],):
        raise DataError(f"{p}: {labels.shape} labels for {images.shape[0]} images")
    images.setflags(write=False)
    labels = labels.astype(np.int64)
    labels.setflags(write=False)
    return images, labels


def load_mnist_sample() -> tuple[np.ndarray, np.ndarray]:
    """The shipped MNIST test digits -> (images uint8 (N,28,28), labels int64 (N,)), N = 500 (copies)."""
    images, labels = _mnist_sample(str(samples_dir() / MNIST_SAMPLE))
    return images.copy(), labels.copy()


def load_cub_metadata() -> dict[str, Any]:
    """The parsed ``data/samples/cub/metadata.json``."""
    p = samples_dir() / CUB_DIR / CUB_METADATA
    if not p.is_file():
        raise DataError(f"{p}: CUB sample metadata missing; recreate it with: python scripts/make_samples.py")
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{p}: unreadable JSON ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("birds"), list):
        raise DataError(f"{p}: expected an object with a 'birds' list")
    return meta


def load_cub_sample(load_images: bool = True) -> list[dict[str, Any]]:
    """The shipped CUB birds as records (sorted by image_id).

    Each dict: image_id, file, path, class_id, class_name, is_train, size (w, h),
    bbox (x, y, w, h), parts (list of 15 {name, x, y, visible}),
    parts_xyv float64 (15, 3), and image: float32 (H, W, 3) in [0, 1] (None if not load_images)."""
    meta = load_cub_metadata()
    folder = samples_dir() / CUB_DIR
    out = []
    for b in meta["birds"]:
        rec = dict(b)
        rec["path"] = folder / b["file"]
        rec["bbox"] = tuple(float(v) for v in b["bbox"])
        rec["parts_xyv"] = np.array([[p["x"], p["y"], p["visible"]] for p in b["parts"]], dtype=np.float64)
        rec["image"] = None
        if load_images:
            if not rec["path"].is_file():
                raise DataError(f"{rec['path']}: sample image missing; recreate with: python scripts/make_samples.py")
            rec["image"], _ = load_image_file(rec["path"], max_side=None)
        out.append(rec)
    out.sort(key=lambda r: r["image_id"])
    return out


@functools.lru_cache(maxsize=1)
def _picker() -> dict[str, np.ndarray]:
    items: dict[str, np.ndarray] = {}
    images, labels = load_mnist_sample()
    for digit in range(10):
        idx = np.flatnonzero(labels == digit)
        if idx.size:
            i = int(idx[0])
            items[f"MNIST digit {digit} (test #{i})"] = images[i].astype(np.float32) / 255.0
    for rec in load_cub_sample(load_images=True):
        items[f"CUB {rec['class_name']} (#{rec['image_id']})"] = rec["image"]
    for a in items.values():
        a.setflags(write=False)
    return items


def list_sample_images() -> dict[str, np.ndarray]:
    """Images for a picker: name -> float32 array in [0, 1]; MNIST digits (one per class) are
    (28, 28), CUB birds (H, W, 3). Arrays are read-only shared copies: ``.copy()`` before editing."""
    return dict(_picker())
