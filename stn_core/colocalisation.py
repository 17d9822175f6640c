"""Co-localisation without labels (the paper's appendix A.2, its Figure 4).

Status (issue #19, work in progress). The loss works; the paper's optimiser did not, here. With the localisation
net trained by SGD (:func:`train`) nothing localises (0 % correct on the first 100 test "3"s without clutter
in every variant tried below). What is known (``python scripts/colocalisation_probe.py``, R CNN as the
encoder, loss averaged over 5 draws of the random crops, 100 images):

* with raw features the loss is *wrong*: at the true boxes 79.4, at an empty corner window 4.4 — the
  first layer's 8,700 values make every distance hundreds, so the margin of 1 is nothing and a window
  on empty background (alike for every image) wins;
* with each layer's features scaled to unit length per image (:func:`encoder_features`, the default)
  the loss is *right*: true boxes 0.014, empty corner 0.70, the starting centred half window 1.76;
* but SGD from the centred start gets trapped: SGD lr 1e-2 … 1e-1 and Adam 1e-3 … 1e-2,
  200–800 steps, random crops at 28 px or at the transformer's scale, a random (std 0.5) instead of a
  zero last layer, all end on background (mean IoU ≤ 0.25). The localisation net starts at zero weights,
  so every image's window first moves alike and only a move away from all digits helps every image at once;
  and even window by window the loss gives no clear lead from such a shared start (:func:`descent_alignment`,
  ``python scripts/colocalisation_sgd.py`` → results/colocalisation-sgd.md, all ten classes: the share of
  windows whose −∂L/∂t points towards their digit, from a centred half window and a centred native one);
* further variants, tried in throw-away experiments (not kept, so no numbers here), also failed: the crops
  taken from a Gaussian-blurred canvas, the blur annealed from σ = 3–6 px to none (to widen the bilinear
  sampler's reach) — the windows left the digits sooner; a start at nearly the whole canvas (s = 0.95) — the
  scale grew to its bound; free per-image windows without a net, half of them started on their digits — the
  other half did not follow them, and with a larger step the first half left too;
* yet for most classes the loss does pull back windows that *all* start near their digits (:func:`basin_probe`:
  free windows, each started 10 px off its digit in a random direction; ``scripts/colocalisation_sgd.py``
  → the last section of results/colocalisation-sgd.md, per class: for a few the windows drift further
  off). SGD's shared centred start lies outside that pull;
* minimising the *same loss* by coordinate descent over a grid of native-scale windows (:func:`search`,
  [ours]) localises most windows: ``python scripts/colocalisation.py`` → results/colocalisation.md, per class
  without and with clutter beside the paper's 100 % and 75–93 %;
* SGD can get there too when it starts from many places (:func:`tiled_sgd`, [ours]): every image gets a
  4 × 4 grid of free native-scale windows, all descend the same loss against the other images' best windows,
  and each image keeps fewer of them, those of lowest loss, until one is left; no labels, no boxes:
  ``python scripts/colocalisation_tiled.py`` → results/colocalisation-tiled.md, per class beside the paper;
* a localisation net taught the searched windows (:func:`distil`; native scale fixed, translation learned)
  predicts windows for held-out images too, and SGD on the loss from there (``train(..., model=)``, lr 1e-4)
  keeps them for most classes (the same file names those it moved off); with the scale free, SGD moved even
  well-placed windows off the digits.
  Two other sweep orders were tried in throw-away experiments (not kept, so no numbers here) and dropped:
  Gauss–Seidel (one image at a time) was better for some classes and worse for others, and exact coordinate
  descent (each image's terms in both roles) fell into a degenerate minimum, every window on empty background.

A set of images that all show a digit of one class somewhere on a black 84×84 canvas (T), optionally
with clutter (TC). No label and no box is used: an attention spatial transformer (scale s and
translation t) crops a 28×28 view of every image, and a triplet hinge loss on the features of a
frozen digit classifier (the encoder e) makes the crops of two different images alike and each crop
unlike a random crop of its own image::

    L = mean over pairs n ≠ m of  max(0, ‖e(Tₙ) − e(Tₘ)‖² − ‖e(Tₙ) − e(Rₙ)‖² + α),   α = 1.

The only thing the crops of all images have in common is the digit, so the transformer learns to
find it. A crop is correct when its box overlaps the digit's true 28×28 box with IoU > 0.5.

Provenance ([paper] = appendix A.2, [ours] = the paper does not say):

* canvas 84×84, the 28×28 digit at a uniform random position [paper]; TC: 16 random 6×6 crops of
  other digits [paper] (cut from the same split's digits of every class [ours]); 100 images per set
  [paper];
* localisation net: conv 8 filters 9×9 stride 4 → max-pool 2×2 stride 2 → FC 8 → FC 8 → FC 3 [paper],
  ReLUs between [ours]; its 3 outputs (a, b_x, b_y) become s = S_MIN + (S_MAX − S_MIN)·sigmoid(a) and
  t = (1 − s)·tanh(b), so the window stays inside the canvas and between 0.2 and 0.8 of its side
  [ours: unbounded, the loss has a trivial minimum — windows off the canvas crop nothing but black,
  alike for every image — which plain SGD reached within 200 steps here]; the last layer starts at
  zero weights and bias: a centred window of half the canvas [ours];
* encoder e: a Table 1 CNN trained for digit classification, frozen; its three layers' activations
  (both hidden layers after ReLU and the logits) flattened and concatenated [paper];
* margin α = 1 [paper]; each step draws a batch of images and uses every pair in it; Rₙ is a
  28×28 window of image n at a uniform random position, redrawn every step [ours];
* optimiser: SGD with momentum [paper: SGD], learning rate and steps in :class:`CoLocConfig` [ours].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from stn_core.data import distortions as D
from stn_core.sampling import sample
from stn_core.transforms import attention_grid

CANVAS = 84
CROP = 28
S_MIN, S_MAX = 0.2, 1.0
S_START = 0.5
N_IMAGES = 100
CLUTTER_PIECES = 16
MARGIN = 1.0
IOU_CORRECT = 0.5


class CoLocSet(NamedTuple):
    """Images ``x (n, 1, 84, 84)`` float in [0, 1] and the digits' true boxes ``(n, 4)`` = (x0, y0, x1,
    y1) in pixels (edges; the canvas spans [0, 84])."""

    x: torch.Tensor
    boxes: torch.Tensor


def make_set(digits: torch.Tensor, clutter: bool, generator: torch.Generator,
             pool: torch.Tensor | None = None) -> CoLocSet:
    """One co-localisation set from ``digits (n, 28, 28)`` (uint8 or float) of one class: each on its
    own canvas at a uniform random position; with ``clutter``, 16 random 6×6 crops of ``pool``
    digits (default: ``digits``) around it."""
    u = digits.float() / 255.0 if digits.dtype == torch.uint8 else digits.float()
    n, k = u.shape[0], CLUTTER_PIECES if clutter else 0
    pos = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    src = torch.rand(n, k, generator=generator, dtype=torch.float64)
    crop = torch.rand(n, k, 2, generator=generator, dtype=torch.float64)
    place = torch.rand(n, k, 2, generator=generator, dtype=torch.float64)
    pool_u = u if pool is None else (pool.float() / 255.0 if pool.dtype == torch.uint8 else pool.float())
    x = D.clutter_canvas(u, CANVAS, pos, src, crop, place, pool_u)
    top, left = D.digit_corner(pos, CANVAS)
    boxes = torch.cat([left, top, left + CROP, top + CROP], 1).float()
    return CoLocSet(x, boxes)


def paper_set(images: torch.Tensor, labels: torch.Tensor, digit: int, setting: str, seed: int = 0) -> CoLocSet:
    """The results files' set of one class: the first :data:`N_IMAGES` digits of class ``digit`` in ``images
    (M, 28, 28)`` with ``labels (M,)``, on canvases placed by ``seed``; ``setting`` "T" (no clutter) or "TC"."""
    if setting not in ("T", "TC"):
        raise ValueError(f"setting must be 'T' or 'TC', got {setting!r}")
    return make_set(images[labels == digit][:N_IMAGES], setting == "TC", torch.Generator().manual_seed(seed))


def paper_sets(images: torch.Tensor, labels: torch.Tensor, digits: list[int], seed: int = 0):
    """Every results file's sets in order: ``(digit, setting, set)`` for each of ``digits`` and "T", "TC"
    (:func:`paper_set`)."""
    for d in digits:
        for setting in ("T", "TC"):
            yield d, setting, paper_set(images, labels, d, setting, seed)


def bounded_attention(raw: torch.Tensor) -> torch.Tensor:
    """``(N, 3)`` unbounded (a, b_x, b_y) → attention (s, t_x, t_y) with s in [S_MIN, S_MAX] and the
    window inside the canvas: s = S_MIN + (S_MAX − S_MIN)·sigmoid(a), t = (1 − s)·tanh(b)."""
    s = S_MIN + (S_MAX - S_MIN) * torch.sigmoid(raw[:, :1])
    return torch.cat([s, (1 - s) * torch.tanh(raw[:, 1:])], 1)


class LocalisationNet(nn.Module):
    """``(N, 1, 84, 84)`` → attention parameters ``(N, 3)`` = (s, t_x, t_y), normalised coordinates,
    the window inside the canvas (:func:`bounded_attention`); it starts centred at s = S_START.
    ``fixed_scale``: s is that constant (e.g. ``CROP / CANVAS``, a native 28×28 window) and only the
    translation is learned, t = (1 − s)·tanh(b) [ours: with a free scale, SGD on the loss shrinks or
    grows the windows away from the digits even from a start on them]."""

    def __init__(self, fixed_scale: float | None = None) -> None:
        super().__init__()
        if fixed_scale is not None and not S_MIN <= fixed_scale <= S_MAX:
            raise ValueError(f"fixed_scale must be in [{S_MIN}, {S_MAX}], got {fixed_scale}")
        self.fixed_scale = fixed_scale
        self.body = nn.Sequential(nn.Conv2d(1, 8, 9, stride=4), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
                                  nn.Flatten(), nn.LazyLinear(8), nn.ReLU(inplace=True), nn.Linear(8, 8),
                                  nn.ReLU(inplace=True))
        self.body(torch.zeros(1, 1, CANVAS, CANVAS))  # materialise the lazy layer: (84 − 9) / 4 + 1 = 19 → 9
        self.head = nn.Linear(8, 3)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():  # start as a centred window of S_START of the canvas: the digit is inside it
            self.head.bias[0] = torch.logit(torch.tensor((S_START - S_MIN) / (S_MAX - S_MIN)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.head(self.body(x))
        if self.fixed_scale is None:
            return bounded_attention(raw)
        s = torch.full_like(raw[:, :1], self.fixed_scale)
        return torch.cat([s, (1 - s) * torch.tanh(raw[:, 1:])], 1)


class CoLocOutput(NamedTuple):
    crops: torch.Tensor   # (N, 1, 28, 28)
    params: torch.Tensor  # (N, 3) = (s, t_x, t_y)


class CoLocaliser(nn.Module):
    """The localisation net and the attention transformer that crops a 28×28 view."""

    def __init__(self, fixed_scale: float | None = None) -> None:
        super().__init__()
        self.loc = LocalisationNet(fixed_scale)

    def forward(self, x: torch.Tensor) -> CoLocOutput:
        params = self.loc(x)
        return CoLocOutput(sample(x, attention_grid(params, (CROP, CROP))), params)


#: The checkpoint model name of :class:`CoLocBank` (its transform: "attention").
BANK_MODEL = "coloc-bank"
#: The two settings of the appendix: without (T) and with clutter (TC); a bank's checkpoint task.
BANK_TASKS = {"T": "coloc-t", "TC": "coloc-tc"}


class CoLocBank(nn.Module):
    """The localisation nets of one setting (T or TC), one per digit class: ``bank(x (N, 1, 84, 84), digit)``
    → :class:`CoLocOutput` of that class's net, windows at the native scale. Each net learned from its own
    class's set, without labels or boxes inside it (``scripts/colocalisation.py --save``)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        if not 1 <= num_classes <= 10:
            raise ValueError(f"a co-localisation bank has 1 to 10 nets (digit classes), got {num_classes}")
        self.nets = nn.ModuleList(CoLocaliser(fixed_scale=CROP / CANVAS) for _ in range(num_classes))
        self.config = {"name": BANK_MODEL, "transform": "attention", "input_size": CANVAS,
                       "num_classes": num_classes}

    def forward(self, x: torch.Tensor, digit: int) -> CoLocOutput:
        if not 0 <= int(digit) < len(self.nets):
            raise ValueError(f"digit must be in 0..{len(self.nets) - 1}, got {digit}")
        return self.nets[int(digit)](x)

    def localisation_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())


def bank_from_meta(meta: dict) -> CoLocBank:
    """An untrained :class:`CoLocBank` as a checkpoint's metadata describes it (input 84, ≤ 10 classes)."""
    if meta["input_size"] != CANVAS:
        raise ValueError(f"a co-localisation bank takes {CANVAS}×{CANVAS} canvases, got input_size {meta['input_size']}")
    return CoLocBank(int(meta["num_classes"]))


def boxes_of(params: torch.Tensor, side: int = CANVAS) -> torch.Tensor:
    """The input window of attention ``params (N, 3)`` as pixel boxes ``(N, 4)`` = (x0, y0, x1, y1):
    output [−1, 1] maps to s·[−1, 1] + t (``align_corners=False``: ±1 are the canvas edges)."""
    s, tx, ty = params.unbind(1)
    half = s.abs()
    return torch.stack([(tx - half + 1) / 2 * side, (ty - half + 1) / 2 * side,
                        (tx + half + 1) / 2 * side, (ty + half + 1) / 2 * side], 1)


def share_correct(ious: torch.Tensor) -> float:
    """The share of windows that are correct: IoU with the digit's box above :data:`IOU_CORRECT` (0.5)."""
    return float((ious > IOU_CORRECT).float().mean())


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of boxes ``(N, 4)`` row by row."""
    w = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    h = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    inter = w * h
    area = lambda r: (r[:, 2] - r[:, 0]).clamp(min=0) * (r[:, 3] - r[:, 1]).clamp(min=0)  # noqa: E731
    return inter / (area(a) + area(b) - inter).clamp(min=1e-9)


def encoder_features(classifier: nn.Sequential, x: torch.Tensor, normalise: bool = True) -> torch.Tensor:
    """``(N, D)``: the activations after every ReLU of a Table 1 CNN ``classifier`` and its last layer's
    output (the logits), flattened and concatenated; with ``normalise`` each layer's part is scaled to unit
    length per image [ours: raw, distances run to hundreds and the margin of 1 means nothing]."""
    feats = []
    for layer in classifier:
        x = layer(x)
        if isinstance(layer, nn.ReLU):
            feats.append(x.flatten(1))
    feats.append(x.flatten(1))
    if normalise:
        feats = [F.normalize(f, dim=1) for f in feats]
    return torch.cat(feats, 1)


def random_crops(x: torch.Tensor, generator: torch.Generator, scale: torch.Tensor | None = None) -> torch.Tensor:
    """A random window of each image ``(N, 1, S, S)`` resampled to 28×28: of scale ``scale (N,)`` (the
    transformer's own, so that only *where* it looks can set its crop apart) at a uniform random
    position inside the canvas; ``scale`` None: a native 28×28 window at a random integer position."""
    n, side = x.shape[0], x.shape[-1]
    if scale is not None:
        s = scale.detach().view(n, 1)
        t = (1 - s) * (2 * torch.rand(n, 2, generator=generator, dtype=s.dtype) - 1).to(s.device)
        return sample(x, attention_grid(torch.cat([s, t], 1), (CROP, CROP)))
    top = torch.randint(0, side - CROP + 1, (n,), generator=generator)
    left = torch.randint(0, side - CROP + 1, (n,), generator=generator)
    ar = torch.arange(CROP)
    rows = (top.view(n, 1, 1) + ar.view(1, CROP, 1)).to(x.device)
    cols = (left.view(n, 1, 1) + ar.view(1, 1, CROP)).to(x.device)
    return x[torch.arange(n, device=x.device).view(n, 1, 1), 0, rows, cols].unsqueeze(1)


def triplet_loss(f_t: torch.Tensor, f_rand: torch.Tensor, margin: float = MARGIN) -> torch.Tensor:
    """Mean over ordered pairs n ≠ m of max(0, ‖f_t[n] − f_t[m]‖² − ‖f_t[n] − f_rand[n]‖² + margin)."""
    n = f_t.shape[0]
    if n < 2:
        raise ValueError("the triplet loss needs at least two images")
    d_pair = torch.cdist(f_t, f_t).pow(2)
    d_rand = (f_t - f_rand).pow(2).sum(1)
    hinge = F.relu(d_pair - d_rand.view(n, 1) + margin)
    return (hinge.sum() - hinge.diagonal().sum()) / (n * (n - 1))


@dataclass
class CoLocConfig:
    """Optimisation of one co-localisation run [ours, see the module docstring]."""

    steps: int = 300
    batch: int = 20
    lr: float = 0.02
    momentum: float = 0.9
    seed: int = 0
    track: int = 6          # how many images' boxes the history keeps (Figure 4)
    rand_same_scale: bool = False  # True: the random crop at the transformer's scale [ours]
    optimizer: str = "sgd"         # "sgd" (the paper's) or "adam" [ours]
    normalise: bool = True         # per-layer feature scaling (encoder_features) [ours]
    every: int = 10         # history interval (steps)


@dataclass
class CoLocRun:
    """What a run gives back: the loss per step, the tracked images' boxes over the steps, the final
    boxes of all images and the fraction with IoU > 0.5."""

    losses: list[float] = field(default_factory=list)
    history_steps: list[int] = field(default_factory=list)
    history_boxes: list[torch.Tensor] = field(default_factory=list)  # each (track, 4)
    final_boxes: torch.Tensor | None = None
    ious: torch.Tensor | None = None

    @property
    def correct(self) -> float:
        return share_correct(self.ious) if self.ious is not None else float("nan")

    def history_correct(self, data: "CoLocSet") -> list[float]:
        """The share of ``data``'s windows that are correct at each history point; counts the tracked images,
        so a run with ``CoLocConfig.track`` ≥ the set's size scores every image."""
        return [share_correct(iou(b, data.boxes[:b.shape[0]])) for b in self.history_boxes]


def predict_boxes(model: CoLocaliser, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return boxes_of(model.loc(x))


def train(data: CoLocSet, encoder: nn.Sequential, cfg: CoLocConfig = CoLocConfig(),
          callback=None, model: CoLocaliser | None = None) -> tuple[CoLocaliser, CoLocRun]:
    """Train a :class:`CoLocaliser` on ``data`` with the frozen ``encoder`` (a Table 1 CNN's classifier
    taking 28×28 digits): a new one, or ``model`` further (fine-tuning, e.g. from :func:`distil`).
    ``callback(step, run)`` is called after each history point (a page draws the boxes live) and may
    return True to stop early."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    model = CoLocaliser() if model is None else model
    encoder.eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    opt = (torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum) if cfg.optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=cfg.lr))
    run = CoLocRun()
    n = data.x.shape[0]
    tracked = data.x[:cfg.track]
    for step in range(cfg.steps + 1):
        if step % cfg.every == 0 or step == cfg.steps:
            run.history_steps.append(step)
            run.history_boxes.append(predict_boxes(model, tracked))
            if callback is not None and callback(step, run):
                break
        if step == cfg.steps:
            break
        idx = torch.randperm(n, generator=g)[:cfg.batch]
        x = data.x[idx]
        out = model(x)
        rand = random_crops(x, g, out.params[:, 0] if cfg.rand_same_scale else None)
        loss = triplet_loss(encoder_features(encoder, out.crops, cfg.normalise), encoder_features(encoder, rand, cfg.normalise))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run.losses.append(float(loss.detach()))
    run.final_boxes = predict_boxes(model, data.x)
    run.ious = iou(run.final_boxes, data.boxes)
    return model, run


def native_windows(t: torch.Tensor, side: int = CANVAS) -> torch.Tensor:
    """Native-scale (28×28) attention windows from translations ``t (..., 2)``, kept inside the canvas:
    ``(..., 3)`` = (s, t_x, t_y) with s = 28 / ``side``."""
    s = CROP / side
    return torch.cat([torch.full((*t.shape[:-1], 1), s, dtype=t.dtype), t.clamp(-(1 - s), 1 - s)], -1)


def box_centres(boxes: torch.Tensor, side: int = CANVAS) -> torch.Tensor:
    """The centres of pixel boxes ``(N, 4)`` = (x0, y0, x1, y1) in normalised coordinates ``(N, 2)`` (x, y)."""
    return (boxes[:, :2] + boxes[:, 2:]) / side - 1


def descent_alignment(data: CoLocSet, encoder: nn.Sequential, scale: float, reps: int = 5,
                      seed: int = 0) -> torch.Tensor:
    """Where the loss sends each window from a shared start: ``(N,)`` cosine between the steepest-descent
    direction of image n's window translation, −∂L/∂tₙ, and the direction from the window to its digit's
    centre, every window centred at ``scale`` (SGD's start: S_START; the native 28 px: CROP / CANVAS).
    L is the triplet loss over the whole set (every pair), its random crops averaged over ``reps`` draws.
    NaN where the gradient is zero (a window that sees no ink). A share of positives near 0.5 means the
    loss gives SGD no lead towards the digits from there; well below 0.5, a lead away from them.
    The true boxes are used only to score the direction, as in :func:`iou`."""
    n = data.x.shape[0]
    t = torch.zeros(n, 2, requires_grad=True)
    with torch.enable_grad():
        crops = sample(data.x, attention_grid(torch.cat([torch.full((n, 1), float(scale)), t], 1), (CROP, CROP)))
        f_t = encoder_features(encoder, crops)
        g = torch.Generator().manual_seed(seed)
        loss = sum(triplet_loss(f_t, encoder_features(encoder, random_crops(data.x, g))) for _ in range(reps))
        (grad,) = torch.autograd.grad(loss, t)
    to_digit = box_centres(data.boxes, data.x.shape[-1])
    cos = F.cosine_similarity(-grad, to_digit, dim=1)
    return torch.where(grad.norm(dim=1) > 0, cos, torch.full_like(cos, float("nan")))


def lead_share(cos: torch.Tensor) -> tuple[float, int]:
    """Of :func:`descent_alignment`'s cosines ``(N,)``: (the share of the windows with a gradient that the loss
    moves towards their digit, cosine > 0; how many have a gradient). The share is NaN when none has one."""
    ok = ~cos.isnan()
    return (float((cos[ok] > 0).float().mean()) if ok.any() else float("nan")), int(ok.sum())


class BasinProbe(NamedTuple):
    """:func:`basin_probe`'s result: the share of windows correct and their mean distance (px) from their
    digits' centres, at the start and after SGD."""

    correct_start: float
    correct_end: float
    dist_start: float
    dist_end: float


#: :func:`basin_probe`'s SGD: steps, step per window (lr) and momentum [ours].
BASIN_STEPS, BASIN_LR, BASIN_MOMENTUM = 500, 2e-4, 0.9


def basin_probe(data: CoLocSet, encoder: nn.Sequential, offset_px: float, steps: int = BASIN_STEPS,
                lr: float = BASIN_LR, momentum: float = BASIN_MOMENTUM, seed: int = 0, callback=None,
                every: int = 25) -> BasinProbe:
    """How far the loss's pull towards the digits reaches: every image's native-scale window is a free
    translation (no localisation net), started ``offset_px`` from its digit's centre in a random direction
    (clamped inside the canvas), and SGD on the triplet loss moves them all (every image each step, every
    pair, random crops as in :func:`train`; the loss summed over images, so ``lr`` is a step per window).
    If the windows come back to their digits, the loss has a basin that wide around a set of windows that
    all lie near their digits; SGD from a shared start is outside it. The true boxes set the start and
    score the end: a probe of the loss, not a method. ``callback(step, windows (N, 3), loss)`` is called at the
    start (loss NaN), every ``every`` steps and after the last (a page draws the windows live)."""
    n, side = data.x.shape[0], data.x.shape[-1]
    if n < 2:
        raise ValueError("the probe needs at least two images")
    s = CROP / side
    g = torch.Generator().manual_seed(seed)
    centre = box_centres(data.boxes, side)
    angle = 2 * torch.pi * torch.rand(n, generator=g)
    start = centre + offset_px * 2 / side * torch.stack([angle.cos(), angle.sin()], 1)
    t = start.clamp(-(1 - s), 1 - s).requires_grad_(True)
    opt = torch.optim.SGD([t], lr=lr, momentum=momentum)

    def windows() -> torch.Tensor:  # (N, 3) attention params, the translations kept inside the canvas
        return native_windows(t, side)

    def score() -> tuple[float, float]:
        with torch.no_grad():
            p = windows()
            return (share_correct(iou(boxes_of(p), data.boxes)),
                    float((p[:, 1:] - centre).norm(dim=1).mean() * side / 2))

    first = score()
    loss = torch.tensor(float("nan"))
    with torch.enable_grad():
        for step in range(steps + 1):
            if callback is not None and (step % every == 0 or step == steps):
                callback(step, windows().detach(), float(loss))
            if step == steps:
                break
            crops = sample(data.x, attention_grid(windows(), (CROP, CROP)))
            loss = triplet_loss(encoder_features(encoder, crops), encoder_features(encoder, random_crops(data.x, g)))
            opt.zero_grad(set_to_none=True)
            (loss * n).backward()
            opt.step()
    last = score()
    return BasinProbe(first[0], last[0], first[1], last[1])


#: Starts per side of :func:`tiled_sgd`: 4 × 4 native windows spread evenly over the canvas [ours].
TILES = 4
#: :func:`tiled_sgd`'s pruning: (starts each image keeps, until step) [ours]; every image ends with one window.
TILED_SCHEDULE: tuple[tuple[int, int], ...] = ((16, 20), (8, 40), (4, 80), (2, 140), (1, 300))


class TiledSGD(NamedTuple):
    """What :func:`tiled_sgd` gives back: each image's final window ``(N, 3)``, its IoU with the digit ``(N,)``,
    and per history point (after the start, every ``every`` steps and the last) the step, the starts still
    kept, the share of images whose best window is correct and the mean loss of the kept windows."""

    windows: torch.Tensor
    ious: torch.Tensor
    steps: list[int]
    kept: list[int]
    correct: list[float]
    losses: list[float]


def tiled_grid(tiles: int = TILES, side: int = CANVAS) -> torch.Tensor:
    """Native-scale (28×28) windows whose centres form a ``tiles`` × ``tiles`` grid from edge to edge of the
    canvas: translations ``(tiles², 2)`` in normalised coordinates (x, y), row by row."""
    c = torch.linspace(CROP / 2, side - CROP / 2, tiles)
    cy, cx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([cx.flatten(), cy.flatten()], 1) / side * 2 - 1


def tiled_sgd(data: CoLocSet, encoder: nn.Sequential, tiles: int = TILES,
              schedule: tuple[tuple[int, int], ...] = TILED_SCHEDULE, lr: float = BASIN_LR,
              momentum: float = BASIN_MOMENTUM, seed: int = 0, every: int = 10, callback=None) -> TiledSGD:
    """SGD on the triplet loss from many starts per image, no labels and no boxes [ours]: every image gets
    ``tiles``² free native-scale windows (translations, no localisation net) spread over the canvas
    (:func:`tiled_grid`). Each step, every kept window of image n is scored by the paper's loss against the
    other images' *best* windows (of the previous step; at the first, their centred windows, as :func:`search`):
    mean over m ≠ n of max(0, ‖e(Tₙₖ) − e(Bₘ)‖² − ‖e(Tₙₖ) − e(Rₙ)‖² + α), Rₙ a random crop of image n redrawn
    every step; SGD (``lr`` per window) moves every kept window down its own loss, and an image's best window
    is its kept one of lowest loss. ``schedule`` is a list of phases (kept, until step): the first keeps all
    ``tiles``² windows, and at the start of each later one every image keeps only its ``kept`` of lowest loss. Why: from one shared start the loss gives SGD no lead towards the
    digits, but windows that start near their digits come back (:func:`descent_alignment`,
    :func:`basin_probe`); a grid of starts puts one of them near every digit. The true boxes only score.
    ``callback(step, windows (N, k, 3) the kept windows, best (N,) index of each image's best, loss)`` is
    called at the start (loss NaN), every ``every`` steps and after the last step (a page draws it live).
    Tried in throw-away runs on cluttered 3s and 7s and dropped (no better): pruning by a running mean of the
    loss instead of the last step's, and 8 random crops per image instead of one."""
    if data.x.shape[0] < 2:
        raise ValueError("tiled SGD needs at least two images")
    if tiles < 1 or not schedule or schedule[-1][0] != 1:
        raise ValueError("tiles must be ≥ 1 and the schedule must end with one window per image")
    if schedule[0][0] != tiles ** 2 or any(b[0] > a[0] or b[1] <= a[1] for a, b in zip(schedule, schedule[1:])):
        raise ValueError("the schedule must start with all tiles² windows, keep fewer and end later at each phase")
    n, side = data.x.shape[0], data.x.shape[-1]
    g = torch.Generator().manual_seed(seed)
    off = torch.eye(n, dtype=torch.bool).view(n, 1, n)
    t = tiled_grid(tiles, side).unsqueeze(0).repeat(n, 1, 1)                  # (N, K, 2)

    def params(t: torch.Tensor) -> torch.Tensor:                             # (N, k, 2) → (N, k, 3)
        return native_windows(t, side)

    with torch.no_grad():
        centred = native_windows(torch.zeros(n, 2), side)
        best_f = encoder_features(encoder, sample(data.x, attention_grid(centred, (CROP, CROP))))
    best = t[0].norm(dim=1).argmin().repeat(n)                     # before any loss: the most central start
    cost = None                                                    # each window's loss at the last step
    hist = TiledSGD(torch.empty(0), torch.empty(0), [], [], [], [])

    def record(step: int, loss: float) -> None:
        w = params(t.detach())
        hist.steps.append(step)
        hist.kept.append(w.shape[1])
        hist.correct.append(share_correct(iou(boxes_of(w[torch.arange(n), best]), data.boxes)))
        hist.losses.append(loss)
        if callback is not None:
            callback(step, w, best.clone(), loss)

    record(0, float("nan"))
    step, last = 0, schedule[-1][1]
    with torch.enable_grad():
        for keep, until in schedule:
            if keep < t.shape[1]:
                idx = cost.argsort(1)[:, :keep]
                t = torch.gather(t.detach(), 1, idx.unsqueeze(2).expand(-1, -1, 2))
                best = torch.zeros(n, dtype=torch.long)             # argsort puts each image's best first
            t = t.detach().clone().requires_grad_(True)
            opt = torch.optim.SGD([t], lr=lr, momentum=momentum)
            while step < until:
                k = t.shape[1]
                crops = sample(data.x.repeat_interleave(k, 0), attention_grid(params(t).reshape(n * k, 3), (CROP, CROP)))
                f = encoder_features(encoder, crops).view(n, k, -1)
                f_rand = encoder_features(encoder, random_crops(data.x, g))
                d_pair = torch.cdist(f.reshape(n * k, -1), best_f).pow(2).view(n, k, n)
                d_rand = (f - f_rand.unsqueeze(1)).pow(2).sum(2)
                hinge = F.relu(d_pair - d_rand.unsqueeze(2) + MARGIN).masked_fill(off, 0)
                loss_nk = hinge.sum(2) / (n - 1)                                # (N, k)
                cost = loss_nk.detach()
                best = cost.argmin(1)
                best_f = f.detach()[torch.arange(n), best]
                opt.zero_grad(set_to_none=True)
                loss_nk.sum().backward()
                opt.step()
                step += 1
                if step % every == 0 or step == last:
                    record(step, float(cost.mean()))
    w = params(t.detach())[torch.arange(n), best]
    return hist._replace(windows=w, ious=iou(boxes_of(w), data.boxes))


def distil(data: CoLocSet, windows: torch.Tensor, steps: int = 600, lr: float = 3e-3, batch: int = 32,
           seed: int = 0) -> CoLocaliser:
    """A :class:`CoLocaliser` with native-scale windows (``fixed_scale = CROP / CANVAS``) whose localisation
    net is trained to predict the translations of ``windows (N, 3)`` (a :func:`search` result) for the images
    of ``data`` [ours]: squared error, Adam. It then predicts windows for images it has not seen, and SGD on
    the triplet loss can go on from there (:func:`train` with ``model=``). No label and no box is used."""
    if windows.shape != (data.x.shape[0], 3):
        raise ValueError(f"windows must have shape ({data.x.shape[0]}, 3), got {tuple(windows.shape)}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = CoLocaliser(fixed_scale=CROP / CANVAS)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = data.x.shape[0]
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch, n),), generator=g)
        loss = F.mse_loss(model.loc(data.x[idx])[:, 1:], windows[idx, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model


def correct_fraction(model: CoLocaliser, data: CoLocSet) -> float:
    """The share of ``data``'s images whose predicted window has IoU > 0.5 with the digit's box."""
    return share_correct(iou(predict_boxes(model, data.x), data.boxes))


# --------------------------------------------------------------------------- search over windows

class CoLocSearch(NamedTuple):
    """A search's result: the chosen windows ``params (N, 3)`` (attention s, t_x, t_y), their boxes' IoU with
    the true boxes ``(N,)``, and per sweep how many images changed window, the correct fraction and the
    triplet loss of the windows (random crops: every candidate of each image)."""

    params: torch.Tensor
    ious: torch.Tensor
    changed: list[int]
    correct: list[float]
    losses: list[float]

    @property
    def final_correct(self) -> float:
        return share_correct(self.ious)


def candidate_windows(stride: int = 4, side: int = CANVAS) -> torch.Tensor:
    """Native-scale (28×28) windows on a grid of top-left corners ``stride`` px apart: attention params
    ``(K, 3)``; K = 15² for the 84-px canvas and stride 4."""
    pos = torch.arange(0, side - CROP + 1, stride, dtype=torch.float32)
    cy, cx = torch.meshgrid(pos, pos, indexing="ij")
    centres = torch.stack([cx.flatten(), cy.flatten()], 1) + CROP / 2
    t = centres / side * 2 - 1
    return native_windows(t, side)


@torch.no_grad()
def window_features(x: torch.Tensor, encoder: nn.Sequential, windows: torch.Tensor) -> torch.Tensor:
    """Encoder features (:func:`encoder_features`, normalised) of every window of every image:
    ``x (N, 1, S, S)``, ``windows (K, 3)`` → ``(N, K, D)``."""
    k = windows.shape[0]
    grid = attention_grid(windows, (CROP, CROP))
    return torch.stack([encoder_features(encoder, sample(x[i:i + 1].expand(k, -1, -1, -1), grid))
                        for i in range(x.shape[0])])


def _loss_of(feats: torch.Tensor, d_rand: torch.Tensor, choice: torch.Tensor, margin: float) -> float:
    """The triplet loss of one window per image, the random crop's term averaged over each image's candidates."""
    n = feats.shape[0]
    cur = feats[torch.arange(n), choice]
    d_pair = torch.cdist(cur, cur).pow(2)                               # (N, N)
    rand = d_rand[torch.arange(n), choice]                             # (N, K): chosen window to every candidate
    hinge = F.relu(d_pair.unsqueeze(2) - rand.unsqueeze(1) + margin).mean(2)
    return float((hinge.sum() - hinge.diagonal().sum()) / (n * (n - 1)))


@torch.no_grad()
def search(data: CoLocSet, encoder: nn.Sequential, iters: int = 6, stride: int = 4,
           margin: float = MARGIN, callback=None) -> CoLocSearch:
    """Minimise the triplet loss (:func:`triplet_loss`) over one native-scale window per image by coordinate
    descent [ours]: in each sweep every image takes the candidate window (:func:`candidate_windows`) with the
    lowest loss against the other images' windows of the previous sweep (all images at once, so a sweep can
    also move away from the digits: results/colocalisation.md shows it for some classes), the random crop's
    term averaged over all of its own candidates; all images start centred; ``iters`` sweeps. No label and no box is used (the true boxes only
    score the result). SGD on a localisation net from a shared start gets trapped on background here (module
    docstring); this reaches the loss's low region directly. ``callback(sweep, params (N, 3), result so far)``
    is called after the start (sweep 0) and after every sweep (a page draws the windows live)."""
    windows = candidate_windows(stride)
    feats = window_features(data.x, encoder, windows)                    # (N, K, D)
    n, k = feats.shape[:2]
    d_rand = torch.stack([torch.cdist(f, f).pow(2) for f in feats])     # (N, K, K): candidate to candidate
    choice = torch.full((n,), k // 2, dtype=torch.long)
    changed, correct, losses = [], [], [_loss_of(feats, d_rand, choice, margin)]

    def report(sweep: int) -> None:
        if callback is not None:
            params = windows[choice]
            callback(sweep, params, CoLocSearch(params, iou(boxes_of(params), data.boxes), changed, correct, losses))

    report(0)
    for sweep in range(1, iters + 1):
        current = feats[torch.arange(n), choice]                        # (N, D)
        new = choice.clone()
        for i in range(n):
            others = torch.cat([current[:i], current[i + 1:]])
            d_pair = torch.cdist(feats[i], others).pow(2)               # (K, N − 1)
            hinge = F.relu(d_pair.unsqueeze(2) - d_rand[i].unsqueeze(1) + margin).mean((1, 2))
            new[i] = hinge.argmin()
        changed.append(int((new != choice).sum()))
        choice = new
        ious = iou(boxes_of(windows[choice]), data.boxes)
        correct.append(share_correct(ious))
        losses.append(_loss_of(feats, d_rand, choice, margin))
        report(sweep)
    params = windows[choice]
    return CoLocSearch(params, iou(boxes_of(params), data.boxes), changed, correct, losses)


__all__ = ["BANK_MODEL", "BANK_TASKS", "CoLocBank", "bank_from_meta", "S_MAX", "S_MIN", "bounded_attention", "CANVAS", "CLUTTER_PIECES", "CROP", "CoLocConfig", "CoLocOutput",
           "BASIN_LR", "BASIN_MOMENTUM", "TILED_SCHEDULE", "TILES", "TiledSGD", "tiled_grid", "tiled_sgd", "BASIN_STEPS", "BasinProbe", "box_centres", "native_windows", "CoLocRun", "CoLocSearch", "basin_probe", "CoLocSet", "CoLocaliser", "candidate_windows", "correct_fraction", "descent_alignment",
           "distil", "lead_share", "search",
           "window_features",
           "IOU_CORRECT", "LocalisationNet", "MARGIN", "N_IMAGES", "boxes_of", "encoder_features", "iou", "make_set", "paper_set", "paper_sets",
           "predict_boxes", "random_crops", "share_correct", "train", "triplet_loss"]
