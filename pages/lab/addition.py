"""View logic of the MNIST-addition page (no Streamlit): the page's pair of digits, its figures, its
state in the URL, and the models side by side. Checkpoints: :mod:`stn_core.registry`; where each
transformer looks: :mod:`stn_core.analysis.addition`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from pages.lab import links
from stn_core.analysis.addition import PairView, box_centres, fmt_number, ink_centroids
from stn_core.data import distortions as D
from stn_core.data import tasks as ds
from stn_core.registry import ADDITION_KEYS, ADDITION_LABELS, AdditionEntry, addition_paper_error

#: Colour of transformer 1, 2 (boxes and output frames).
TRANSFORMER_COLOURS = ("#f76707", "#37b24d")
#: Seed key of the page's pair distortions (independent of the training / test streams).
_PAGE_SEED_KEY = 30


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
        v = links.parse_int(raw)
        if v is None:
            warns.append(f"Ignored {name}={str(raw)[:20]!r}: not a whole number.")
            continue
        if not 0 <= v <= hi:
            warns.append(f"Ignored {name}={raw!r}: must be between 0 and {hi}.")
            continue
        setattr(st, name, v)
    m = query.get("model")
    if m not in (None, ""):
        if m in ADDITION_KEYS:
            st.model = m
        else:
            warns.append(f"Ignored model={m!r}: choose one of {', '.join(ADDITION_KEYS)}.")
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


def comparison_rows(views: Mapping[str, PairView], entries: Mapping[str, AdditionEntry], true_sum: int | None) -> list[dict]:
    """One row per model (table order) for the "same pair through the other models" table
    (display strings; "—" where a model is missing)."""
    rows = []
    for key in ADDITION_KEYS:
        e, v = entries.get(key), views.get(key)
        meta = (e.meta or {}) if e is not None else {}
        err = meta.get("test_error")
        rows.append({
            "model": ADDITION_LABELS[key],
            "predicted sum": "—" if v is None else str(v.pred),
            "probability": "—" if v is None else f"{100 * v.confidence:.0f} %",
            "correct": "—" if v is None or true_sum is None else ("yes" if v.pred == true_sum else "no"),
            "our test error (%)": "—" if err is None else f"{err:.2f}",
            "paper (%)": fmt_number(addition_paper_error(key)),
            "status": ("not trained yet" if e is None else "unreadable" if e.meta is None
                       else "final" if e.final else f"training (step {meta.get('steps')})"),
        })
    return rows
