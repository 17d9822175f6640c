"""Digit strings from MNIST: a synthetic analogue of SVHN house numbers for the paper's Table 2.

SVHN's images are not available offline, so the multi-digit experiment trains on strings made of MNIST
digits, and every result says so. What is the paper's (SVHN) and what is ours:

* a string of L ~ U{1, …, 5} digits [SVHN: 1–5 digits], read left to right; each digit is a 28×28
  MNIST frame, the next frame's centre ``ADVANCE`` ∈ U[0.55, 0.80] frames to the right (MNIST ink is
  ~20 of 28 px wide, so digits almost touch or stand apart), each moved up or down by U[−0.08, 0.08]
  frames [ours];
* **tight** crops, 64×64 [the paper's 64 px setting]: the string's box (frames' union) grown by 30 %
  [as SVHN's 64 px crops, Goodfellow et al. 2014] is resized to fill the canvas; SVHN resizes without
  keeping the aspect ratio, which would squeeze a 5-digit string 4×, so we stretch it vertically by at
  most ``MAX_STRETCH`` = 1.5 [ours]; then the whole string is scaled by U[0.85, 1.05], rotated by
  U[−10°, 10°] and shifted by U[−4, 4] px [ours: "small rotation", "varied scale"];
* **loose** crops, 128×128 [the paper's 128 px setting, "more loosely cropped"]: the tight crop itself
  (string, pixel size and all) pasted at a uniform random integer position in the 128 canvas, with ``LOOSE_PIECES`` = 8 clutter pieces of 6×6 cut from other training
  digits [ours, standing in for SVHN's neighbouring clutter; the cut as the TC column's].

Each digit frame is drawn by one affine backward warp into the 64 px window (bilinear, zero outside) and the frames are
merged by their maximum. Labels: ``digits (N, 5)`` with ``NULL`` = 10 past the string's end, and
``length (N,)``. Random numbers are drawn on the CPU in float64, so a seed gives the same strings on any
device. The fixed test sets are ``TEST_SIZE`` strings of the MNIST test split's digits drawn with
``TEST_SEED``; the training strings use the training split only.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from stn_core.data.distortions import clutter_canvas

MAX_DIGITS = 5
NULL = 10
#: Crop kind → canvas side (px).
SIZES = {"tight": 64, "loose": 128}
ADVANCE = (0.55, 0.80)
JITTER_Y = 0.08
MARGIN = 1.3
MAX_STRETCH = 1.5
SCALE = (0.85, 1.05)
ROTATE_DEG = 10.0
SHIFT_PX = 4.0
LOOSE_PIECES = 8
TEST_SEED = 20150605
TEST_SIZE = 5000


class Strings(NamedTuple):
    """A batch of digit strings: ``images (N, 1, S, S)`` float32 in [0, 1]; ``digits (N, 5)`` int64 (``NULL``
    past the end); ``length (N,)`` int64 in 1..5; ``boxes (N, 4, 2)``: the corners of each string's box
    (frames' union, before the 30 % margin) in normalised canvas coordinates (x, y), clockwise from the
    top left."""

    images: torch.Tensor
    digits: torch.Tensor
    length: torch.Tensor
    boxes: torch.Tensor


def check_crop(crop: str) -> int:
    """The canvas side of ``crop`` ('tight' or 'loose'), or a ValueError naming the choices."""
    if crop not in SIZES:
        raise ValueError(f"crop must be one of {', '.join(SIZES)}, got {crop!r}")
    return SIZES[crop]


def sample_layout(n: int, crop: str, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Random layouts of ``n`` strings (float64, CPU): ``length (n,)``, ``advance (n, 5)``, ``jitter (n, 5)``
    (frames), ``scale``, ``angle`` (radians), ``shift (n, 2)`` px, ``place (n, 2)`` uniforms (loose: the
    box's position) and the clutter's ``src (n, k)``, ``crop (n, k, 2)``, ``spot (n, k, 2)`` uniforms."""
    check_crop(crop)
    g = generator
    u = lambda *shape: torch.rand(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    k = LOOSE_PIECES if crop == "loose" else 0
    return {"length": torch.randint(1, MAX_DIGITS + 1, (n,), generator=g),
            "advance": ADVANCE[0] + (ADVANCE[1] - ADVANCE[0]) * u(n, MAX_DIGITS),
            "jitter": (2 * u(n, MAX_DIGITS) - 1) * JITTER_Y,
            "scale": SCALE[0] + (SCALE[1] - SCALE[0]) * u(n),
            "angle": torch.deg2rad((2 * u(n) - 1) * ROTATE_DEG),
            "shift": (2 * u(n, 2) - 1) * SHIFT_PX,
            "place": u(n, 2), "src": u(n, k), "crop": u(n, k, 2), "spot": u(n, k, 2)}


def frame_centres(layout: dict[str, torch.Tensor]) -> torch.Tensor:
    """Centres ``(n, 5, 2)`` of the digit frames in frame units, the string's box centred at 0."""
    adv = layout["advance"].clone()
    adv[:, 0] = 0.0
    x = adv.cumsum(1)
    y = layout["jitter"].clone()
    last = (layout["length"] - 1).clamp(min=0)
    rows = torch.arange(x.shape[0])
    present = torch.arange(MAX_DIGITS).view(1, -1) < layout["length"].view(-1, 1)
    big = torch.full_like(y, math.inf)
    ylo = torch.where(present, y, big).amin(1)
    yhi = torch.where(present, y, -big).amax(1)
    mid = torch.stack([x[rows, last] / 2, (ylo + yhi) / 2], 1)
    return torch.stack([x, y], -1) - mid.unsqueeze(1)


def string_geometry(layout: dict[str, torch.Tensor], crop: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The forward map frame units → canvas pixels (origin at the canvas centre, y down): ``lin (n, 2, 2)``,
    ``centre (n, 2)`` px, and the string box's half sides ``half (n, 2)`` in frame units."""
    side = check_crop(crop)
    tight = SIZES["tight"]
    c = frame_centres(layout)
    rows = torch.arange(c.shape[0])
    last = layout["length"] - 1
    present = torch.arange(MAX_DIGITS).view(1, -1) < layout["length"].view(-1, 1)
    yext = torch.where(present, c[..., 1].abs(), torch.zeros_like(c[..., 1])).amax(1)
    half = torch.stack([c[rows, last, 0] + 0.5, yext + 0.5], 1)           # (n, 2) frame units
    ux = tight / (MARGIN * 2 * half[:, 0])
    uy = torch.minimum(tight / (MARGIN * 2 * half[:, 1]), MAX_STRETCH * ux)
    ux = torch.minimum(ux, tight / (MARGIN * 2 * half[:, 1]))               # a short string: no wider than tall
    s = layout["scale"]
    cos, sin = torch.cos(layout["angle"]), torch.sin(layout["angle"])
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    lin = rot @ torch.diag_embed(torch.stack([ux * s, uy * s], 1))
    centre = layout["shift"].clone()
    if crop == "loose":
        centre = centre + loose_offset(layout) + tight / 2 - side / 2
    return lin, centre, half


def loose_offset(layout: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(n, 2)`` integer px (x, y): where a loose crop's 64 px window (the tight crop) starts in its 128 canvas."""
    return (layout["place"] * (SIZES["loose"] - SIZES["tight"])).round()


def layout_thetas(layout: dict[str, torch.Tensor], crop: str) -> torch.Tensor:
    """θ ``(n, 5, 2, 3)`` of the backward warps canvas → each digit's 28×28 frame (normalised coordinates)."""
    side = check_crop(crop)
    lin, centre, _ = string_geometry(layout, crop)
    c = frame_centres(layout)                                              # (n, 5, 2)
    inv = torch.linalg.inv(lin)                                            # px → frame units
    a = inv * side                                                         # n_frame = 2·inv·(side/2·n_canvas − centre) − 2·o_k
    b = -2 * (inv @ centre.unsqueeze(-1)).squeeze(-1).unsqueeze(1) - 2 * c
    return torch.cat([a.unsqueeze(1).expand(-1, MAX_DIGITS, -1, -1), b.unsqueeze(-1)], -1)


def layout_boxes(layout: dict[str, torch.Tensor], crop: str) -> torch.Tensor:
    """Corners ``(n, 4, 2)`` of each string's box in normalised canvas coordinates."""
    side = check_crop(crop)
    lin, centre, half = string_geometry(layout, crop)
    signs = torch.tensor([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=half.dtype)
    corners = signs.unsqueeze(0) * half.unsqueeze(1)                       # (n, 4, 2) frame units
    px = corners @ lin.transpose(1, 2) + centre.unsqueeze(1)
    return px / (side / 2)


def render(digits: torch.Tensor, layout: dict[str, torch.Tensor], crop: str,
           pool: torch.Tensor | None = None) -> torch.Tensor:
    """``digits (n, 5, 28, 28)`` (uint8 0..255 or float 0..1; frames past a string's length are ignored)
    drawn as strings → ``(n, 1, S, S)`` float32 in [0, 1] on the digits' device. ``pool (m, 28, 28)``: the
    digits the loose crops' clutter is cut from (needed for 'loose')."""
    side = check_crop(crop)
    if digits.dim() != 4 or digits.shape[1:] != (MAX_DIGITS, 28, 28):
        raise ValueError(f"digits must have shape (n, {MAX_DIGITS}, 28, 28), got {tuple(digits.shape)}")
    u = digits.float() / 255.0 if digits.dtype == torch.uint8 else digits.float()
    n, dev = u.shape[0], u.device
    tight = SIZES["tight"]
    theta = layout_thetas(layout, "tight").float().to(dev)                 # (n, 5, 2, 3): the string's 64 px window
    grid = F.affine_grid(theta.reshape(-1, 2, 3), [n * MAX_DIGITS, 1, tight, tight], align_corners=False)
    frames = F.grid_sample(u.reshape(-1, 1, 28, 28), grid, align_corners=False).view(n, MAX_DIGITS, tight, tight)
    present = (torch.arange(MAX_DIGITS, device=dev).view(1, -1) < layout["length"].to(dev).view(-1, 1))
    img = (frames * present.view(n, MAX_DIGITS, 1, 1)).amax(1, keepdim=True)
    if crop == "loose":                                                    # the window pasted into the 128 canvas
        canvas = img.new_zeros(n, 1, side, side)
        off = loose_offset(layout).long().tolist()
        for i, (x0, y0) in enumerate(off):
            canvas[i, :, y0:y0 + tight, x0:x0 + tight] = img[i]
        img = canvas
    if layout["src"].shape[1] > 0:
        if pool is None:
            raise ValueError("loose crops need a pool of digits to cut their clutter from")
        src = layout["src"].to(dev)
        k = src.shape[1]
        ids = (src * pool.shape[0]).long().clamp_(0, pool.shape[0] - 1).reshape(-1)
        picked = pool.to(dev)[ids]                                         # only the pieces' digits, as floats
        picked = picked.float() / 255.0 if picked.dtype == torch.uint8 else picked.float()
        own = (torch.arange(n * k, device=dev, dtype=torch.float64).view(n, k) + 0.5) / (n * k)  # picks row i
        clutter = clutter_canvas(u.new_zeros(n, 28, 28), side, u.new_zeros(n, 2).double(), own,
                                 layout["crop"].to(dev), layout["spot"].to(dev), picked)
        img = torch.maximum(img, clutter)
    return img.clamp_(0.0, 1.0)


def make_strings(images: torch.Tensor, labels: torch.Tensor, n: int, crop: str,
                 generator: torch.Generator | None = None) -> Strings:
    """``n`` random strings of digits drawn from ``images (m, 28, 28)`` / ``labels (m,)`` (the clutter is cut
    from the same digits)."""
    if images.dim() != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise ValueError(f"images must be (m, 28, 28) with labels (m,), got {tuple(images.shape)}, {tuple(labels.shape)}")
    layout = sample_layout(n, crop, generator)
    idx = torch.randint(0, images.shape[0], (n, MAX_DIGITS), generator=generator)
    present = torch.arange(MAX_DIGITS).view(1, -1) < layout["length"].view(-1, 1)
    digits = torch.where(present, labels[idx].long().cpu(), torch.full_like(idx, NULL))
    dev = images.device
    x = render(images[idx.to(dev)], layout, crop, pool=images)
    return Strings(x, digits.to(dev), layout["length"].to(dev), layout_boxes(layout, crop).float().to(dev))


def test_strings(images: torch.Tensor, labels: torch.Tensor, crop: str, n: int = TEST_SIZE,
                 seed: int = TEST_SEED, chunk: int = 1000) -> Strings:
    """The fixed test set: ``n`` strings of ``images`` (the MNIST test split) drawn with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    parts = [make_strings(images, labels, min(chunk, n - i), crop, g) for i in range(0, n, chunk)]
    return Strings(*(torch.cat(t) for t in zip(*parts)))


def sequence_text(digits: torch.Tensor) -> str:
    """``digits (5,)`` → the string they spell, e.g. '317'."""
    return "".join(str(int(d)) for d in digits if int(d) != NULL)


__all__ = ["MAX_DIGITS", "NULL", "SIZES", "TEST_SEED", "TEST_SIZE", "Strings", "check_crop", "layout_boxes",
           "layout_thetas", "make_strings", "render", "sample_layout", "sequence_text", "test_strings"]
