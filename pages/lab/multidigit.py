"""View logic of the digit-strings page (no Streamlit): the page's state in the URL, a string made of shipped
digits, the boxes the transformers read drawn on their inputs, feature maps as pictures and the readings.
Data and models: :mod:`stn_core.data.sequences`, :mod:`stn_core.models.sequence`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np
import torch
from PIL import Image, ImageDraw

from pages.lab import links
from stn_core import registry as reg
from stn_core.data import sequences as Q
from stn_core.models.sequence import SequenceViews, composite_theta, read_strings

MAX_SEED = 10**6
#: One colour per transformer (1–4) and the product's.
ST_COLOURS = [(31, 95, 191), (55, 178, 77), (174, 62, 201), (240, 140, 0)]
PRODUCT_COLOUR = (247, 103, 7)
CROPS = {"tight": "tight, 64×64", "loose": "loose, 128×128 (with clutter)"}


@dataclass(frozen=True)
class PageState:
    """What the page shows; every field is in the URL (:meth:`query`)."""

    crop: str = "tight"
    seed: int = 0
    model: str = "seq-st-multi"

    def query(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


def parse_state(query: Mapping[str, str]) -> tuple[PageState, list[str]]:
    """The state a URL asks for; unusable values fall back to the default with a warning each."""
    warns: list[str] = []
    d = PageState()
    crop = query.get("crop", d.crop)
    if crop not in CROPS:
        warns.append(f"crop={crop!r} is not one of {', '.join(CROPS)}: showing {d.crop}")
        crop = d.crop
    model = query.get("model", d.model)
    if model not in reg.SEQUENCE_KEYS:
        warns.append(f"model={model!r} is not one of {', '.join(reg.SEQUENCE_KEYS)}: showing {d.model}")
        model = d.model
    seed = d.seed
    raw = query.get("seed")
    if raw not in (None, ""):
        v = links.parse_int(raw, 0, MAX_SEED)
        if v is None:
            warns.append(f"seed={raw!r} is not a whole number in 0–{MAX_SEED}: showing {d.seed}")
        else:
            seed = v
    return PageState(crop, seed, model), warns


def make_string(images: np.ndarray, labels: np.ndarray, crop: str, seed: int) -> Q.Strings:
    """One string of shipped digits ``images (m, 28, 28)`` uint8 (clutter cut from the same digits)."""
    g = torch.Generator().manual_seed(int(seed))
    return Q.make_strings(torch.as_tensor(images), torch.as_tensor(labels).long(), 1, crop, g)


def theta_quad(theta: torch.Tensor) -> np.ndarray:
    """The corners ``(4, 2)`` (normalised, clockwise from the output's top left) that θ ``(2, 3)`` reads."""
    corners = torch.tensor([[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, 1.0], [-1.0, 1.0, 1.0]])
    return (corners @ theta.detach().float().T).numpy()


#: Grey of the margin drawn around an image when a box reaches outside it (zero padding lies there).
MARGIN_GREY = 70


def _pixels(quad: np.ndarray, side: int, scale: int, pad: int) -> list[tuple[float, float]]:
    return [(((x + 1) * side / 2 + pad) * scale, ((y + 1) * side / 2 + pad) * scale) for x, y in quad]


def picture(image: np.ndarray, quads: list[tuple[np.ndarray, tuple[int, int, int], int]], scale: int = 4,
            max_extent: float = 2.0) -> np.ndarray:
    """``image (S, S)`` in [0, 1] upscaled ``scale``× with each quadrilateral (normalised corners, colour,
    width) drawn on it: an RGB uint8 picture. A box that reaches outside the image (a transformer that zooms
    out reads zeros there) gets a grey margin around the image, up to ``max_extent`` in normalised units."""
    a = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    side = a.shape[0]
    reach = max([float(np.abs(q).max()) for q, _c, _w in quads if np.isfinite(q).all()], default=1.0)
    pad = int(np.ceil((min(reach, max_extent) - 1.0) / 2 * side)) if reach > 1.0 else 0
    if pad:
        a = np.pad(a, pad, constant_values=MARGIN_GREY)
    im = Image.fromarray(a).convert("RGB").resize((a.shape[1] * scale, a.shape[0] * scale), Image.NEAREST)
    draw = ImageDraw.Draw(im)
    for quad, colour, width in quads:
        pts = _pixels(quad, side, scale, pad)
        draw.line(pts + pts[:1], fill=colour, width=width)
        draw.ellipse([pts[0][0] - 2 * width, pts[0][1] - 2 * width, pts[0][0] + 2 * width, pts[0][1] + 2 * width],
                     fill=colour)
    return np.asarray(im)


def feature_picture(fmap: torch.Tensor, quad: np.ndarray | None = None, colour=(240, 140, 0),
                    target: int = 256) -> np.ndarray:
    """A feature map ``(C, h, w)`` as a picture: the mean over channels scaled to [0, 1] (its max), upscaled
    to about ``target`` px, with an optional quadrilateral."""
    m = fmap.detach().float().mean(0)
    m = (m - m.min()) / max(1e-8, float(m.max() - m.min()))
    scale = max(1, target // m.shape[-1])
    return picture(m.numpy(), [] if quad is None else [(quad, colour, 2)], scale)


def product_quad(views: SequenceViews) -> np.ndarray | None:
    """Where the last transformer's output lies in the input image: the product of every θ (None without)."""
    if not views.thetas:
        return None
    return theta_quad(composite_theta([t.detach().float() for t in views.thetas])[0])


def reading(views: SequenceViews) -> tuple[str, float]:
    """The string a model reads and the probability it gives that reading (length × each digit)."""
    digits = read_strings(views.length_logits, views.digit_logits)[0]
    text = Q.sequence_text(digits)
    p_len = torch.softmax(views.length_logits.float(), 1)[0, len(text) - 1]
    p_dig = torch.softmax(views.digit_logits.float(), 2)[0]
    p = float(p_len) * float(np.prod([float(p_dig[i, int(d)]) for i, d in enumerate(digits[:len(text)])]))
    return text, p


__all__ = ["CROPS", "MARGIN_GREY", "MAX_SEED", "PRODUCT_COLOUR", "ST_COLOURS", "PageState", "feature_picture", "make_string",
           "parse_state", "picture", "product_quad", "reading", "theta_quad"]
