"""View logic of the Trained model explorer page (no Streamlit): which model to open first, and a
user's own digit (upload or drawing) made MNIST-like and distorted by hand with the playground's
controls. Checkpoints: :mod:`stn_core.registry`; inference: :mod:`stn_core.analysis.inspect`;
Table 1: :mod:`stn_core.analysis.table1`."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from pages.lab import playground as pg
from stn_core.registry import DISTORTIONS, LONG_PREFIX, MODEL_KEYS, PREFERRED, Entry, is_live, training_samples


def model_options(found: Mapping[tuple[str, str], Entry], dist: str) -> list[str]:
    """Model keys found for ``dist``: the Table 1 models in table order, then their longer-schedule
    runs, then live runs by name."""
    return ([k for k in MODEL_KEYS if (dist, k) in found] + [LONG_PREFIX + k for k in MODEL_KEYS
                                                             if (dist, LONG_PREFIX + k) in found]
            + sorted(k for d, k in found if d == dist and is_live(k)))


def default_choice(found: Mapping[tuple[str, str], Entry]) -> tuple[str, str] | None:
    """The (dist, key) to open first: the preferred model of the distortion with most usable Table 1
    checkpoints (then most usable checkpoints of any kind, then the most training samples in its Table 1
    models — the best-trained column; ties: table order); None when nothing is usable."""
    usable = [k for k, e in found.items() if e.usable]
    if not usable:
        return None
    table = {d: sum(1 for dd, k in usable if dd == d and k in MODEL_KEYS) for d in DISTORTIONS}
    counts = {d: sum(1 for dd, _ in usable if dd == d) for d in DISTORTIONS}
    samples = {d: sum(training_samples(found[(dd, k)].meta) or 0 for dd, k in usable
                      if dd == d and k in MODEL_KEYS)
               for d in DISTORTIONS}
    dist = max(DISTORTIONS, key=lambda d: (table[d], counts[d], samples[d], -DISTORTIONS.index(d)))
    return dist, next((k for k in PREFERRED if (dist, k) in usable), next(k for d, k in usable if d == dist))


# --------------------------------------------------------------------------- own digits

def prepare_digit(image: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Any picture of a digit → an MNIST-like digit: float32 ``(28, 28)`` in [0, 1], light ink
    on black, the ink scaled so its longer side is 20 px and centred by its centre of mass
    (as MNIST was made). ``image``: ``(H, W)`` or ``(H, W, 3)``, uint8 or float in [0, 1].
    Returns (digit, notes for the user)."""
    a = pg.as_rgb(image).mean(axis=2)
    notes: list[str] = []
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if float(np.median(border)) > 0.5:
        a = 1.0 - a
        notes.append("dark ink on a light background: inverted to MNIST's light ink on black")
        border = 1.0 - border
    a = np.clip(a - float(np.median(border)), 0.0, None)  # background to 0
    peak = float(a.max())
    if peak < 0.05:
        notes.append("no ink found: the digit is blank")
        return np.zeros((28, 28), np.float32), notes
    a = a / peak
    rows, cols = np.nonzero(a > 0.2)
    a = a[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = a.shape
    s = 20.0 / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    small = F.interpolate(t, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0, 0].numpy()
    small = np.clip(small, 0.0, 1.0)
    total = float(small.sum())
    yy, xx = np.mgrid[0:nh, 0:nw]
    cy, cx = float((yy * small).sum() / total), float((xx * small).sum() / total)
    top = int(np.clip(round(13.5 - cy), 0, 28 - nh))
    left = int(np.clip(round(13.5 - cx), 0, 28 - nw))
    out = np.zeros((28, 28), np.float32)
    out[top:top + nh, left:left + nw] = small
    return out, notes


def to_canvas(image: np.ndarray, size: int) -> np.ndarray:
    """Put a square grey image ``(h, w)`` on a ``size × size`` black canvas: centred when it is
    smaller (a 28×28 digit in RTS's 42×42 canvas), area-downscaled when larger."""
    a = np.asarray(image, dtype=np.float32)
    h, w = a.shape
    if h > size or w > size:
        t = torch.from_numpy(np.ascontiguousarray(a))[None, None]
        s = size / max(h, w)
        a = F.interpolate(t, size=(max(1, round(h * s)), max(1, round(w * s))), mode="area")[0, 0].numpy()
        h, w = a.shape
    out = np.zeros((size, size), np.float32)
    top, left = (size - h) // 2, (size - w) // 2
    out[top:top + h, left:left + w] = a
    return out


#: The playground's intuitive controls used to distort a digit by hand (projective kind).
CONTROL_NAMES = ("rot", "sx", "sy", "shear", "tx", "ty", "px", "py")


def controls_identity() -> dict[str, float]:
    """Control values that leave the digit as it is."""
    return {n: float(pg.SLIDERS[n].default) for n in CONTROL_NAMES}


def distort(image: np.ndarray, controls: Mapping[str, float]) -> tuple[np.ndarray, list[pg.Message]]:
    """Warp a grey ``(S, S)`` digit with the playground's intuitive controls (rotation, scale,
    shear, translation, perspective; they place the sampling window on the digit, as in the
    playground) → ``(S, S)`` float32 and messages. A singular or invalid θ leaves the digit as it is."""
    a = np.asarray(image, dtype=np.float32)
    size = (a.shape[0], a.shape[1])
    vals = {**controls_identity(), **{k: float(v) for k, v in controls.items() if k in CONTROL_NAMES}}
    if vals == controls_identity():
        return a, []
    state = pg.PlaygroundState(kind="projective", **vals)
    params = pg.intuitive_to_params(state, size)
    problems = pg.check_params("projective", params)
    if problems:
        return a, [pg.Message("error", f"{problems[0].text} The digit is shown undistorted.")]
    res = pg.warp(a, "projective", params, size)
    out = np.where(res.valid, res.output[:, :, 0], 0.0).astype(np.float32)
    return out, [m for m in res.messages if m.level != "info"]
