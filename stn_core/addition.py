"""MNIST addition (paper appendix): logic of ``pages/addition.py`` and ``scripts/make_addition_results.py``.

The task: two 42×42 channels, each holding an independently RTS-distorted MNIST digit; the label
is their sum (19 classes, 0..18). Data: :func:`stn_core.datasets.warp_pair` /
``fixed_test_set("mnist-addition")``. Models (:func:`stn_core.build_model` with ``in_channels=2,
num_classes=19``): FCN, CNN, a single ST-FCN (one transformer warping both channels with one θ),
and the 2×ST-FCN (:class:`stn_core.models.ParallelSTNet`: two transformers, each with its own FC
localisation net that sees both channels and warps both channels).

**Has each transformer taken one digit?** Two measures, both on the fixed test set:

* *ink share* (:func:`ink_shares`): for transformer k, the share of its output's ink mass (sum
  of pixel values) that comes from channel 1, ``m₁ / (m₁ + m₂)``. Transformer k *takes digit c*
  on a pair when channel c gives more than half of its output ink. The model *splits* a pair
  when its two transformers take different digits (:func:`specialisation`).
* *box coverage* (:func:`box_coverage`): the fraction of each input channel's ink (pixel centres
  weighted by value) inside the parallelogram a transformer samples (its θ applied to the output
  square). A transformer that zooms onto digit 1 covers ≈100 % of channel 1's ink and only the
  part of digit 2 that happens to lie in the same place.

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
                    box_coverage(x, theta)[0].numpy(), outs[0].clamp_min(0).sum((-1, -2, -3)).double().numpy())


# --------------------------------------------------------------------------- measures

#: A transformer *centres on* digit c when its box holds this much more of digit c's ink than of the other's.
FOCUS_MARGIN = 0.2


def box_focus(coverage: Sequence[float], ink: float) -> str:
    """What one transformer's box holds on one pair, from its :func:`box_coverage` row
    ``(cov of digit 1, cov of digit 2)`` and its output's ink: ``"digit 1"`` / ``"digit 2"``
    when it holds at least :data:`FOCUS_MARGIN` more of that digit's ink than of the other's,
    ``"both digits"`` otherwise, ``"no digit"`` when its output is empty (ink < :data:`EMPTY_INK`).
    (Ink shares can mislead here: a box centred on a small digit 1 may still catch more ink of a
    big digit 2 at its edge.)"""
    if ink < EMPTY_INK:
        return "no digit"
    c1, c2 = float(coverage[0]), float(coverage[1])
    if abs(c1 - c2) < FOCUS_MARGIN:
        return "both digits"
    return "digit 1" if c1 > c2 else "digit 2"


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
    """Summary of :func:`specialisation` over N test pairs (all fractions in [0, 1]).

    ``takes_ch1[k]``: fraction of pairs where transformer k's output ink is mostly channel 1;
    ``takes_ch2[k]``: ... mostly channel 2; ``empty[k]``: its output has (almost) no ink
    (< ``EMPTY_INK``), so it takes neither; ``mean_share[k]``: mean ink share of channel 1;
    ``coverage[k][c]``: mean fraction of channel c's ink inside transformer k's box; ``split``:
    fraction of pairs where the transformers take different digits; ``strong_split``: ... and each
    has ≥ ``strong`` of its ink from its digit.
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
    extra: dict = field(default_factory=dict)


@torch.inference_mode()
def specialisation(model: torch.nn.Module, x: torch.Tensor, chunk: int = 500, strong: float = 0.75) -> Specialisation:
    """Ink-share and box-coverage statistics of a transformer model on pairs ``x (N, 2, H, W)``."""
    if not transformers_of(model):
        raise ValueError("the model has no spatial transformer")
    shares, covs, masses = [], [], []
    for i in range(0, x.shape[0], chunk):
        xb = x[i:i + chunk]
        _, theta, outs = forward_views(model, xb)
        shares.append(ink_shares(outs))
        masses.append(outs.clamp_min(0).sum((-1, -2, -3)).double())
        covs.append(box_coverage(xb, theta))
    s = torch.cat(shares)                  # (N, K)
    cov = torch.cat(covs)                  # (N, K, C)
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
    # the page's per-pair rule (box_focus): a box centres on the digit it holds FOCUS_MARGIN more of
    gap = cov[..., 0] - cov[..., 1]
    on1, on2 = ~empty & (gap >= FOCUS_MARGIN), ~empty & (gap <= -FOCUS_MARGIN)
    extra = {"centres_on_1": on1.double().mean(0).tolist(), "centres_on_2": on2.double().mean(0).tolist()}
    if k >= 2:
        extra["focus_split"] = float(((on1[:, 0] & on2[:, 1]) | (on2[:, 0] & on1[:, 1])).double().mean())
    return Specialisation(int(s.shape[0]), takes1.double().mean(0).tolist(), takes2.double().mean(0).tolist(),
                          empty.double().mean(0).tolist(), s.mean(0).tolist(),
                          cov.mean(0).tolist(), split, strong_split, strong, extra)


# --------------------------------------------------------------------------- figures

def _outline_px(theta: np.ndarray, size: int, per_edge: int = 8) -> np.ndarray:
    """The output square's border mapped through θ ``(2, 3)``, in pixel coordinates ``(M, 2)``."""
    t = np.linspace(-1.0, 1.0, per_edge + 1)
    one = np.ones_like(t)
    sq = np.concatenate([np.stack([t, -one], 1), np.stack([one, t], 1), np.stack([-t, one], 1),
                         np.stack([-one, -t], 1)], 0)
    th = np.asarray(theta, dtype=np.float64).reshape(2, 3)
    src = sq @ th[:, :2].T + th[:, 2]
    return ((src + 1.0) * size - 1.0) / 2.0


def pair_figure(x: np.ndarray, theta: np.ndarray | None = None, title: str = "Input: two channels",
                height: int = 360):
    """The two input channels ``x (2, S, S)`` side by side, with each transformer's sampled region
    (θ ``(K, 2, 3)``) drawn over both channels in its colour."""
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
    for c in range(2):
        fig.update_xaxes(range=[-0.5 - 6, s - 0.5 + 6], showticklabels=False, showgrid=False, zeroline=False,
                         row=1, col=c + 1)
        fig.update_yaxes(range=[s - 0.5 + 6, -0.5 - 6], showticklabels=False, showgrid=False, zeroline=False,
                         scaleanchor=f"x{'' if c == 0 else c + 1}", row=1, col=c + 1)
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=70, b=10), plot_bgcolor="#dee2e6",
                      legend=dict(orientation="h", yanchor="bottom", y=1.08, xanchor="right", x=1.0))
    return fig


def outputs_figure(outputs: np.ndarray, shares: np.ndarray | None = None, height: int = 330):
    """Each transformer's output ``(K, 2, S, S)`` in one row: for each transformer its two
    channels, titled in the transformer's colour with the channel's share of its ink."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    outputs = np.asarray(outputs)
    k = outputs.shape[0]
    titles = []
    for i in range(k):
        for c in range(2):
            sh = None if shares is None else (shares[i] if c == 0 else 1 - shares[i])
            extra = "" if sh is None else f": {100 * sh:.0f}% of its ink"
            titles.append(f"<span style='color:{TRANSFORMER_COLOURS[i % 2]}'><b>transformer {i + 1}</b></span>"
                          f"<br>channel {c + 1}{extra}")
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
    """The page's view: two shipped test-digit indices, the distortion seed and the model key."""

    a: int = 0
    b: int = 1
    seed: int = 0
    model: str = "2st-fcn"

    def query(self) -> dict[str, str]:
        """Query parameters that reopen this view."""
        return {"a": str(self.a), "b": str(self.b), "seed": str(self.seed), "model": self.model}


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
                     spec_command: str = "", spec_note: str = "") -> str:
    """``results/mnist-addition.md``: ours beside the paper's, schedules, commands, specialisation."""
    lines = ["# MNIST addition (paper appendix)", "",
             f"Generated by `{command}` from the checkpoint JSONs in `checkpoints/` (test errors) and a "
             "fresh evaluation of the 2×ST-FCN on the fixed test set (specialisation). Do not edit by hand.", "",
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
        lines += [f"Measured with `{spec_command}` on {spec.n:,} test pairs (`stn_core.addition.specialisation`). "
                  + spec_note, "",
                  "*Ink share*: of the ink (sum of pixel values) in transformer k's 2-channel output, the share "
                  "from channel 1. Transformer k *takes digit c* on a pair when channel c gives more than half; "
                  f"it takes *neither* when its output holds less than {EMPTY_INK:g} of ink (about one full pixel: "
                  "it looks outside both digits). "
                  "*Box coverage*: the fraction of an input channel's ink (pixel centres, weighted by value) inside "
                  "the parallelogram transformer k samples.", "",
                  "| | takes digit 1 (channel 1) | takes digit 2 (channel 2) | takes neither (empty output) | "
                  "mean ink share of ch. 1 | box covers ch. 1 ink | box covers ch. 2 ink |",
                  "|---|---|---|---|---|---|---|"]
        for k in range(len(spec.takes_ch1)):
            lines.append(f"| transformer {k + 1} | {100 * spec.takes_ch1[k]:.1f} % | {100 * spec.takes_ch2[k]:.1f} % | "
                         f"{100 * spec.empty[k]:.1f} % | "
                         f"{100 * spec.mean_share[k]:.1f} % | {100 * spec.coverage[k][0]:.1f} % | "
                         f"{100 * spec.coverage[k][1]:.1f} % |")
        lines += ["", f"- The two transformers take **different** digits on **{100 * spec.split:.1f} %** of the pairs; "
                  f"different digits with at least {100 * spec.strong:.0f} % of each output's ink from its digit: "
                  f"{100 * spec.strong_split:.1f} %.", ""]
    lines += verdict_lines(entries, spec)
    return "\n".join(lines) + "\n"


def verdict_lines(entries: Mapping[str, Entry], spec: Specialisation | None) -> list[str]:
    """"## Verdict": the paper's ordering (2×ST-FCN < ST-FCN < FCN) checked on the final
    checkpoints, the gap to the paper's numbers, and which digit each transformer's box favours."""
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
    if spec is not None:
        for k, cov in enumerate(spec.coverage):
            own = int(cov[1] > cov[0])
            out.append(f"- Transformer {k + 1}'s box favours digit {own + 1}: it covers {100 * cov[own]:.1f} % of that "
                       f"digit's ink and {100 * cov[1 - own]:.1f} % of the other's.")
        owns = [int(c[1] > c[0]) for c in spec.coverage]
        split = len(set(owns)) == len(owns)
        if "focus_split" in spec.extra:
            on1, on2 = spec.extra["centres_on_1"], spec.extra["centres_on_2"]
            out.append(f"- By the page's per-pair rule (a box *centres on* a digit when it holds at least "
                       f"{100 * FOCUS_MARGIN:.0f} points more of that digit's ink than of the other's): "
                       + "; ".join(f"transformer {k + 1} centres on digit 1 on {100 * on1[k]:.1f} %, on digit 2 on "
                                   f"{100 * on2[k]:.1f} % of the pairs" for k in range(len(on1)))
                       + f"; both centre on different digits on **{100 * spec.extra['focus_split']:.1f} %**.")
        out.append("- So the transformers " + ("favour **different** digits" if split else "favour the **same** digit")
                   + f", but each still keeps most of the other digit in view: on {100 * spec.strong_split:.1f} % of the "
                   f"pairs both outputs hold at least {100 * spec.strong:.0f} % of their ink from their own digit. "
                   "The paper's clean split (each transformer shows one digit) is "
                   + ("reached." if spec.strong_split >= 0.5 else "**not** reached at this training length."))
    return out + [""]


def load_json(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


__all__ = ["Entry", "MODEL_KEYS", "MODEL_LABELS", "MODEL_SPECS", "PageState", "PairView", "Specialisation", "TASK",
           "comparison_rows", "optimizer_text", "verdict_lines", "box_focus", "FOCUS_MARGIN", "pair_image", "parse_state", "random_state",
           "EMPTY_INK", "TRANSFORMER_COLOURS", "box_coverage", "find_checkpoints", "forward_views", "ink_shares", "make_pair",
           "outputs_figure", "pair_figure", "pair_params", "paper_error", "results_markdown", "specialisation",
           "stem_name", "train_command", "transformers_of", "view_pair"]
