"""MNIST addition (paper appendix): logic of ``pages/addition.py`` and ``scripts/make_addition_results.py``.

The task: two 42×42 channels, each holding an independently RTS-distorted MNIST digit; the label
is their sum (19 classes, 0..18). Data: :func:`stn_core.datasets.warp_pair` /
``fixed_test_set("mnist-addition")``. Models (:func:`stn_core.build_model` with ``in_channels=2,
num_classes=19``): FCN, CNN, a single ST-FCN (one transformer warping both channels with one θ),
and the 2×ST-FCN (:class:`stn_core.models.ParallelSTNet`: two transformers, each with its own FC
localisation net that sees both channels and warps both channels).

**Has each transformer taken one digit?** The main measure is where each box is centred:

* *box centre tracking* (:func:`centre_distances`, :func:`box_focus`): the centre of transformer
  k's box (θ applied to the output's centre) against each digit's ink centroid (pixel centres
  weighted by value, per channel). Transformer k *is on digit c* on a pair when its box centre
  lies within :data:`TRACK_RADIUS` of digit c's centroid and not of the other's; over the test set,
  the correlation of the box centre with each digit's centroid shows whether the box follows that
  digit wherever it is placed.

Two older measures stay in the report because they are easy to misread:

* *ink share* (:func:`ink_shares`): for transformer k, the share of its output's ink mass that
  comes from channel 1, ``m₁ / (m₁ + m₂)``.
* *box coverage* (:func:`box_coverage`): the fraction of each input channel's ink inside the
  parallelogram a transformer samples. A box is digit-sized, and the other channel's digit lies
  anywhere in the same 42×42 canvas, so a box centred exactly on digit 1 still holds whatever
  part of digit 2 happens to lie in the same place: coverage and ink share mix *where the box
  is* with *where the other digit happens to be*.

Coordinates: normalised [-1, 1], ``align_corners=False``; θ maps output → input.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import datasets as ds
from . import distortions as D
from .train import PAPER_ADDITION

TASK = "mnist-addition"
#: Checkpoint keys in table order: checkpoints/mnist_addition_<key>.safetensors + .json.
MODEL_KEYS = ("fcn", "cnn", "st-fcn", "2st-fcn")
MODEL_LABELS = {"fcn": "FCN", "cnn": "CNN", "st-fcn": "ST-FCN (1 transformer)", "2st-fcn": "2×ST-FCN"}
#: (--model, --transform) of each key.
MODEL_SPECS = {"fcn": ("fcn", None), "cnn": ("cnn", None), "st-fcn": ("st-fcn", "affine"),
               "2st-fcn": ("2st-fcn", "affine")}
#: Colour of transformer 1, 2 (boxes and output frames).
TRANSFORMER_COLOURS = ("#f76707", "#37b24d")
#: An output with less ink than this (sum of pixel values, i.e. about one full pixel) is
#: "empty": its transformer looks outside both digits and takes neither.
EMPTY_INK = 1.0
#: Seed key of the page's pair distortions (independent of the training / test streams).
_PAGE_SEED_KEY = 30


def paper_error(key: str) -> float | None:
    """The paper's test error (%) of a model key (appendix, MNIST addition)."""
    return PAPER_ADDITION.get(MODEL_SPECS[key]) if key in MODEL_SPECS else None


def stem_name(key: str) -> str:
    """``"2st-fcn"`` → ``"mnist_addition_2st-fcn"``."""
    if key not in MODEL_KEYS:
        raise ValueError(f"unknown model {key!r}; choose one of {', '.join(MODEL_KEYS)}")
    return f"mnist_addition_{key}"


def train_command(key: str) -> str:
    """The command that trains (or resumes) one model's checkpoint."""
    stem_name(key)
    return f"python scripts/train_addition.py --models {key} --threads 1"


# --------------------------------------------------------------------------- checkpoints

@dataclass
class Entry:
    """One model's checkpoint: ``stem`` path, ``meta`` (None when unreadable), ``final`` flag."""

    key: str
    stem: Path
    meta: dict | None
    error: str = ""

    @property
    def final(self) -> bool:
        return bool(self.meta and self.meta.get("final"))

    @property
    def version(self) -> tuple[int, int]:
        """(mtime_ns, size) of the weights: changes when training rewrites the checkpoint."""
        try:
            st = self.stem.with_name(self.stem.name + ".safetensors").stat()
            return int(st.st_mtime_ns), int(st.st_size)
        except OSError:
            return 0, 0


def find_checkpoints(folder: str | os.PathLike) -> dict[str, Entry]:
    """The MNIST-addition checkpoints present in ``folder`` (both files needed), by model key."""
    from .checkpoints import CheckpointError, load_meta

    out: dict[str, Entry] = {}
    for key in MODEL_KEYS:
        stem = Path(folder) / stem_name(key)
        if not (stem.with_name(stem.name + ".json").is_file() and stem.with_name(stem.name + ".safetensors").is_file()):
            continue
        try:
            out[key] = Entry(key, stem, load_meta(stem))
        except CheckpointError as e:
            out[key] = Entry(key, stem, None, str(e))
    return out


# --------------------------------------------------------------------------- pairs

def pair_params(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """RTS parameters of the two channels of the page's pair for ``seed`` (deterministic)."""
    g = D.make_generator(ds.derive_seed(int(seed), _PAGE_SEED_KEY))
    p = D.sample_params("RTS", 2, g)
    return D.slice_params(p, 0, 1), D.slice_params(p, 1, 2)


def make_pair(digit1: np.ndarray | torch.Tensor, digit2: np.ndarray | torch.Tensor, seed: int) -> torch.Tensor:
    """Two 28×28 digits (uint8 0..255 or float 0..1) → the distorted pair ``(1, 2, 42, 42)``."""
    imgs = []
    for d in (digit1, digit2):
        t = torch.as_tensor(np.asarray(d))
        if t.dim() == 3 and t.shape[-1] in (3, 4):  # RGB(A) → grey
            t = t[..., :3].float().mean(-1)
        if tuple(t.shape) != (28, 28):
            raise ValueError(f"each digit must be a 28×28 image, got shape {tuple(t.shape)}")
        imgs.append((t.float() / 255.0 if t.dtype == torch.uint8 else t.float()).clamp(0, 1)[None])
    p1, p2 = pair_params(seed)
    return ds.warp_pair(imgs[0], imgs[1], p1, p2)


# --------------------------------------------------------------------------- inference

def transformers_of(model: torch.nn.Module) -> list:
    """The model's spatial transformers in order (empty for FCN / CNN)."""
    many = getattr(model, "transformers", None)
    if many is not None:
        return list(many)
    one = getattr(model, "transformer", None)
    return [] if one is None else [one]


@torch.inference_mode()
def forward_views(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                      torch.Tensor | None]:
    """Logits ``(N, 19)``, θ ``(N, K, 2, 3)`` and transformer outputs ``(N, K, C, H, W)`` for
    ``x (N, C, H, W)`` (θ and outputs None without a transformer). Same logits as ``model(x)``."""
    sts = transformers_of(model)
    if not sts:
        return model(x), None, None
    outs = [st(x) for st in sts]
    cat = torch.cat(outs, 1)
    k = int(getattr(model, "downsample", 1))
    logits = model.classifier(F.avg_pool2d(cat, k) if k > 1 else cat)
    theta = torch.stack([st.last_theta for st in sts], 1)
    return logits, theta, torch.stack(outs, 1)


@dataclass
class PairView:
    """One pair through one model: ``probs (19,)``, ``pred``, and per transformer θ ``(K, 2, 3)``
    and output ``(K, C, H, W)`` (None without transformers), ink shares ``(K,)`` of channel 1."""

    probs: np.ndarray
    theta: np.ndarray | None = None
    outputs: np.ndarray | None = None
    shares: np.ndarray | None = None
    coverage: np.ndarray | None = None
    ink: np.ndarray | None = None  # (K,) total ink of each output
    distances: np.ndarray | None = None  # (K, C) box centre → digit centroid, normalised units

    @property
    def pred(self) -> int:
        return int(self.probs.argmax())

    @property
    def confidence(self) -> float:
        return float(self.probs.max())


def view_pair(model: torch.nn.Module, x: torch.Tensor) -> PairView:
    """Run ``x (1, 2, 42, 42)`` through a model (see :class:`PairView`)."""
    logits, theta, outs = forward_views(model, x)
    probs = torch.softmax(logits.float(), 1)[0].numpy()
    if theta is None:
        return PairView(probs)
    return PairView(probs, theta[0].numpy(), outs[0].numpy(), ink_shares(outs)[0].numpy(),
                    box_coverage(x, theta)[0].numpy(), outs[0].clamp_min(0).sum((-1, -2, -3)).double().numpy(),
                    centre_distances(x, theta)[0].numpy())


# --------------------------------------------------------------------------- measures

#: A transformer's box *is on* digit c when its centre lies within this distance of digit c's ink
#: centroid (normalised units, where the canvas is 2 wide: 0.2 = 4.2 px of the 42-px canvas, a
#: seventh of a 28-px digit's side).
TRACK_RADIUS = 0.2


def to_pixels(d: float | np.ndarray, size: int = 42) -> float | np.ndarray:
    """A distance in normalised units (the canvas is 2 wide) in pixels of a ``size``-px canvas."""
    return d * size / 2.0


def ink_centroids(x: torch.Tensor) -> torch.Tensor:
    """Ink centroid of each channel: ``x (N, C, H, W)`` → ``(N, C, 2)`` as normalised ``(x, y)``
    (pixel centres weighted by value); NaN for a channel without ink."""
    n, c, h, w = x.shape
    xs = (2 * torch.arange(w, dtype=torch.float64) + 1) / w - 1
    ys = (2 * torch.arange(h, dtype=torch.float64) + 1) / h - 1
    ink = x.double().clamp_min(0)
    tot = ink.sum((-1, -2))
    cx = (ink.sum(-2) * xs).sum(-1) / tot
    cy = (ink.sum(-1) * ys).sum(-1) / tot
    out = torch.stack([cx, cy], -1)
    return torch.where((tot > 0)[..., None], out, torch.full_like(out, float("nan")))


def box_centres(theta: torch.Tensor) -> torch.Tensor:
    """Where each transformer's box is centred: θ applied to the output's centre (0, 0).
    ``theta (N, K, 2, 3)`` (affine) or ``(N, K, 3, 3)`` (projective) → ``(N, K, 2)``."""
    th = theta.double()
    if th.shape[-2] == 3:
        return th[..., :2, 2] / th[..., 2:3, 2]
    return th[..., :2, 2]


def centre_distances(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Distance from each transformer's box centre to each channel's ink centroid (normalised
    units): ``x (N, C, H, W)``, ``theta (N, K, ...)`` → ``(N, K, C)``; NaN for an empty channel."""
    return torch.linalg.vector_norm(box_centres(theta)[:, :, None, :] - ink_centroids(x)[:, None, :, :], dim=-1)


def box_focus(distances: Sequence[float], ink: float) -> str:
    """Which digit one transformer's box is on, from its :func:`centre_distances` row ``(to digit
    1, to digit 2)`` and its output's ink: ``"digit 1"`` / ``"digit 2"`` when its centre lies within
    :data:`TRACK_RADIUS` of that digit's centroid only, ``"both digits"`` when within it of both
    (the two digits lie on top of each other), ``"neither digit"`` when within it of neither, and
    ``"no digit"`` when its output is empty (ink < :data:`EMPTY_INK`)."""
    if ink < EMPTY_INK:
        return "no digit"
    on = [bool(np.isfinite(d) and d <= TRACK_RADIUS) for d in (float(distances[0]), float(distances[1]))]
    if all(on):
        return "both digits"
    if not any(on):
        return "neither digit"
    return "digit 1" if on[0] else "digit 2"


def ink_shares(outputs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Share of channel 1 in each transformer output's ink mass: ``(N, K, 2, H, W)`` → ``(N, K)``.
    An empty output (no ink) counts as 0.5 (no preference)."""
    m = outputs.clamp_min(0).sum((-1, -2)).double()  # (N, K, 2)
    tot = m.sum(-1)
    return torch.where(tot > eps, m[..., 0] / tot.clamp_min(eps), torch.full_like(tot, 0.5))


def box_coverage(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Fraction of each input channel's ink inside each transformer's sampled parallelogram.

    ``x (N, C, H, W)``, ``theta (N, K, 2, 3)`` → ``(N, K, C)``. A pixel centre p is inside when
    ``A⁻¹ (p − t) ∈ [−1, 1]²`` (θ = [A | t] maps the output square to the input); pixels are
    weighted by their value. A channel without ink gets coverage 0; a singular A covers nothing.
    """
    n, c, h, w = x.shape
    th = theta.double()
    a, t = th[..., :2], th[..., 2]                                   # (N, K, 2, 2), (N, K, 2)
    xs = (2 * torch.arange(w, dtype=torch.float64) + 1) / w - 1
    ys = (2 * torch.arange(h, dtype=torch.float64) + 1) / h - 1
    pts = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)  # (HW, 2), x fastest
    det = torch.linalg.det(a)
    ok = det.abs() > 1e-9
    a_safe = torch.where(ok[..., None, None], a, torch.eye(2, dtype=a.dtype).expand_as(a))
    inv = torch.linalg.inv(a_safe)                                   # (N, K, 2, 2)
    q = torch.einsum("nkij,nkpj->nkpi", inv, pts[None, None] - t[:, :, None, :])  # (N, K, HW, 2)
    inside = (q.abs() <= 1).all(-1) & ok[..., None]                  # (N, K, HW)
    ink = x.double().clamp_min(0).reshape(n, c, h * w)               # (N, C, HW)
    got = torch.einsum("nkp,ncp->nkc", inside.double(), ink)
    tot = ink.sum(-1)[:, None, :]
    return torch.where(tot > 0, got / tot.clamp_min(1e-12), torch.zeros_like(got))


@dataclass
class Specialisation:
    """Summary of :func:`specialisation` over N test pairs (fractions in [0, 1]; K transformers,
    C = 2 digits).

    Box centre tracking (the main measure): ``on_digit[k][c]``: fraction of pairs where transformer
    k's box is on digit c alone (:func:`box_focus`); ``both[k]`` / ``neither[k]``: on both digits
    (they overlap) / on neither; ``centre_corr[k][c]``: correlation of its box centre with digit c's
    ink centroid (mean of the x and y correlations); ``median_dist_px[k][c]``: median distance from
    its box centre to digit c's centroid in pixels; ``apart``: fraction of pairs whose two digit
    centroids are more than 2 × :data:`TRACK_RADIUS` apart (there the rule can tell them apart);
    ``focus_split`` / ``focus_split_apart``: fraction of all / of those pairs where the first two
    transformers are on different digits; ``box_side_px[k]``: mean side of its box in pixels
    (``S·√|det A|``, the side of the square of the same area).

    Ink share and box coverage (see the module docstring): ``takes_ch1[k]`` / ``takes_ch2[k]``:
    its output's ink is mostly channel 1 / 2; ``empty[k]``: its output has (almost) no ink (<
    ``EMPTY_INK``); ``mean_share[k]``: mean ink share of channel 1; ``coverage[k][c]``: mean
    fraction of channel c's ink inside its box; ``split``: the transformers' inks come mostly from
    different digits; ``strong_split``: ... each with ≥ ``strong`` of its ink from its digit.
    """

    n: int
    takes_ch1: list[float]
    takes_ch2: list[float]
    empty: list[float]
    mean_share: list[float]
    coverage: list[list[float]]
    split: float
    strong_split: float
    strong: float
    on_digit: list[list[float]] = field(default_factory=list)
    both: list[float] = field(default_factory=list)
    neither: list[float] = field(default_factory=list)
    centre_corr: list[list[float]] = field(default_factory=list)
    median_dist_px: list[list[float]] = field(default_factory=list)
    apart: float = 0.0
    focus_split: float = 0.0
    focus_split_apart: float = 0.0
    box_side_px: list[float] = field(default_factory=list)

    def follows(self, k: int) -> int | None:
        """The digit (0 or 1) transformer k's box follows — the one it is on more often, if on it
        on more than half of the pairs — else None."""
        if not self.on_digit:
            return None
        c = int(self.on_digit[k][1] > self.on_digit[k][0])
        return c if self.on_digit[k][c] > 0.5 else None


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two 1-D float64 tensors (NaN pairs dropped; 0 without spread)."""
    ok = torch.isfinite(a) & torch.isfinite(b)
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else 0.0


@torch.inference_mode()
def specialisation(model: torch.nn.Module, x: torch.Tensor, chunk: int = 500, strong: float = 0.75) -> Specialisation:
    """Box-tracking, ink-share and box-coverage statistics of a transformer model on pairs
    ``x (N, 2, H, W)`` (see :class:`Specialisation`)."""
    if not transformers_of(model):
        raise ValueError("the model has no spatial transformer")
    shares, covs, masses, thetas = [], [], [], []
    for i in range(0, x.shape[0], chunk):
        xb = x[i:i + chunk]
        _, theta, outs = forward_views(model, xb)
        shares.append(ink_shares(outs))
        masses.append(outs.clamp_min(0).sum((-1, -2, -3)).double())
        covs.append(box_coverage(xb, theta))
        thetas.append(theta)
    s = torch.cat(shares)                  # (N, K)
    cov = torch.cat(covs)                  # (N, K, C)
    theta = torch.cat(thetas)              # (N, K, ...)
    empty = torch.cat(masses) < EMPTY_INK  # (N, K)
    takes1 = ~empty & (s > 0.5)
    takes2 = ~empty & (s < 0.5)
    k = s.shape[1]
    if k >= 2:
        differ = (takes1[:, 0] & takes2[:, 1]) | (takes2[:, 0] & takes1[:, 1])
        own = torch.where(takes1, s, 1 - s)  # share of the digit each transformer takes
        strong_split = float((differ & (own[:, :2] >= strong).all(1)).double().mean())
        split = float(differ.double().mean())
    else:
        split = strong_split = 0.0
    # box centre tracking: the page's per-pair rule (box_focus), vectorised
    cent, centroids = box_centres(theta), ink_centroids(x)        # (N, K, 2), (N, C, 2)
    dist = torch.linalg.vector_norm(cent[:, :, None] - centroids[:, None], dim=-1)  # (N, K, C)
    near = torch.nan_to_num(dist, nan=float("inf")) <= TRACK_RADIUS
    on1 = ~empty & near[..., 0] & ~near[..., 1]
    on2 = ~empty & near[..., 1] & ~near[..., 0]
    both = ~empty & near[..., 0] & near[..., 1]
    neither = ~empty & ~near[..., 0] & ~near[..., 1]
    sep = torch.linalg.vector_norm(centroids[:, 0] - centroids[:, 1], dim=-1)
    apart = torch.nan_to_num(sep, nan=0.0) > 2 * TRACK_RADIUS
    mean = lambda t: t.double().mean(0).tolist()  # noqa: E731
    focus_split = focus_split_apart = 0.0
    if k >= 2:
        differs = (on1[:, 0] & on2[:, 1]) | (on2[:, 0] & on1[:, 1])
        focus_split = float(differs.double().mean())
        focus_split_apart = float(differs[apart].double().mean()) if bool(apart.any()) else 0.0
    corr = [[0.5 * (_corr(cent[:, j, 0], centroids[:, c, 0]) + _corr(cent[:, j, 1], centroids[:, c, 1]))
             for c in range(centroids.shape[1])] for j in range(k)]
    med = [[float(to_pixels(dist[:, j, c].nanmedian(), x.shape[-1])) for c in range(dist.shape[2])] for j in range(k)]
    side = (torch.linalg.det(theta.double()[..., :2, :2]).abs().sqrt() * x.shape[-1]).mean(0).tolist()
    return Specialisation(int(s.shape[0]), mean(takes1), mean(takes2), mean(empty), s.mean(0).tolist(),
                          cov.mean(0).tolist(), split, strong_split, strong,
                          on_digit=[list(r) for r in zip(mean(on1), mean(on2))], both=mean(both),
                          neither=mean(neither), centre_corr=corr, median_dist_px=med,
                          apart=float(apart.double().mean()), focus_split=focus_split,
                          focus_split_apart=focus_split_apart, box_side_px=side)


# --------------------------------------------------------------------------- figures

def _to_px(points: np.ndarray, size: int) -> np.ndarray:
    """Normalised ``(M, 2)`` points → pixel coordinates of a ``size``-px image (align_corners=False)."""
    return ((np.asarray(points, dtype=np.float64) + 1.0) * size - 1.0) / 2.0


def _outline_px(theta: np.ndarray, size: int, per_edge: int = 8) -> np.ndarray:
    """The output square's border mapped through θ ``(2, 3)``, in pixel coordinates ``(M, 2)``."""
    t = np.linspace(-1.0, 1.0, per_edge + 1)
    one = np.ones_like(t)
    sq = np.concatenate([np.stack([t, -one], 1), np.stack([one, t], 1), np.stack([-t, one], 1),
                         np.stack([-one, -t], 1)], 0)
    th = np.asarray(theta, dtype=np.float64).reshape(2, 3)
    return _to_px(sq @ th[:, :2].T + th[:, 2], size)


def pair_figure(x: np.ndarray, theta: np.ndarray | None = None, title: str = "Input: two channels",
                height: int = 360):
    """The two input channels ``x (2, S, S)`` side by side, with each transformer's sampled region
    (θ ``(K, 2, 3)``) drawn over both channels in its colour, its centre as a dot (●), and each
    digit's ink centre as a cross (✕) in its channel."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x = np.asarray(x)
    s = x.shape[-1]
    fig = make_subplots(1, 2, subplot_titles=("channel 1 (digit 1)", "channel 2 (digit 2)"),
                        horizontal_spacing=0.04)
    for c in range(2):
        fig.add_trace(go.Heatmap(z=x[c], colorscale="gray", zmin=0, zmax=1, showscale=False, hoverinfo="skip"),
                      1, c + 1)
        if theta is not None:
            for k, th in enumerate(np.asarray(theta)):
                ol = _outline_px(th, s)
                fig.add_trace(go.Scatter(x=ol[:, 0], y=ol[:, 1], mode="lines", name=f"transformer {k + 1}",
                                         legendgroup=f"t{k}", showlegend=c == 0, hoverinfo="skip",
                                         line=dict(color=TRANSFORMER_COLOURS[k % 2], width=3)), 1, c + 1)
            centres = _to_px(box_centres(torch.as_tensor(np.asarray(theta))[None])[0].numpy(), s)
            for k, (px, py) in enumerate(centres):
                fig.add_trace(go.Scatter(x=[px], y=[py], mode="markers", legendgroup=f"t{k}", showlegend=False,
                                         name=f"centre of box {k + 1}", hovertemplate="%{fullData.name}<extra></extra>",
                                         marker=dict(color=TRANSFORMER_COLOURS[k % 2], size=11,
                                                     line=dict(color="white", width=1.5))), 1, c + 1)
        centroid = ink_centroids(torch.as_tensor(x[None, c:c + 1]))[0, 0].numpy()
        if np.isfinite(centroid).all():
            (gx, gy), = _to_px(centroid[None], s)
            fig.add_trace(go.Scatter(x=[gx], y=[gy], mode="markers", name="digit centre", legendgroup="centre",
                                     showlegend=c == 0, hovertemplate=f"centre of digit {c + 1}<extra></extra>",
                                     marker=dict(symbol="x-thin", size=14, color="#1c7ed6",
                                                 line=dict(color="#1c7ed6", width=3))), 1, c + 1)
    for c in range(2):
        fig.update_xaxes(range=[-0.5 - 6, s - 0.5 + 6], showticklabels=False, showgrid=False, zeroline=False,
                         row=1, col=c + 1)
        fig.update_yaxes(range=[s - 0.5 + 6, -0.5 - 6], showticklabels=False, showgrid=False, zeroline=False,
                         scaleanchor=f"x{'' if c == 0 else c + 1}", row=1, col=c + 1)
    fig.update_layout(title=title, height=height + 30, margin=dict(l=10, r=10, t=70, b=40), plot_bgcolor="#dee2e6",
                      legend=dict(orientation="h", yanchor="top", y=-0.05, xanchor="center", x=0.5))
    return fig


def outputs_figure(outputs: np.ndarray, focus: Sequence[str] | None = None, height: int = 330):
    """Each transformer's output ``(K, 2, S, S)`` in one row: for each transformer its two
    channels, titled in the transformer's colour; ``focus`` (per transformer, :func:`box_focus`)
    marks the channel of the digit its box is centred on with "its digit"."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    outputs = np.asarray(outputs)
    k = outputs.shape[0]
    titles = []
    for i in range(k):
        for c in range(2):
            mine = focus is not None and i < len(focus) and focus[i] == f"digit {c + 1}"
            titles.append(f"<span style='color:{TRANSFORMER_COLOURS[i % 2]}'><b>transformer {i + 1}</b></span>"
                          f"<br>channel {c + 1}" + (" · <b>its digit</b>" if mine else ""))
    fig = make_subplots(1, 2 * k, subplot_titles=titles, horizontal_spacing=0.02)
    for i in range(k):
        for c in range(2):
            n = i * 2 + c + 1
            fig.add_trace(go.Heatmap(z=outputs[i, c], colorscale="gray", zmin=0, zmax=1, showscale=False,
                                     hoverinfo="skip"), 1, n)
            fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, row=1, col=n)
            fig.update_yaxes(autorange="reversed", showticklabels=False, showgrid=False, zeroline=False,
                             scaleanchor=f"x{'' if n == 1 else n}", row=1, col=n)
    fig.update_layout(title="What each transformer passes on (its output, both channels)",
                      height=height, margin=dict(l=10, r=10, t=100, b=10))
    return fig


# --------------------------------------------------------------------------- page state

@dataclass
class PageState:
    """The page's view: two shipped test-digit indices, the distortion seed, the model key, and
    whether digit 1 / digit 2 is drawn by the user instead (``src_a`` / ``src_b``: "test" | "draw")."""

    a: int = 0
    b: int = 1
    seed: int = 0
    model: str = "2st-fcn"
    src_a: str = "test"
    src_b: str = "test"

    def query(self) -> dict[str, str]:
        """Query parameters that reopen this view (a drawing itself is not in the link, only that
        the digit is drawn)."""
        q = {"a": str(self.a), "b": str(self.b), "seed": str(self.seed), "model": self.model}
        q.update({f"src_{n}": "draw" for n in ("a", "b") if getattr(self, f"src_{n}") == "draw"})
        return q


#: Where each digit of the pair comes from.
DIGIT_SOURCES = {"test": "Test digit", "draw": "Draw"}


MAX_SEED = 2**31 - 1


def parse_state(query: Mapping[str, str], n_digits: int) -> tuple[PageState, list[str]]:
    """Read a :class:`PageState` from query parameters; bad values fall back to the defaults with
    a warning sentence each (returned)."""
    st, warns = PageState(), []
    for name, hi in (("a", n_digits - 1), ("b", n_digits - 1), ("seed", MAX_SEED)):
        raw = query.get(name)
        if raw in (None, ""):
            continue
        try:
            v = int(str(raw))
        except ValueError:
            warns.append(f"Ignored {name}={raw!r}: not a whole number.")
            continue
        if not 0 <= v <= hi:
            warns.append(f"Ignored {name}={raw!r}: must be between 0 and {hi}.")
            continue
        setattr(st, name, v)
    m = query.get("model")
    if m not in (None, ""):
        if m in MODEL_KEYS:
            st.model = m
        else:
            warns.append(f"Ignored model={m!r}: choose one of {', '.join(MODEL_KEYS)}.")
    for name in ("src_a", "src_b"):
        v = query.get(name)
        if v in (None, ""):
            continue
        if v in DIGIT_SOURCES:
            setattr(st, name, v)
        else:
            warns.append(f"Ignored {name}={v!r}: choose one of {', '.join(DIGIT_SOURCES)}.")
    return st, warns


def random_state(rng: np.random.Generator, n_digits: int, model: str = "2st-fcn") -> PageState:
    """A random pair of shipped digits and a random distortion seed."""
    return PageState(int(rng.integers(n_digits)), int(rng.integers(n_digits)), int(rng.integers(100_000)), model)


def pair_image(x: np.ndarray, gap: int = 2) -> np.ndarray:
    """The two channels ``(2, S, S)`` side by side with a mid-grey gap: ``(S, 2S + gap)`` in [0, 1]."""
    x = np.asarray(x, dtype=np.float32)
    sep = np.full((x.shape[1], gap), 0.5, np.float32)
    return np.concatenate([x[0], sep, x[1]], 1)


def comparison_rows(views: Mapping[str, PairView], entries: Mapping[str, Entry], true_sum: int | None) -> list[dict]:
    """One row per model (table order) for the "same pair through the other models" table
    (display strings; "—" where a model is missing)."""
    rows = []
    for key in MODEL_KEYS:
        e, v = entries.get(key), views.get(key)
        meta = (e.meta or {}) if e is not None else {}
        err = meta.get("test_error")
        rows.append({
            "model": MODEL_LABELS[key],
            "predicted sum": "—" if v is None else str(v.pred),
            "probability": "—" if v is None else f"{100 * v.confidence:.0f} %",
            "correct": "—" if v is None or true_sum is None else ("yes" if v.pred == true_sum else "no"),
            "our test error (%)": "—" if err is None else f"{err:.2f}",
            "paper (%)": _fmt(paper_error(key)),
            "status": ("not trained yet" if e is None else "unreadable" if e.meta is None
                       else "final" if e.final else f"training (step {meta.get('steps')})"),
        })
    return rows


# --------------------------------------------------------------------------- report

def optimizer_text(train_args: Mapping) -> str:
    """How a run was optimised, from its checkpoint's ``train_args`` (older runs lack "optimizer": SGD)."""
    if train_args.get("optimizer", "sgd") == "adam":
        text = f"Adam (β = 0.9, 0.999) lr {train_args.get('lr')}"
    else:
        text = f"SGD lr {train_args.get('lr')} with momentum {train_args.get('momentum')}"
    mult = train_args.get("loc_lr_mult", 1.0)
    return text + (f", localisation nets at {mult:g}× that lr" if mult != 1.0 else "")


def _fmt(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def results_markdown(entries: Mapping[str, Entry], spec: Specialisation | None, command: str,
                     spec_command: str = "", spec_note: str = "", spec_single: Specialisation | None = None) -> str:
    """``results/mnist-addition.md``: ours beside the paper's, schedules, commands, specialisation."""
    lines = ["# MNIST addition (paper appendix)", "",
             f"Generated by `{command}` from the checkpoint JSONs in `checkpoints/` (test errors) and a "
             "fresh evaluation of the ST-FCN and 2×ST-FCN on the fixed test set (where their boxes go). Do not edit by hand.", "",
             "Task: two 42×42 channels, each an independently RTS-distorted MNIST digit (rotation ±45°, "
             "scale 0.7–1.2, random position); predict the sum (19 classes). Test set: 10,000 fixed pairs "
             "(test digit i with a seeded partner, seed 20150605; `stn_core.datasets.make_pair_test_set`). "
             "All four models have ≈400k weights (±1 %).", "",
             "| Model | our test error (%) | paper (%) | steps × batch | params | status | command |",
             "|---|---|---|---|---|---|---|"]
    for key in MODEL_KEYS:
        e = entries.get(key)
        paper = _fmt(paper_error(key))
        if e is None or e.meta is None:
            why = "not trained yet" if e is None else f"unreadable: {e.error}"
            lines.append(f"| {MODEL_LABELS[key]} | — | {paper} (paper) | — | — | {why} | `{train_command(key)}` |")
            continue
        m = e.meta
        ta = m.get("train_args", {})
        sched = f"{m.get('steps', 0):,} of {ta.get('steps', 0):,} × {ta.get('batch', '?')}"
        status = "final" if e.final else "training (last evaluated error)"
        lines.append(f"| {MODEL_LABELS[key]} | {_fmt(m.get('test_error'), 2)} | {paper} (paper) | {sched} | "
                     f"{m.get('params', 0):,} | {status} | `{m.get('command', '')}` |")
    lines += ["", "## Schedules (ours vs the paper)", "",
              "The paper trains every model for 150,000 SGD steps of batch 256 (lr 0.01, ÷10 every 50k, plain SGD). "
              "Ours are reduced to fit about one hour on one CPU thread; `scripts/train_addition.py` says why the FCN "
              "family uses Adam rather than the paper's SGD (what SGD did here):", ""]
    for key in MODEL_KEYS:
        e = entries.get(key)
        if e is None or e.meta is None:
            continue
        ta = e.meta.get("train_args", {})
        secs = e.meta.get("train_seconds")
        lines.append(f"- {MODEL_LABELS[key]}: {ta.get('steps', 0):,} steps × {ta.get('batch')} "
                     f"({ta.get('steps', 0) * ta.get('batch', 0) / (150_000 * 256):.1%} of the paper's samples), "
                     f"{optimizer_text(ta)}, ÷10 at 1/3 and 2/3 of the steps; "
                     f"{_fmt(secs / 60 if secs else None)} minutes of training (wall clock, one thread on a shared, "
                     "busy 2-core machine)"
                     f"{'' if not e.meta.get('samples_per_s') else ', ' + str(e.meta['samples_per_s']) + ' samples/s'}.")
    lines += ["", "The CNN gets far fewer steps than the FCN family (a paper-sized CNN on 2×42×42 runs at only "
              "≈90 samples/s on one thread here), so its error is not comparable with theirs.", ""]
    lines += ["## Has each transformer of the 2×ST-FCN taken one digit?", ""]
    if spec is None:
        lines += [spec_note or "No 2×ST-FCN checkpoint yet: nothing measured.", ""]
    else:
        r_px = to_pixels(TRACK_RADIUS)
        lines += [f"Measured with `{spec_command}` on {spec.n:,} test pairs (`stn_core.addition.specialisation`). "
                  + spec_note, "",
                  "**Where each box is centred.** The centre of transformer k's box (θ applied to the centre of its "
                  "output) against each digit's ink centroid (pixel centres weighted by value, per channel). A box "
                  f"*is on* digit c when its centre lies within {TRACK_RADIUS:g} (normalised units, {r_px:.1f} px of "
                  "the 42-px canvas) of digit c's centroid and not of the other's; *on both* when the two digits lie "
                  "on top of each other; *on neither* otherwise. The correlation (mean of x and y) shows whether the "
                  "box follows that digit wherever it is placed.", "",
                  "| | on digit 1 | on digit 2 | on both (digits overlap) | on neither | corr. with digit 1's centre "
                  "| corr. with digit 2's centre | median distance to digit 1 | median distance to digit 2 | "
                  "mean box side |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        rows = [(f"2×ST-FCN transformer {k + 1}", spec, k) for k in range(len(spec.on_digit))]
        if spec_single is not None and spec_single.on_digit:
            rows.append(("ST-FCN (1 transformer)", spec_single, 0))
        for name, sp, k in rows:
            lines.append(f"| {name} | {100 * sp.on_digit[k][0]:.1f} % | {100 * sp.on_digit[k][1]:.1f} % | "
                         f"{100 * sp.both[k]:.1f} % | {100 * sp.neither[k]:.1f} % | {sp.centre_corr[k][0]:.2f} | "
                         f"{sp.centre_corr[k][1]:.2f} | {sp.median_dist_px[k][0]:.1f} px | "
                         f"{sp.median_dist_px[k][1]:.1f} px | {sp.box_side_px[k]:.1f} px |")
        lines += ["", f"- The two transformers are on **different** digits on **{100 * spec.focus_split:.1f} %** of "
                  f"all pairs, and on **{100 * spec.focus_split_apart:.1f} %** of the {100 * spec.apart:.1f} % of pairs "
                  f"whose digits are more than {2 * r_px:.1f} px apart (where the rule can tell the digits apart).", "",
                  "**Ink share and box coverage** (easy to misread). *Ink share*: of the ink in transformer k's "
                  "2-channel output, the share from channel 1; it *takes digit c* when channel c gives more than half, "
                  f"*neither* when its output holds less than {EMPTY_INK:g} of ink. *Box coverage*: the fraction of an "
                  "input channel's ink inside the parallelogram transformer k samples. The boxes are digit-sized and "
                  "the other channel's digit lies anywhere on the same canvas, so a box centred exactly on digit 1 "
                  "still holds whatever part of digit 2 lies in the same place: these two numbers mix where the box is "
                  "with where the other digit happens to be.", "",
                  "| | takes digit 1 (channel 1) | takes digit 2 (channel 2) | takes neither (empty output) | "
                  "mean ink share of ch. 1 | box covers ch. 1 ink | box covers ch. 2 ink |",
                  "|---|---|---|---|---|---|---|"]
        for k in range(len(spec.takes_ch1)):
            lines.append(f"| transformer {k + 1} | {100 * spec.takes_ch1[k]:.1f} % | {100 * spec.takes_ch2[k]:.1f} % | "
                         f"{100 * spec.empty[k]:.1f} % | "
                         f"{100 * spec.mean_share[k]:.1f} % | {100 * spec.coverage[k][0]:.1f} % | "
                         f"{100 * spec.coverage[k][1]:.1f} % |")
        lines += ["", f"- By ink share the two transformers take different digits on {100 * spec.split:.1f} % of the "
                  f"pairs; with at least {100 * spec.strong:.0f} % of each output's ink from its digit on "
                  f"{100 * spec.strong_split:.1f} %.", ""]
    lines += verdict_lines(entries, spec)
    return "\n".join(lines) + "\n"


#: The split is *clean* when, on pairs whose digits are apart, the two transformers are on
#: different digits at least this often.
CLEAN_SPLIT = 0.9


def verdict_lines(entries: Mapping[str, Entry], spec: Specialisation | None) -> list[str]:
    """"## Verdict": the paper's ordering (2×ST-FCN < ST-FCN < FCN) checked on the final
    checkpoints, the gap to the paper's numbers, and which digit each transformer's box follows."""
    errs = {k: e.meta.get("test_error") for k, e in entries.items() if e.meta is not None and e.final}
    out = ["## Verdict", ""]
    for a, b in (("st-fcn", "fcn"), ("2st-fcn", "st-fcn")):
        if a in errs and b in errs:
            yes = errs[a] < errs[b]
            out.append(f"- {MODEL_LABELS[a]} {'beats' if yes else 'does **not** beat'} {MODEL_LABELS[b]} "
                       f"({errs[a]:.2f} vs {errs[b]:.2f} %; the paper: {paper_error(a)} vs {paper_error(b)} %).")
    gaps = [f"{MODEL_LABELS[k]} +{errs[k] - paper_error(k):.1f} pp" for k in MODEL_KEYS
            if k in errs and paper_error(k) is not None]
    if gaps:
        out.append("- Gap to the paper (ours − paper): " + ", ".join(gaps) + ". Our runs see far fewer samples than "
                   "the paper's 150k × 256 (see the schedules above).")
    if spec is not None and spec.on_digit:
        follows = [spec.follows(k) for k in range(len(spec.on_digit))]
        for k, c in enumerate(follows):
            if c is None:
                out.append(f"- Transformer {k + 1}'s box follows neither digit: it is on digit 1 on "
                           f"{100 * spec.on_digit[k][0]:.1f} % and on digit 2 on {100 * spec.on_digit[k][1]:.1f} % "
                           "of the pairs.")
            else:
                out.append(f"- Transformer {k + 1}'s box follows digit {c + 1}: its centre is on that digit on "
                           f"{100 * spec.on_digit[k][c]:.1f} % of the pairs (on the other alone on "
                           f"{100 * spec.on_digit[k][1 - c]:.1f} %), correlation with its centre "
                           f"{spec.centre_corr[k][c]:.2f} (with the other's {spec.centre_corr[k][1 - c]:.2f}), median "
                           f"distance {spec.median_dist_px[k][c]:.1f} px.")
        clean = (len(follows) >= 2 and None not in follows and len(set(follows)) == len(follows)
                 and spec.focus_split_apart >= CLEAN_SPLIT)
        out.append(f"- So each transformer has {'' if clean else '**not** '}taken one digit: on pairs whose digits "
                   f"are apart the two boxes are on different digits on {100 * spec.focus_split_apart:.1f} % "
                   f"(clean at ≥ {100 * CLEAN_SPLIT:.0f} %). The paper's split (each transformer attends to one "
                   f"digit) is {'reached' if clean else '**not** reached at this training length'}."
                   + (" The boxes are digit-sized rather than tight, so each output still shows part of the other "
                      "channel's digit where it lies under the box (the ink-share table above)." if clean else ""))
    return out + [""]


def load_json(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


__all__ = ["Entry", "MODEL_KEYS", "MODEL_LABELS", "MODEL_SPECS", "PageState", "PairView", "Specialisation", "TASK",
           "comparison_rows", "optimizer_text", "verdict_lines", "box_focus", "TRACK_RADIUS", "CLEAN_SPLIT", "box_centres", "centre_distances",
           "ink_centroids", "to_pixels", "pair_image", "parse_state", "random_state",
           "DIGIT_SOURCES", "EMPTY_INK", "TRANSFORMER_COLOURS", "box_coverage", "find_checkpoints", "forward_views", "ink_shares", "make_pair",
           "outputs_figure", "pair_figure", "pair_params", "paper_error", "results_markdown", "specialisation",
           "stem_name", "train_command", "transformers_of", "view_pair"]
