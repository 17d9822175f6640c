"""Pure (non-UI) logic of the Guided tour page (``pages/tour.py``).

The tour walks through the paper in :data:`STEPS`; the step number lives in the URL
(``?step=3``, 1-based, see :func:`parse_step`). Step 1 rotates one test digit through
−90°…90° and compares how confident a plain network and one with a spatial transformer are
in the true class (:func:`confidence_curve`); the two checkpoints are picked by
:func:`choose_pair` (the R-task CNN / ST-CNN once they are trained, else the best shipped pair
with the same input size). Later steps reuse the playground, sampler-lab and explorer logic;
the helpers here only add what those lack (training history, the Figure-1 row, kernel taps
of a plain convolution against the transformer's warp).

Angles: a positive angle turns the digit **counter-clockwise** on screen. Coordinates
elsewhere: normalised [-1, 1], ``align_corners=False``; θ maps output → input.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from pages.lab import explorer as ex
from pages.lab import links
from pages.lab import playground as pg
from pages.lab.figures import FONT_SIZE, figure1_gallery_scene, region_figure, scene_svg, to_uint8
from stn_core import registry as reg
from stn_core.analysis import inspect as insp
from stn_core.sampling import sample
from stn_core.transforms import affine_grid


@dataclass(frozen=True)
class Step:
    """One tour step: a short slug and the title shown on the page."""
    slug: str
    title: str


STEPS: tuple[Step, ...] = (
    Step("problem", "The problem: CNNs are not rotation invariant"),
    Step("module", "The spatial transformer's three parts"),
    Step("grid", "Grid generator: where each output pixel reads"),
    Step("sampler", "Sampler and its gradients"),
    Step("training", "End-to-end training"),
    Step("results", "Distorted MNIST: Table 1 and Figure 1"),
    Step("features", "Transformers inside the network: digit strings"),
    Step("cub", "CUB birds: attention without box labels"),
    Step("dcn", "Deformable convolution, for contrast"),
)
N_STEPS = len(STEPS)

#: Angles of the confidence sweep of step 1 (degrees).
SWEEP_ANGLES = tuple(float(a) for a in range(-90, 91, 5))
ANGLE_LIMIT = 90.0


def parse_step(value: str | Sequence[str] | None) -> tuple[int, str | None]:
    """A ``step`` query value → (step 1…N_STEPS, warning or None). Missing → 1 with no warning;
    anything else that is not an integer in range → 1 with a warning saying why."""
    if value is None:
        return 1, None
    if not isinstance(value, str):
        value = str(value[-1]) if len(value) else ""
    text = value.strip()
    if text == "":
        return 1, None
    n = links.parse_int(text)
    if n is None:
        slugs = [s.slug for s in STEPS]
        if text.lower() in slugs:
            return slugs.index(text.lower()) + 1, None
        return 1, f"Link parameter step={text[:20]!r} is not a step number (1–{N_STEPS}); showing step 1."
    if not 1 <= n <= N_STEPS:
        return 1, f"There is no step {n} (the tour has steps 1–{N_STEPS}); showing step 1."
    return n, None


def clamp_step(n: int) -> int:
    """Keep a step number inside 1…N_STEPS."""
    return int(min(max(int(n), 1), N_STEPS))


def progress(n: int) -> float:
    """Fraction of the tour done at step n (1 → 1/N, N → 1)."""
    return clamp_step(n) / N_STEPS


# --------------------------------------------------------------------------- step 1: rotation

def rotation_params(angle_deg: float, size: int) -> tuple[float, ...]:
    """Affine θ (6 numbers) that turns a ``size × size`` picture ``angle_deg`` counter-clockwise
    about its centre (the sampling window turns the other way)."""
    return pg.intuitive_to_params(pg.PlaygroundState(rot=-float(angle_deg)), (int(size), int(size)))


def rotate_digits(digit: np.ndarray, angles: Sequence[float]) -> torch.Tensor:
    """A grey digit ``(S, S)`` in [0, 1] turned by every angle: ``(A, 1, S, S)`` float32
    (bilinear, zero background)."""

    d = np.asarray(digit, dtype=np.float32)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"expected a square grey digit (S, S), got shape {d.shape}")
    s = d.shape[0]
    thetas = torch.tensor([rotation_params(a, s) for a in angles], dtype=torch.float32).view(-1, 2, 3)
    u = torch.from_numpy(np.ascontiguousarray(d))[None, None].expand(len(angles), 1, s, s)
    return sample(u, affine_grid(thetas, (s, s)), mode="bilinear").clamp(0.0, 1.0)


def confidence_curve(model: torch.nn.Module, digit: np.ndarray, label: int,
                     angles: Sequence[float] = SWEEP_ANGLES) -> np.ndarray:
    """Softmax probability of the true class ``label`` for ``digit (S, S)`` turned by each
    angle: ``(A,)`` in [0, 1]. One batched forward pass."""
    x = rotate_digits(digit, angles)
    probs = insp.predict_probs(model, x)
    if not 0 <= int(label) < probs.shape[1]:
        raise ValueError(f"label {label} is not a class of this model ({probs.shape[1]} classes)")
    return probs[:, int(label)].astype(np.float64)


def mean_confidence_curve(model: torch.nn.Module, digits: np.ndarray, labels: Sequence[int],
                          angles: Sequence[float] = SWEEP_ANGLES) -> np.ndarray:
    """Mean over digits ``(N, S, S)`` of :func:`confidence_curve`: ``(A,)`` in [0, 1]."""
    d = np.asarray(digits, dtype=np.float32)
    if d.ndim != 3 or len(d) != len(labels) or len(d) == 0:
        raise ValueError(f"expected N ≥ 1 digits (N, S, S) and N labels, got {d.shape} and {len(labels)}")
    return np.mean([confidence_curve(model, d[i], int(labels[i]), angles) for i in range(len(d))], axis=0)


@dataclass(frozen=True)
class ModelPair:
    """The two checkpoints step 1 compares: a plain model and one with a spatial transformer,
    both for ``input_size × input_size`` digits. ``note`` says which are shown and why."""

    plain: reg.Entry
    st: reg.Entry
    input_size: int
    preferred: bool
    note: str

    @property
    def labels(self) -> tuple[str, str]:
        return (f"{self.plain.label} ({reg.DIST_SHORT[self.plain.dist]})",
                f"{self.st.label} ({reg.DIST_SHORT[self.st.dist]})")


#: Pairs to show in step 1, best first: (distortion, plain key, ST key). The first is the
#: intended one (R-task CNN vs ST-CNN); later ones are fall-backs with the same input size.
PAIR_CANDIDATES: tuple[tuple[str, str, str], ...] = (
    ("r", "cnn", "st-cnn-aff"),
    ("r", "fcn", "st-fcn-aff"),
    ("r", "cnn", "st-fcn-aff"),
    ("r", "fcn", "st-cnn-aff"),
    ("rts", "cnn", "st-cnn-aff"),
    ("rts", "fcn", "st-cnn-aff"),
    ("rts", "fcn", "st-fcn-aff"),
)


def _is_final(e: reg.Entry | None) -> bool:
    return e is not None and e.usable and bool((e.meta or {}).get("final", False))


def choose_pair(found: Mapping[tuple[str, str], reg.Entry] | None = None,
                directory: str | os.PathLike | None = None) -> ModelPair | None:
    """The first pair of :data:`PAIR_CANDIDATES` whose checkpoints are both finished ("final":
    true); if none is finished, the first pair that is at least loadable. None if nothing fits."""
    found = reg.discover(directory) if found is None else found
    for need_final in (True, False):
        for i, (dist, plain, st) in enumerate(PAIR_CANDIDATES):
            a, b = found.get((dist, plain)), found.get((dist, st))
            ok = (_is_final(a) and _is_final(b)) if need_final else (a is not None and b is not None
                                                                     and a.usable and b.usable)
            if not ok:
                continue
            size_a, size_b = int(a.meta["input_size"]), int(b.meta["input_size"])
            if size_a != size_b:
                continue
            pref = i == 0 and need_final
            want = f"{reg.MODEL_LABELS['cnn']} vs {reg.MODEL_LABELS['st-cnn-aff']} trained on R"
            if pref:
                note = f"Shown: the {want} (rotations of ±90°)."
            else:
                r_cnn, r_st = found.get(("r", "cnn")), found.get(("r", "st-cnn-aff"))
                why = "are not trained yet" if r_cnn is None or r_st is None else "are still training"
                note = (f"Shown: {a.label} vs {b.label} trained on {reg.DIST_LABELS[dist]}, because the {want} "
                        f"{why} (checkpoints/mnist_r_cnn, mnist_r_st-cnn-aff).")
                if not need_final:
                    note += " These checkpoints are not finished either: their numbers may still change."
                if dist != "r":
                    note += " Their training digits were turned by at most ±45°, so expect a dip beyond that."
            return ModelPair(a, b, size_a, pref, note)
    return None


def place_digit(digit: np.ndarray, size: int) -> np.ndarray:
    """A 28×28 digit on a ``size × size`` canvas (centred; unchanged when size is 28)."""
    d = np.asarray(digit, dtype=np.float32)
    return d if d.shape == (size, size) else ex.to_canvas(d, size)


# --------------------------------------------------------------------------- step 3: grid generator

def grid_view(image: np.ndarray, rotation_deg: float = 0.0, scale: float = 1.0,
              translation: tuple[float, float] = (0.0, 0.0)) -> tuple[tuple[float, ...], pg.WarpResult, np.ndarray]:
    """θ from rotation / isotropic scale / translation (:func:`stn_core.compose_affine`), the
    warp of ``image (H, W[, 3])`` with it and the output border in the input ``(M, 2)``."""
    img = pg.as_rgb(image)
    size = (img.shape[0], img.shape[1])
    state = pg.PlaygroundState(rot=float(rotation_deg), sx=float(scale), sy=float(scale),
                               tx=float(translation[0]), ty=float(translation[1]))
    params = pg.intuitive_to_params(state, size)
    params, _msgs, _ok = pg.resolve_params("affine", params)
    res = pg.warp(img, "affine", params, size)
    return params, res, pg.outline("affine", params)


# --------------------------------------------------------------------------- step 5: training history

@dataclass
class History:
    """A checkpoint's evaluations: steps, test error (%), train loss and test loss (NaN where
    not recorded), all ``(E,)``."""

    steps: np.ndarray
    test_error: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray


def history(meta: Mapping) -> History:
    """The ``history`` list of a checkpoint's JSON as arrays (entries without a step skipped)."""
    rows = [h for h in (meta.get("history") or []) if isinstance(h, Mapping) and isinstance(h.get("step"), int)]
    rows.sort(key=lambda h: h["step"])

    def col(name: str) -> np.ndarray:
        return np.array([float(h[name]) if isinstance(h.get(name), (int, float)) else math.nan for h in rows])

    return History(np.array([h["step"] for h in rows], dtype=np.int64), col("test_error"), col("train_loss"),
                   col("test_loss"))


def identity_view(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """What a freshly initialised transformer of the same kind outputs for ``x (S, S)``: its last
    layer starts at the identity θ, so V = U (the sampler at the identity grid)."""

    t = torch.as_tensor(np.asarray(x, dtype=np.float32))[None, None]
    s = t.shape[-1]
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    return sample(t, affine_grid(theta, (s, s)))[0, 0].numpy()


def image_rows(rows: Sequence[tuple[str, Sequence[np.ndarray]]], cell: int = 112, gap: int = 6,
               label_width: int = 0) -> np.ndarray:
    """Grey or RGB images arranged in rows (one row per ``(name, images)``; names are not drawn)
    → one uint8 ``(H, W, 3)`` picture on white, every image scaled (nearest) to ``cell`` px."""

    n_cols = max((len(imgs) for _n, imgs in rows), default=0)
    if n_cols == 0:
        raise ValueError("no images to arrange")
    h = len(rows) * cell + (len(rows) + 1) * gap
    w = label_width + n_cols * cell + (n_cols + 1) * gap
    out = np.full((h, w, 3), 255, np.uint8)
    for r, (_name, imgs) in enumerate(rows):
        for c, im in enumerate(imgs):
            a = to_uint8(np.asarray(im))
            ys = (np.arange(cell) * a.shape[0] // cell)
            xs = (np.arange(cell) * a.shape[1] // cell)
            y0, x0 = gap + r * (cell + gap), label_width + gap + c * (cell + gap)
            out[y0:y0 + cell, x0:x0 + cell] = a[ys][:, xs]
    return out


# --------------------------------------------------------------------------- step 6: Figure 1 row

def figure1_row_scene(model: torch.nn.Module, x: torch.Tensor, labels: Sequence[int],
                      captions: Sequence[str] | None = None):
    """The paper's Figure 1 for digits ``x (N, 1, S, S)`` through ``model`` as a
    :class:`pages.lab.figures.Scene` (:func:`pages.lab.figures.figure1_gallery_scene`); write it with
    ``viz.scene_svg`` / ``viz.scene_png``."""

    preds = insp.predict(model, x)
    has_st = bool(preds) and preds[0].output is not None
    return figure1_gallery_scene(
        [x[i, 0].numpy() for i in range(x.shape[0])], [p.pred for p in preds], [p.confidence for p in preds],
        [int(v) for v in labels],
        regions=[p.region for p in preds] if has_st else None,
        outputs=[p.output for p in preds] if has_st else None,
        grids=[p.grid if p.kind == "tps" else None for p in preds] if has_st else None,
        captions=list(captions) if captions is not None else None)


def figure1_row_svg(model: torch.nn.Module, x: torch.Tensor, labels: Sequence[int],
                    captions: Sequence[str] | None = None) -> str:
    """:func:`figure1_row_scene` as one SVG string."""
    return scene_svg(figure1_row_scene(model, x, labels, captions))


def best_st_entry(found: Mapping[tuple[str, str], reg.Entry],
                  dists: Sequence[str] = ("rts", "r", "p", "e")) -> reg.Entry | None:
    """The checkpoint for the Figure-1 row: the RTS ST-CNN Aff if usable, else the first usable
    ST model in :data:`pages.lab.explorer.PREFERRED` order (distortions in ``dists`` order)."""
    for dist in dists:
        for key in reg.PREFERRED:
            e = found.get((dist, key))
            if e is not None and e.usable and key.startswith("st-"):
                return e
    return None


# --------------------------------------------------------------------------- step 8: kernel taps

def regular_taps(center_yx: tuple[int, int], k: int) -> np.ndarray:
    """Pixel positions (x, y) ``(k·k, 2)`` a plain k×k convolution reads for the output whose
    window is centred on input pixel ``center_yx`` (row-major taps, regular spacing 1)."""
    r = (k - 1) / 2.0
    cy, cx = center_yx
    yy, xx = np.mgrid[0:k, 0:k].astype(np.float64) - r
    return np.stack([cx + xx.reshape(-1), cy + yy.reshape(-1)], 1)


def st_taps(grid: np.ndarray, center_yx: tuple[int, int], k: int) -> np.ndarray:
    """Where the same k×k taps land in the *input* U when the convolution runs on the
    transformer's output V: tap p of V is read from U at the sampling grid point
    ``grid[p]`` (``grid (S, S, 2)`` normalised). Returns pixel (x, y) ``(k·k, 2)`` in U;
    taps outside V are NaN."""
    g = np.asarray(grid, dtype=np.float64)
    h, w = g.shape[:2]
    taps = regular_taps(center_yx, k)
    out = np.full_like(taps, np.nan)
    for t, (x, y) in enumerate(taps):
        xi, yi = int(round(x)), int(round(y))
        if 0 <= yi < h and 0 <= xi < w:
            out[t] = g[yi, xi]
    ok = np.isfinite(out).all(1)
    px = np.full_like(out, np.nan)
    px[ok, 0] = ((out[ok, 0] + 1.0) * w - 1.0) / 2.0
    px[ok, 1] = ((out[ok, 1] + 1.0) * h - 1.0) / 2.0
    return px


def nearest_output(centres: np.ndarray, yx: tuple[float, float]) -> tuple[int, int]:
    """(row, col) of the output location whose image position ``centres (H', W', 2)`` (x, y) is
    closest to the image pixel ``yx`` (row, col)."""
    c = np.asarray(centres, dtype=np.float64)
    d = (c[..., 0] - float(yx[1])) ** 2 + (c[..., 1] - float(yx[0])) ** 2
    r, col = np.unravel_index(int(np.argmin(d)), d.shape)
    return int(r), int(col)


def pixel_to_norm(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pixel (x, y) ``(M, 2)`` → normalised [-1, 1] coordinates for an image of size (H, W)."""
    h, w = size
    p = np.asarray(points, dtype=np.float64)
    return np.stack([(2.0 * p[:, 0] + 1.0) / w - 1.0, (2.0 * p[:, 1] + 1.0) / h - 1.0], 1)



# --------------------------------------------------------------------------- figures (plotly, no Streamlit)

PLAIN_COLOUR = "#adb5bd"
ST_COLOUR = "#1c7ed6"
UPRIGHT_COLOUR = "#e8590c"


def confidence_figure(angles: Sequence[float], curves: Mapping[str, np.ndarray], angle_now: float | None = None,
                      height: int = 420):
    """Line chart: confidence in the true class (y, 0…1) against the rotation angle (x, degrees),
    one line per model (the first grey dashed, the second blue, a third orange dotted); a dotted
    red line marks ``angle_now``."""


    traces = []
    for i, (name, y) in enumerate(curves.items()):
        colour, dash = ((PLAIN_COLOUR, "dash"), (ST_COLOUR, "solid"), (UPRIGHT_COLOUR, "dot"))[min(i, 2)]
        traces.append(go.Scatter(x=list(angles), y=np.asarray(y, dtype=float), mode="lines+markers", name=name,
                                 line=dict(color=colour, width=5 if i == 1 else 4, dash=dash),
                                 marker=dict(size=7), hovertemplate=f"{name}<br>%{{x}}°: %{{y:.1%}}<extra></extra>"))
    shapes = []
    if angle_now is not None:
        shapes.append(dict(type="line", x0=angle_now, x1=angle_now, y0=0, y1=1, yref="paper",
                           line=dict(color="#ff4b2b", width=3, dash="dot")))
    layout = go.Layout(
        title=dict(text="Confidence in the true class while the digit turns", font=dict(size=FONT_SIZE + 4), x=0.0),
        height=height, margin=dict(l=10, r=10, t=60, b=40), font=dict(size=FONT_SIZE + 2), plot_bgcolor="#ffffff",
        xaxis=dict(title=dict(text="rotation of the digit (°, counter-clockwise +)"), dtick=30, range=[-92, 92],
                   gridcolor="#e9ecef", zeroline=False),
        yaxis=dict(title=dict(text="p(true class)"), range=[0, 1.05], tickformat=".0%", gridcolor="#e9ecef"),
        legend=dict(orientation="h", yanchor="top", y=-0.2, x=0.0),
        shapes=shapes)
    return go.Figure(data=traces, layout=layout)


def history_figure(h: History, title: str = "Training history", height: int = 380):
    """Test error (%) and train loss against the step, two y axes."""


    traces = [go.Scatter(x=h.steps, y=h.test_error, mode="lines+markers", name="test error (%)",
                         line=dict(color=ST_COLOUR, width=4), marker=dict(size=10)),
              go.Scatter(x=h.steps, y=h.train_loss, mode="lines+markers", name="train loss", yaxis="y2",
                         line=dict(color="#f76707", width=3, dash="dash"), marker=dict(size=8))]
    layout = go.Layout(
        title=dict(text=title, font=dict(size=FONT_SIZE + 2), x=0.0), height=height,
        margin=dict(l=10, r=10, t=60, b=10), font=dict(size=FONT_SIZE), plot_bgcolor="#ffffff",
        xaxis=dict(title=dict(text="training step"), gridcolor="#e9ecef"),
        yaxis=dict(title=dict(text="test error (%)"), rangemode="tozero", gridcolor="#e9ecef"),
        yaxis2=dict(title=dict(text="train loss"), overlaying="y", side="right", rangemode="tozero", showgrid=False),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1.0, xanchor="right"))
    return go.Figure(data=traces, layout=layout)


def taps_figure(image: np.ndarray, regular: np.ndarray, other: np.ndarray | None, other_name: str,
                title: str, height: int = 420):
    """A grey image ``(S, S)`` with two sets of kernel taps (pixel (x, y) ``(M, 2)``): the regular
    k×k grid (yellow) and ``other`` (blue: the transformer's warped taps or DCN's deformed ones)."""


    size = np.asarray(image).shape[:2]
    fig = region_figure(image, None, ctrl=pixel_to_norm(regular, size), title=title, height=height)
    fig.data[-1].name = "regular k×k taps"
    fig.data[-1].marker.size = 6
    fig.data[-1].marker.line.width = 0.5
    if other is not None:
        ok = np.isfinite(other).all(1)
        fig.add_trace(go.Scatter(x=other[ok, 0], y=other[ok, 1], mode="markers", name=other_name,
                                 marker=dict(color=ST_COLOUR, size=7, symbol="x", line=dict(color="white", width=0.5))))
    fig.update_layout(showlegend=True, legend=dict(orientation="h", yanchor="top", y=-0.02, x=0.0))
    return fig
