"""Pure (non-UI) logic of the Thin-plate spline page.

The user drags the K control points ``ctrl_in`` (where each point of the fixed output lattice
``ctrl_out = tps_lattice(K)`` samples the input); the page shows
``V = sample(U, tps_grid(ctrl_in, out_size, reg=reg))``. Everything that is not Streamlit lives
here so it can be unit-tested: the editor state with its undo stack, presets, checks for
degenerate placements (coincident or collinear points, folded grids), the best affine fit
(least squares ``ctrl_out → ctrl_in``) and the update that the page runs after every change.

Conventions follow the rest of STN Lab: normalised coordinates in [-1, 1],
``align_corners=False``; points are ``(x, y)`` in lattice order (x fastest, as
:func:`stn_core.tps_lattice`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch

from pages.lab.playground import Message, as_rgb
from stn_core.sampling import sample
from stn_core.transforms import affine_grid, tps_bending_energy, tps_coefficients, tps_grid, tps_lattice

Point = tuple[float, float]
Points = tuple[Point, ...]
Size = tuple[int, int]

#: Lattice sides offered by the page (K = side², the paper's MNIST model uses 4 × 4 = 16).
LATTICE_SIDES = (3, 4, 5)
DEFAULT_SIDE = 4
#: Regularisation values offered by the slider (0 = exact interpolation).
REG_CHOICES = (0.0, 0.001, 0.01, 0.1, 1.0, 10.0)
#: Control points are kept within ±POINT_LIMIT (the component's view is a little smaller).
POINT_LIMIT = 3.0
#: Two control points closer than this (normalised units) count as on top of each other.
COINCIDE_EPS = 0.02
#: Length of the undo history.
MAX_HISTORY = 50
#: The fold check evaluates the map's Jacobian on a CHECK_SIZE × CHECK_SIZE grid.
CHECK_SIZE = 64


# --------------------------------------------------------------------------- threads

@contextlib.contextmanager
def single_thread():
    """Run torch on one intra-op thread inside the block (restored afterwards).

    The page-sized tensors here are small: on a busy 2-core machine, torch's default thread
    pool makes them 5–20× slower (threads wait for each other) than a single thread. The
    setting is process-wide, so a concurrent session may briefly see it; that only changes
    speed, never results."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


# --------------------------------------------------------------------------- state

def lattice_points(side: int) -> Points:
    """The default lattice (identity placement) as a tuple of ``(x, y)``: ``side²`` points."""
    if side not in LATTICE_SIDES:
        raise ValueError(f"lattice side must be one of {LATTICE_SIDES}, got {side}")
    pts = tps_lattice(side * side, torch.float64).tolist()
    return tuple((float(x), float(y)) for x, y in pts)


def side_of(points: Sequence[Point]) -> int:
    """Lattice side √K of a placement (K must be a square)."""
    side = math.isqrt(len(points))
    if side * side != len(points):
        raise ValueError(f"expected a square number of points, got {len(points)}")
    return side


@dataclass(frozen=True)
class EditorState:
    """The control points ``ctrl_in`` and the undo history (older placements, newest last)."""

    points: Points = field(default_factory=lambda: lattice_points(DEFAULT_SIDE))
    history: tuple[Points, ...] = ()
    random_count: int = 0  # how many "random" presets were drawn (seeds the next one)

    @property
    def side(self) -> int:
        return side_of(self.points)

    @property
    def k(self) -> int:
        return len(self.points)

    def can_undo(self) -> bool:
        return bool(self.history)


def _as_points(points: Sequence[Sequence[float]]) -> Points:
    """Plain-float tuples (full precision: an unmoved point stays exactly on the lattice)."""
    return tuple((float(x), float(y)) for x, y in points)


def with_points(state: EditorState, points: Sequence[Sequence[float]]) -> EditorState:
    """New placement, the old one pushed onto the undo stack (nothing happens for a no-op)."""
    new = _as_points(points)
    if new == state.points:
        return state
    history = (state.history + (state.points,))[-MAX_HISTORY:]
    return replace(state, points=new, history=history)


def undo(state: EditorState) -> EditorState:
    """The previous placement (may have another lattice size); unchanged if there is none."""
    if not state.history:
        return state
    return replace(state, points=state.history[-1], history=state.history[:-1])


def reset(state: EditorState, side: int | None = None) -> EditorState:
    """Back to the identity lattice (of ``side``, default the current one); undoable."""
    return with_points(state, lattice_points(state.side if side is None else side))


def move_point(state: EditorState, index: int, x: float, y: float) -> EditorState:
    """Move control point ``index`` (0-based) to ``(x, y)``, clamped to ±POINT_LIMIT."""
    if not 0 <= index < state.k:
        raise ValueError(f"point index must be in 0..{state.k - 1}, got {index}")
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError("point coordinates must be finite numbers")
    pts = list(state.points)
    pts[index] = (_clamp(x), _clamp(y))
    return with_points(state, pts)


def _clamp(v: float) -> float:
    return float(min(max(float(v), -POINT_LIMIT), POINT_LIMIT))


def sanitize_points(raw: object, k: int) -> tuple[Points | None, list[Message]]:
    """Check points that came from the browser: K pairs of finite numbers, clamped to
    ±POINT_LIMIT. Returns (points or None, messages)."""
    try:
        pts = [(float(p[0]), float(p[1])) for p in raw]  # type: ignore[union-attr,index]
    except (TypeError, ValueError, IndexError, KeyError):
        return None, [Message("error", "The dragged points could not be read; the last placement is kept.")]
    if len(pts) != k:
        return None, [Message("error", f"Expected {k} control points from the editor, got {len(pts)}; "
                                       "the last placement is kept.")]
    if not all(math.isfinite(x) and math.isfinite(y) for x, y in pts):
        return None, [Message("error", "A dragged point has a non-finite coordinate; the last placement is kept.")]
    clamped = [(_clamp(x), _clamp(y)) for x, y in pts]
    msgs = []
    if clamped != pts:
        msgs.append(Message("warning", f"Points further than ±{POINT_LIMIT:g} from the centre were pulled back."))
    return _as_points(clamped), msgs


# --------------------------------------------------------------------------- presets

PRESETS = {
    "bend": "Bend: bow the rows",
    "twist": "Twist: turn the centre, keep the corners",
    "pinch": "Pinch: shrink the centre",
    "random": "Random: jitter every point",
}


def preset_points(name: str, side: int, seed: int = 0) -> Points:
    """Control points of a preset for a ``side × side`` lattice (the presets are functions of
    the lattice positions, so they look alike for every K)."""
    base = np.array(lattice_points(side))
    x, y = base[:, 0], base[:, 1]
    if name == "bend":
        out = np.stack([x, y + 0.35 * (x ** 2 - 0.5)], 1)
    elif name == "twist":
        r = np.hypot(x, y)
        a = 0.9 * np.clip(1.0 - r / math.sqrt(2.0), 0.0, None)
        out = np.stack([np.cos(a) * x - np.sin(a) * y, np.sin(a) * x + np.cos(a) * y], 1)
    elif name == "pinch":
        r = np.hypot(x, y)
        s = 1.0 + 0.45 * np.clip(1.0 - r / math.sqrt(2.0), 0.0, None)
        out = base * s[:, None]
    elif name == "random":
        spacing = 2.0 / (side - 1)
        rng = np.random.default_rng(seed)
        out = np.clip(base + rng.normal(0.0, 0.2 * spacing, base.shape), -1.25, 1.25)
    else:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return _as_points(out)


def apply_preset(state: EditorState, name: str) -> EditorState:
    """Apply a preset to the current lattice size (undoable); "random" draws a new jitter each time."""
    seed = state.random_count
    new = with_points(state, preset_points(name, state.side, seed))
    if name == "random":
        new = replace(new, random_count=state.random_count + 1)
    return new


# --------------------------------------------------------------------------- checks

def jacobian_det(grid: np.ndarray) -> np.ndarray:
    """det ∂(x^s, y^s)/∂(x^t, y^t) of a sampling grid ``(H', W', 2)`` by central differences
    in normalised units: ``(H', W')``, 1 for the identity, < 0 where the map is mirrored."""
    g = np.asarray(grid, dtype=np.float64)
    h, w = g.shape[:2]
    dx = np.gradient(g, axis=1) * (w / 2.0) if w > 1 else np.zeros_like(g)  # ∂/∂x^t (spacing 2/W')
    dy = np.gradient(g, axis=0) * (h / 2.0) if h > 1 else np.zeros_like(g)  # ∂/∂y^t
    return dx[..., 0] * dy[..., 1] - dy[..., 0] * dx[..., 1]


@dataclass(frozen=True)
class FoldReport:
    """Sign census of the Jacobian determinant: fraction of the output with det > 0 / < 0."""

    positive: float
    negative: float
    min_det: float
    max_det: float

    @property
    def folded(self) -> bool:
        """True when the determinant changes sign: part of the output is a mirrored copy (a fold)."""
        return self.positive > 0 and self.negative > 0

    @property
    def mirrored(self) -> bool:
        """True when the whole map is mirrored (det < 0 everywhere): a flip, not a fold."""
        return self.negative > 0 and self.positive == 0


def fold_report(grid: np.ndarray, eps: float = 1e-9) -> FoldReport:
    """Where the sampling grid ``(H', W', 2)`` keeps (det > 0) or flips (det < 0) orientation."""
    det = jacobian_det(grid)
    n = max(1, det.size)
    return FoldReport(positive=float((det > eps).sum()) / n, negative=float((det < -eps).sum()) / n,
                      min_det=float(det.min()), max_det=float(det.max()))


def coincident_pairs(points: Sequence[Point], eps: float = COINCIDE_EPS) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, of control points closer than ``eps``."""
    p = np.asarray(points, dtype=np.float64)
    d = np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))
    i, j = np.nonzero(np.triu(d < eps, k=1))
    return [(int(a), int(b)) for a, b in zip(i, j)]


def collinear(points: Sequence[Point], eps: float = 1e-3) -> bool:
    """True when all control points lie (nearly) on one line or at one spot."""
    p = np.asarray(points, dtype=np.float64)
    sv = np.linalg.svd(p - p.mean(0), compute_uv=False)
    return bool(sv.size < 2 or sv[1] < eps * max(1.0, math.sqrt(len(p))))


def placement_messages(points: Sequence[Point], report: FoldReport | None) -> list[Message]:
    """Warnings for degenerate placements: coincident points, all points on a line, folds."""
    msgs: list[Message] = []
    if collinear(points):
        msgs.append(Message("warning", "All control points lie on one line (or at one spot): the spline squashes "
                                       "the whole output onto that line, so the picture is degenerate. "
                                       "Spread the points out or press Reset."))
    pairs = coincident_pairs(points)
    if pairs:
        shown = ", ".join(f"{a + 1} and {b + 1}" for a, b in pairs[:4]) + (" …" if len(pairs) > 4 else "")
        msgs.append(Message("warning", f"Control points {shown} sit on top of each other: the output region between "
                                       "their lattice positions is squeezed into one spot of the input, so the map "
                                       "is no longer one-to-one. Drag them apart."))
    if report is not None and report.folded:
        msgs.append(Message("warning", f"The warped grid folds over itself: the Jacobian determinant changes sign "
                                       f"(negative on {100 * report.negative:.0f}% of the output, "
                                       f"positive on {100 * report.positive:.0f}%). Folded parts show the input "
                                       "mirrored and some input regions appear twice. Move the crossing points "
                                       "back, press Undo, or raise the regularisation."))
    elif report is not None and report.mirrored:
        msgs.append(Message("info", "The whole map is mirrored (the Jacobian determinant is negative everywhere): "
                                    "a flip, not a fold."))
    return msgs


# --------------------------------------------------------------------------- affine fit

@dataclass(frozen=True)
class AffineFit:
    """Least-squares affine map ``ctrl_out → ctrl_in``: θ ``(2, 3)`` (rows x^s, y^s; columns
    x^t, y^t, 1, as ``affine_grid``), where it sends the lattice ``(K, 2)`` and its RMS error."""

    theta: np.ndarray
    mapped: np.ndarray
    rms: float


def best_affine_fit(ctrl_out: np.ndarray, ctrl_in: np.ndarray) -> AffineFit:
    """min_θ Σ_k |θ·(x_k, y_k, 1) − ctrl_in_k|² over the K lattice points (float64; lstsq, so
    rank-deficient lattices still get the minimum-norm solution)."""
    src = np.asarray(ctrl_out, dtype=np.float64)
    dst = np.asarray(ctrl_in, dtype=np.float64)
    p = np.concatenate([src, np.ones((src.shape[0], 1))], 1)  # (K, 3)
    sol, *_ = np.linalg.lstsq(p, dst, rcond=None)  # (3, 2)
    theta = sol.T
    mapped = p @ sol
    rms = float(np.sqrt(((mapped - dst) ** 2).sum(1).mean()))
    return AffineFit(theta=theta, mapped=mapped, rms=rms)


# --------------------------------------------------------------------------- update

@dataclass
class TpsResult:
    """Everything the page shows after an update.

    output, affine_output: ``(H', W', 3)`` float32 in [0, 1] (never NaN); grid: the TPS sampling
    grid ``(H', W', 2)`` normalised; affine_grid: the same for the affine fit; a: affine part
    ``(3, 2)`` (rows 1, x, y); w: non-rigid weights ``(K, 2)``; landed: where the spline really
    sends the lattice points ``(K, 2)`` (= ctrl_in when reg = 0); ctrl_out: the lattice ``(K, 2)``.
    """

    output: np.ndarray
    grid: np.ndarray
    affine_output: np.ndarray
    affine_grid: np.ndarray
    affine: AffineFit
    a: np.ndarray
    w: np.ndarray
    bending_energy: float
    landed: np.ndarray
    ctrl_out: np.ndarray
    folds: FoldReport
    messages: list[Message]
    ok: bool


def _to_tensor_image(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(as_rgb(image)).permute(2, 0, 1).unsqueeze(0)


def _sample(u: torch.Tensor, grid: torch.Tensor, mode: str) -> np.ndarray:
    v = sample(u, grid.to(u.dtype), mode=mode)
    return np.ascontiguousarray(v[0].permute(1, 2, 0).clamp(0.0, 1.0).numpy())


def compute(image: np.ndarray, points: Sequence[Point], out_size: Size, reg: float = 0.0,
            sampling: str = "bilinear") -> TpsResult:
    """Warp ``image (H, W[, 3])`` with the TPS whose lattice points sample ``points`` and with the
    best affine fit; check the placement. Never raises for finite points and never returns NaN:
    a failure gives an error message and empty (black) outputs with ``ok = False``."""
    with single_thread():
        return _compute(image, points, out_size, reg, sampling)


def _compute(image: np.ndarray, points: Sequence[Point], out_size: Size, reg: float,
             sampling: str) -> TpsResult:
    k = len(points)
    ctrl_out = tps_lattice(k, torch.float64)
    ctrl_in = torch.tensor([list(p) for p in points], dtype=torch.float64).view(1, k, 2)
    u = _to_tensor_image(image)
    msgs: list[Message] = []
    h, w = int(out_size[0]), int(out_size[1])
    blank = np.zeros((h, w, 3), np.float32)
    fit = best_affine_fit(ctrl_out.numpy(), ctrl_in[0].numpy())
    try:
        if not torch.isfinite(ctrl_in).all():
            raise ValueError("a control point is not a finite number")
        grid = tps_grid(ctrl_in, (h, w), reg=float(reg))  # float64
        wts, aff = tps_coefficients(ctrl_in, None, float(reg))
        energy = float(tps_bending_energy(ctrl_in, None, float(reg))[0])
        landed = tps_grid_points(ctrl_in, ctrl_out, wts, aff)
        check = tps_grid(ctrl_in, (CHECK_SIZE, CHECK_SIZE), reg=float(reg))
        if not (torch.isfinite(grid).all() and torch.isfinite(check).all() and math.isfinite(energy)):
            raise ValueError("the spline produced non-finite coordinates")
    except ValueError as e:
        msgs.append(Message("error", f"The thin-plate spline could not be computed ({e}); press Undo or Reset."))
        nan_free = np.zeros((h, w, 2), np.float32)
        return TpsResult(output=blank, grid=nan_free, affine_output=blank, affine_grid=nan_free, affine=fit,
                         a=np.zeros((3, 2)), w=np.zeros((k, 2)), bending_energy=0.0, landed=ctrl_in[0].numpy(),
                         ctrl_out=ctrl_out.numpy(), folds=FoldReport(1.0, 0.0, 1.0, 1.0), messages=msgs, ok=False)
    folds = fold_report(check[0].numpy())
    msgs += placement_messages(points, folds)
    out = _sample(u, grid.float(), sampling)
    agrid = affine_grid(torch.from_numpy(fit.theta).view(1, 2, 3), (h, w))
    aout = _sample(u, agrid.float(), sampling)
    if not (np.abs(grid[0].numpy()) <= 1.0).all(-1).any():
        msgs.append(Message("info", "Every sampling point falls outside the input, so V is empty (zero padding). "
                                    "Press Reset or drag the points back over the image."))
    return TpsResult(output=out, grid=grid[0].float().numpy(), affine_output=aout, affine_grid=agrid[0].float().numpy(),
                     affine=fit, a=aff[0].numpy(), w=wts[0].numpy(), bending_energy=energy,
                     landed=landed, ctrl_out=ctrl_out.numpy(), folds=folds, messages=msgs, ok=True)


def tps_grid_points(ctrl_in: torch.Tensor, ctrl_out: torch.Tensor, wts: torch.Tensor,
                    aff: torch.Tensor) -> np.ndarray:
    """Evaluate the spline f(p) = A₀ + x A₁ + y A₂ + Σ_k W_k U(|p − c_k|) at the lattice itself:
    ``(K, 2)``; equals ``ctrl_in`` when reg = 0 (interpolation), lies between ``ctrl_in`` and the
    affine fit when reg > 0 (smoothing)."""
    c = ctrl_out.to(torch.float64)
    d2 = ((c[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    kmat = torch.where(d2 > 0, d2 * torch.log(d2.clamp_min(1e-300)), torch.zeros_like(d2))
    f = aff[0, 0] + c[:, 0:1] * aff[0, 1] + c[:, 1:2] * aff[0, 2] + kmat @ wts[0]
    return f.numpy()


# --------------------------------------------------------------------------- display helpers

def parameter_tables(a: np.ndarray, w: np.ndarray) -> tuple[dict[str, list], dict[str, list]]:
    """The TPS parameters as two column dicts for a table (rounded to 4 decimals): the affine part
    A (3 × 2) with rows 1 / x^t / y^t and the non-rigid weights W (K × 2), one row per control point."""
    def r(v: float) -> float:
        return round(float(v), 4) + 0.0  # 4 decimals, no "-0"

    a_table = {"term": ["1 (constant)", "x^t", "y^t"],
               "→ x^s": [r(v) for v in a[:, 0]], "→ y^s": [r(v) for v in a[:, 1]]}
    w_table = {"point": [f"{i + 1}" for i in range(w.shape[0])],
               "W_x": [r(v) for v in w[:, 0]], "W_y": [r(v) for v in w[:, 1]]}
    return a_table, w_table


def markdown_table(columns: dict[str, list]) -> str:
    """A column dict (:func:`parameter_tables`) as a GitHub-flavoured markdown table: text left, numbers right
    with 4 decimals. Cheaper to send and draw than ``st.dataframe`` (no Arrow table, no grid bundle)."""
    names = list(columns)
    rows = list(zip(*columns.values()))

    def cell(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v).replace("|", "\\|")

    def esc(name: str) -> str:
        return name.replace("_", "\\_").replace("^", "\\^").replace("|", "\\|")

    numeric = [bool(rows) and all(isinstance(r[j], float) for r in rows) for j in range(len(names))]
    lines = ["| " + " | ".join(esc(n) for n in names) + " |",
             "|" + "|".join("---:" if num else ":---" for num in numeric) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def grid_lines(grid: np.ndarray, n_lines: int = 11, max_points: int = 48) -> list[list[list[float]]]:
    """Rows and columns of a sampling grid ``(H', W', 2)`` as polylines of ``[x, y]`` (normalised,
    4 decimals) for the point-drag component (JSON: no NaN)."""
    g = np.asarray(grid, dtype=np.float64)
    hh, ww = g.shape[:2]

    def idx(n: int, m: int) -> np.ndarray:
        return np.unique(np.round(np.linspace(0, n - 1, min(n, m))).astype(int))

    lines = [g[i, idx(ww, max_points)] for i in idx(hh, n_lines)]
    lines += [g[idx(hh, max_points), j] for j in idx(ww, n_lines)]
    return [np.round(line, 4).tolist() for line in lines if np.isfinite(line).all()]


def handle_radius(side: int) -> float:
    """Radius of the drag handles in screen pixels (a little smaller for 5 × 5)."""
    return {3: 15.0, 4: 14.0, 5: 12.0}.get(side, 12.0)


def view_extent(points: Sequence[Point], base: float = 1.3, margin: float = 0.12) -> float:
    """Half-width of the square view (normalised) the editor shows: ±base, grown to keep every
    point visible."""
    m = max((max(abs(x), abs(y)) for x, y in points), default=0.0)
    return float(min(POINT_LIMIT + margin, max(base, m + margin)))


def fmt(v: float, tiny: float = 1e-10) -> str:
    """A number for a readout: 4 significant digits, and 0 for round-off-sized values."""
    return "0" if abs(v) < tiny else f"{v:.4g}"


def state_summary(state: EditorState) -> str:
    """A one-line description for the page: K and how far the placement is from the lattice."""
    base = np.asarray(lattice_points(state.side))
    moved = int((np.abs(np.asarray(state.points) - base).max(1) > 1e-6).sum())
    return f"{state.side}×{state.side} = {state.k} control points, {moved} moved from the lattice"
