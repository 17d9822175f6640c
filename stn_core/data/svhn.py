"""SVHN house numbers (format 1: full images + ``digitStruct.mat``) as digit strings for the Table 2 readers.

The official files (http://ufldl.stanford.edu/housenumbers/: ``train.tar.gz``, ``test.tar.gz``,
``extra.tar.gz``) unpack to folders of PNGs with a ``digitStruct.mat`` — a MATLAB v7.3 file, i.e. HDF5 —
holding each image's name and per-digit boxes (label, left, top, width, height; label 10 is the digit 0).
They are not available offline here, so STN Lab's shipped results use MNIST strings
(:mod:`stn_core.data.sequences`); this loader lets a user with the files run the same readers on SVHN.

Crops [the paper's two settings, following Goodfellow et al. 2014 for the tight one]: the union of the
digit boxes, grown by 30 % (``tight``, 64×64) or by 130 % (``loose``, 128×128, "more loosely bounded"
[ours: the paper gives no factor]) about its centre, cut (zero outside the photo) and resized without
keeping the aspect ratio; grey levels (ITU-R 601 luma) in [0, 1], since the readers take one channel
[ours]. Images with more than 5 digits (a handful in SVHN) are skipped, as in the paper.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .common import DataError
from .sequences import MAX_DIGITS, NULL, SIZES, Strings

#: Growth of the digits' union box per crop kind (1.3: the box + 30 %).
GROWTH = {"tight": 1.3, "loose": 2.3}
#: Most images read from one digitStruct.mat (SVHN's extra split has 202,353).
MAX_RECORDS = 300_000


@dataclass(frozen=True)
class SvhnRecord:
    """One image: its file ``name`` and ``boxes`` float64 ``(k, 5)`` rows (label 0–9, left, top, width, height)."""

    name: str
    boxes: np.ndarray


def _h5py():
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py is in requirements.txt
        raise DataError("reading SVHN's digitStruct.mat needs h5py: pip install h5py") from e
    return h5py


def _values(f, item) -> list[float]:
    """A digitStruct field: one number stored inline, or a column of references to 1×1 numbers."""
    arr = item[()] if hasattr(item, "shape") else item
    arr = np.asarray(arr)
    if arr.size == 1 and arr.dtype != object:
        return [float(arr.reshape(-1)[0])]
    return [float(np.asarray(f[ref][()]).reshape(-1)[0]) for ref in arr.reshape(-1)]


def read_digit_struct(path: str | os.PathLike, limit: int | None = None) -> list[SvhnRecord]:
    """The records of an SVHN format-1 ``digitStruct.mat`` (HDF5); ``limit``: the first so many."""
    h5py = _h5py()
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p} not found: an SVHN split folder holds digitStruct.mat beside its PNGs")
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise DataError(f"{p} is not an HDF5 (MATLAB v7.3) file: {e}") from None
    with f:
        try:
            ds = f["digitStruct"]
            names, bboxes = ds["name"], ds["bbox"]
        except KeyError:
            raise DataError(f"{p} has no digitStruct/name and digitStruct/bbox: not SVHN's digitStruct.mat") from None
        n = names.shape[0]
        if n != bboxes.shape[0] or n > MAX_RECORDS:
            raise DataError(f"{p}: {n} names and {bboxes.shape[0]} boxes (at most {MAX_RECORDS})")
        out = []
        for i in range(n if limit is None else min(n, int(limit))):
            chars = np.asarray(f[names[i, 0]][()]).reshape(-1)
            name = "".join(chr(int(c)) for c in chars)
            if "/" in name or "\\" in name or name.startswith("."):
                raise DataError(f"{p}: image name {name!r} is not a plain file name")
            g = f[bboxes[i, 0]]
            cols = [_values(f, g[k]) for k in ("label", "left", "top", "width", "height")]
            if len({len(c) for c in cols}) != 1:
                raise DataError(f"{p}: image {name} has box fields of different lengths")
            boxes = np.array(cols, dtype=np.float64).T
            boxes[:, 0] = np.where(boxes[:, 0] == 10, 0, boxes[:, 0])
            if not (np.isfinite(boxes).all() and np.isin(boxes[:, 0], np.arange(10)).all() and (boxes[:, 3:] > 0).all()):
                raise DataError(f"{p}: image {name} has a label outside 1–10 or a box that is not a positive size")
            out.append(SvhnRecord(name, boxes))
    return out


def crop_box(boxes: np.ndarray, crop: str) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) px of the crop around ``boxes (k, 5)``: their union grown by ``GROWTH[crop]``."""
    x0 = boxes[:, 1].min()
    y0 = boxes[:, 2].min()
    x1 = (boxes[:, 1] + boxes[:, 3]).max()
    y1 = (boxes[:, 2] + boxes[:, 4]).max()
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 * GROWTH[crop], (y1 - y0) / 2 * GROWTH[crop]
    return cx - hw, cy - hh, cx + hw, cy + hh


def load_svhn(folder: str | os.PathLike, crop: str = "tight", limit: int | None = None) -> Strings:
    """An SVHN split folder (PNGs + ``digitStruct.mat``) → :class:`~stn_core.data.sequences.Strings`
    (``boxes``: the digits' union in normalised crop coordinates)."""
    from PIL import Image

    if crop not in SIZES:
        raise ValueError(f"crop must be one of {', '.join(SIZES)}, got {crop!r}")
    side = SIZES[crop]
    root = Path(folder)
    recs = read_digit_struct(root / "digitStruct.mat", limit)
    imgs, digits, lengths, boxes = [], [], [], []
    g = GROWTH[crop]
    for r in recs:
        k = r.boxes.shape[0]
        if not 1 <= k <= MAX_DIGITS:
            continue
        try:
            with Image.open(root / r.name) as im:
                im.load()
                grey = im.convert("L")
        except (OSError, ValueError) as e:
            raise DataError(f"{root / r.name}: cannot read the image ({e})") from None
        box = crop_box(r.boxes, crop)
        patch = grey.transform((side, side), Image.Transform.EXTENT, box, Image.Resampling.BILINEAR, fillcolor=0)
        imgs.append(torch.from_numpy(np.asarray(patch, dtype=np.float32) / 255.0))
        d = torch.full((MAX_DIGITS,), NULL, dtype=torch.long)
        d[:k] = torch.from_numpy(r.boxes[:, 0].astype(np.int64))
        digits.append(d)
        lengths.append(k)
        half = 1.0 / g
        boxes.append(torch.tensor([[-half, -half], [half, -half], [half, half], [-half, half]]))
    if not imgs:
        raise DataError(f"{root}: no image with 1–{MAX_DIGITS} digits")
    return Strings(torch.stack(imgs).unsqueeze(1), torch.stack(digits), torch.tensor(lengths), torch.stack(boxes))


__all__ = ["GROWTH", "SvhnRecord", "crop_box", "load_svhn", "read_digit_struct"]
