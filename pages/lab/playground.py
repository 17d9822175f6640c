"""Pure (non-UI) logic of the Transform playground page.

Everything the page needs that is not Streamlit lives here so it can be unit-tested:
the playground state and its URL query-string form, the intuitive ↔ raw parameter
conversions, presets, validation of θ, and the warp call itself.

Conventions follow the rest of STN Lab: normalised coordinates in [-1, 1] with
``align_corners=False``; θ maps **output** grid points to **input** (source) points.

Parameters per transform kind (flat vectors, as :func:`stn_core.make_grid` takes them):

- ``affine``: 6 = (θ11, θ12, θ13, θ21, θ22, θ23)
- ``attention``: 3 = (s, t_x, t_y)
- ``projective``: 8 = (h11, h12, h13, h21, h22, h23, h31, h32), h33 = 1
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace
from typing import Mapping, Sequence

import numpy as np
import torch

from pages.lab import links
from stn_core.data.images import ImageError, load_image
from stn_core.regions import map_points, outline, params_matrix  # noqa: F401 (the pages call pg.outline)
from stn_core.sampling import sample
from stn_core.transforms import HORIZON_EPS, compose_affine, make_grid, projective_denominator

KINDS = ("affine", "attention", "projective")
MODES = ("intuitive", "raw")
SAMPLINGS = ("bilinear", "nearest")
OUT_CHOICES = ("same", "64", "128", "256")
IMAGE_SOURCES = ("mnist", "bird", "upload")

#: |det| below this counts as singular.
SINGULAR_EPS = 1e-6
#: Raw parameters read from a URL are clamped to ±RAW_LIMIT.
RAW_LIMIT = 100.0

Size = tuple[int, int]


@dataclass(frozen=True)
class Message:
    """A message for the user: level is "error", "warning" or "info"."""
    level: str
    text: str


@dataclass(frozen=True)
class SliderSpec:
    """One intuitive control: query name, UI label, range, step, identity value, help."""
    name: str
    label: str
    lo: float
    hi: float
    step: float
    default: float
    help: str = ""


SLIDERS: dict[str, SliderSpec] = {s.name: s for s in (
    SliderSpec("rot", "Rotation (°)", -180.0, 180.0, 1.0, 0.0,
               "Turns the sampling window counter-clockwise on the input, so the output content turns clockwise."),
    SliderSpec("sx", "Scale x", -3.0, 3.0, 0.01, 1.0,
               "Width of the sampling window relative to the input: < 1 zooms in, > 1 zooms out, "
               "negative mirrors, 0 is singular."),
    SliderSpec("sy", "Scale y", -3.0, 3.0, 0.01, 1.0,
               "Height of the sampling window relative to the input: < 1 zooms in, > 1 zooms out, "
               "negative mirrors, 0 is singular."),
    SliderSpec("shear", "Shear", -1.5, 1.5, 0.01, 0.0, "Slants the window: x += shear · y."),
    SliderSpec("tx", "Translation x", -1.5, 1.5, 0.01, 0.0,
               "Moves the window centre right (normalised units: 1 = half the input width)."),
    SliderSpec("ty", "Translation y", -1.5, 1.5, 0.01, 0.0,
               "Moves the window centre down (normalised units: 1 = half the input height)."),
    SliderSpec("px", "Perspective p_x", -1.0, 1.0, 0.01, 0.0,
               "h31: the denominator w = p_x·x + p_y·y + 1 grows along x; |p| ≥ 1 sends part of the "
               "output to infinity."),
    SliderSpec("py", "Perspective p_y", -1.0, 1.0, 0.01, 0.0,
               "h32: the denominator w = p_x·x + p_y·y + 1 grows along y (a floor tilt)."),
)}

#: Which intuitive controls each transform kind uses (attention's "sx" is its scale s).
KIND_SLIDERS: dict[str, tuple[str, ...]] = {
    "affine": ("rot", "sx", "sy", "shear", "tx", "ty"),
    "attention": ("sx", "tx", "ty"),
    "projective": ("rot", "sx", "sy", "shear", "tx", "ty", "px", "py"),
}

#: Plain-text and LaTeX names of the raw parameters of each kind.
RAW_NAMES: dict[str, tuple[str, ...]] = {
    "affine": ("θ11", "θ12", "θ13", "θ21", "θ22", "θ23"),
    "attention": ("s", "t_x", "t_y"),
    "projective": ("h11", "h12", "h13", "h21", "h22", "h23", "h31", "h32"),
}

IDENTITY: dict[str, tuple[float, ...]] = {
    "affine": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "attention": (1.0, 0.0, 0.0),
    "projective": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0),
}

KIND_LABELS = {
    "affine": "Affine (6 parameters)",
    "attention": "Attention: scale + translation (3)",
    "projective": "Projective (8 parameters)",
}


def n_params(kind: str) -> int:
    """Number of raw parameters of a playground transform kind."""
    return len(IDENTITY[kind])


@dataclass(frozen=True)
class PlaygroundState:
    """Everything a shared link must reproduce."""
    image: str = "mnist-0"
    kind: str = "affine"
    mode: str = "intuitive"
    rot: float = 0.0
    sx: float = 1.0
    sy: float = 1.0
    shear: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    px: float = 0.0
    py: float = 0.0
    raw: tuple[float, ...] = field(default=IDENTITY["affine"])
    sampling: str = "bilinear"
    out: str = "same"

    def intuitive(self) -> dict[str, float]:
        """The intuitive control values by query name."""
        return {name: float(getattr(self, name)) for name in SLIDERS}


# --------------------------------------------------------------------------- parameters

def intuitive_to_params(state: PlaygroundState, in_size: Size | None = None) -> tuple[float, ...]:
    """Compose the intuitive controls into the raw parameters of ``state.kind``.

    in_size (H, W) of the input makes rotation/shear rigid on non-square images.
    """
    if state.kind == "attention":
        return (float(state.sx), float(state.tx), float(state.ty))
    theta = compose_affine(rotation_deg=state.rot, scale=(state.sx, state.sy), shear=state.shear,
                           translation=(state.tx, state.ty), in_size=in_size)
    flat = tuple(float(v) for v in theta.reshape(-1).tolist())
    if state.kind == "projective":
        return flat + (float(state.px), float(state.py))
    return flat


def current_params(state: PlaygroundState, in_size: Size | None = None) -> tuple[float, ...]:
    """The raw parameters in force: composed from the controls (intuitive mode) or ``state.raw``."""
    if state.mode == "intuitive":
        return intuitive_to_params(state, in_size)
    return tuple(float(v) for v in state.raw)


def convert_raw(raw: Sequence[float], from_kind: str, to_kind: str) -> tuple[float, ...]:
    """Carry raw parameters over to another kind as faithfully as that kind allows.

    affine ↔ projective adds / drops the perspective row; affine → attention keeps the
    translation and uses s = √|det A| (1 if A is singular).
    """
    raw = [float(v) for v in raw]
    if len(raw) != n_params(from_kind):
        return IDENTITY[to_kind]
    if from_kind == to_kind:
        return tuple(raw)
    if from_kind == "attention":
        s, tx, ty = raw
        aff = [s, 0.0, tx, 0.0, s, ty]
    else:
        aff = raw[:6]
    if to_kind == "affine":
        return tuple(aff)
    if to_kind == "projective":
        return tuple(aff) + (0.0, 0.0)
    det = aff[0] * aff[4] - aff[1] * aff[3]
    s = math.sqrt(abs(det)) if math.isfinite(det) and abs(det) >= SINGULAR_EPS else 1.0
    return (s, aff[2], aff[5])


def determinant(kind: str, params: Sequence[float]) -> float:
    """det of the linear part: det A (affine, attention: s²) or det H (projective)."""
    m = params_matrix(kind, params)
    if kind == "projective":
        return float(np.linalg.det(m))
    return float(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0])


def check_params(kind: str, params: Sequence[float]) -> list[Message]:
    """Errors that make θ unusable: wrong length, non-finite entries, singular (|det| < 1e-6)."""
    if len(params) != n_params(kind):
        return [Message("error", f"{kind} needs {n_params(kind)} parameters, got {len(params)}.")]
    if not all(math.isfinite(float(v)) for v in params):
        return [Message("error", "θ contains a non-finite number (NaN or ∞), so no output can be computed.")]
    det = determinant(kind, params)
    if not math.isfinite(det) or abs(det) < SINGULAR_EPS:
        what = "det H" if kind == "projective" else "det A"
        return [Message("error",
                        f"θ is singular (|{what}| = {abs(det):.2g} < {SINGULAR_EPS:g}): it squashes the whole "
                        "output grid onto a line or a point, so there is no picture to show.")]
    return []


def resolve_params(kind: str, params: Sequence[float],
                   last_good: tuple[str, tuple[float, ...]] | None = None
                   ) -> tuple[tuple[float, ...], list[Message], bool]:
    """Pick the parameters to draw: ``params`` if usable, else the last good ones of the same
    kind, else the identity. Returns (params, messages, ok)."""
    msgs = check_params(kind, params)
    if not msgs:
        return tuple(float(v) for v in params), [], True
    if last_good is not None and last_good[0] == kind and not check_params(kind, last_good[1]):
        fallback, what = tuple(last_good[1]), "the last valid θ"
    else:
        fallback, what = IDENTITY[kind], "the identity"
    msgs = [Message(m.level, f"{m.text} Showing {what} instead.") for m in msgs]
    return fallback, msgs, False


# --------------------------------------------------------------------------- presets

@dataclass(frozen=True)
class Preset:
    """A named view: intuitive values (others reset to identity) and an optional forced kind."""
    label: str
    short: str  # button text
    values: Mapping[str, float]
    kind: str | None = None  # force this kind
    needs_rotation: bool = False  # attention cannot rotate/mirror: switch it to affine


PRESETS: dict[str, Preset] = {
    "zoom": Preset("Zoom on a part (2× on the top half)", "Zoom in", {"sx": 0.5, "sy": 0.5, "tx": 0.0, "ty": -0.35}),
    "rotate45": Preset("Rotate the window by 45°", "Rotate 45°", {"rot": 45.0}, needs_rotation=True),
    "mirror": Preset("Mirror left ↔ right (scale x = −1)", "Mirror", {"sx": -1.0}, needs_rotation=True),
    "tilt": Preset("Perspective tilt (projective, p_y = 0.5)", "Tilt", {"sx": 0.9, "sy": 0.9, "py": 0.5},
                   kind="projective"),
}


def identity_state(state: PlaygroundState) -> PlaygroundState:
    """Same image, kind and display options, θ = identity, intuitive mode."""
    defaults = {name: spec.default for name, spec in SLIDERS.items()}
    return replace(state, mode="intuitive", raw=IDENTITY[state.kind], **defaults)


def apply_preset(state: PlaygroundState, name: str, in_size: Size | None = None) -> PlaygroundState:
    """The state after clicking preset ``name`` (intuitive mode, raw recomputed)."""
    preset = PRESETS[name]
    kind = state.kind
    if preset.kind is not None:
        kind = preset.kind
    elif preset.needs_rotation and kind == "attention":
        kind = "affine"
    new = replace(identity_state(replace(state, kind=kind)), **{k: float(v) for k, v in preset.values.items()})
    return replace(new, raw=intuitive_to_params(new, in_size))


# --------------------------------------------------------------------------- query string

def _fmt(v: float) -> str:
    """Compact float for URLs: up to 6 significant digits, no '-0'."""
    s = f"{float(v):.6g}"
    return "0" if s in ("-0", "0") else s


def state_to_query(state: PlaygroundState) -> dict[str, str]:
    """State → query parameters (all strings)."""
    q = {"image": state.image, "kind": state.kind, "mode": state.mode}
    q.update({name: _fmt(getattr(state, name)) for name in SLIDERS})
    q["theta"] = ",".join(_fmt(v) for v in state.raw)
    q["sampling"] = state.sampling
    q["out"] = state.out
    return q


_IMAGE_RE = re.compile(r"^(mnist|bird)-(\d{1,6})$")


def parse_image_key(key: str) -> tuple[str, int] | None:
    """"mnist-3" → ("mnist", 3); "bird-0" → ("bird", 0); "upload" → ("upload", 0); else None."""
    if key == "upload":
        return ("upload", 0)
    m = _IMAGE_RE.match(key or "")
    return (m.group(1), int(m.group(2))) if m else None


def image_key(source: str, index: int = 0) -> str:
    """Inverse of :func:`parse_image_key`."""
    return "upload" if source == "upload" else f"{source}-{int(index)}"


def _last(v: str | Sequence[str]) -> str:
    if isinstance(v, str):
        return v
    return str(v[-1]) if len(v) else ""


def _parse_float(text: str) -> float | None:
    return links.parse_float(text)


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def state_from_query(query: Mapping[str, str | Sequence[str]]) -> tuple[PlaygroundState, list[Message]]:
    """Read a state from query parameters; anything unusable falls back to its default with a
    warning (never raises). In intuitive mode ``theta`` is ignored (recomputed from the controls)."""
    q = {k: _last(v) for k, v in query.items()}
    d = PlaygroundState()
    msgs: list[Message] = []
    kw: dict[str, object] = {}

    def choice(name: str, options: Sequence[str], default: str) -> str:
        if name not in q:
            return default
        if q[name] in options:
            return q[name]
        msgs.append(Message("warning", f"Link parameter {name}={_short(q[name])!r} is not one of "
                                        f"{', '.join(options)}; using {default!r}."))
        return default

    if "image" in q:
        if parse_image_key(q["image"]) is None:
            msgs.append(Message("warning", f"Link parameter image={_short(q['image'])!r} is not an image name "
                                            "like mnist-3 or bird-0; using the default digit."))
        else:
            kw["image"] = q["image"]
    kw["kind"] = choice("kind", KINDS, d.kind)
    kw["mode"] = choice("mode", MODES, d.mode)
    kw["sampling"] = choice("sampling", SAMPLINGS, d.sampling)
    kw["out"] = choice("out", OUT_CHOICES, d.out)

    for name, spec in SLIDERS.items():
        if name not in q:
            continue
        v = _parse_float(q[name])
        if v is None:
            msgs.append(Message("warning", f"Link parameter {name}={_short(q[name])!r} is not a finite number; "
                                            f"using {spec.default:g}."))
            continue
        if not spec.lo <= v <= spec.hi:
            clamped = min(max(v, spec.lo), spec.hi)
            msgs.append(Message("warning", f"Link parameter {name}={v:g} is outside [{spec.lo:g}, {spec.hi:g}]; "
                                            f"using {clamped:g}."))
            v = clamped
        kw[name] = v

    kind = str(kw["kind"])
    raw = IDENTITY[kind]
    if "theta" in q:
        parts = [p for p in q["theta"].split(",")]
        values = [_parse_float(p) for p in parts]
        if len(parts) != n_params(kind):
            problem = f"has {len(parts)} numbers but {kind} needs {n_params(kind)}"
        elif any(v is None for v in values):
            problem = "contains something that is not a finite number"
        else:
            problem = ""
        if problem:
            if kw["mode"] == "raw":
                msgs.append(Message("warning", f"Link parameter theta={_short(q['theta'])!r} {problem}; "
                                                "switched to the intuitive controls."))
                kw["mode"] = "intuitive"
        else:
            clamped = [min(max(float(v), -RAW_LIMIT), RAW_LIMIT) for v in values]  # type: ignore[arg-type]
            if clamped != values:
                msgs.append(Message("warning", f"Link parameter theta has entries beyond ±{RAW_LIMIT:g}; "
                                                "they were clamped."))
            raw = tuple(clamped)
    elif kw["mode"] == "raw":
        msgs.append(Message("warning", "The link asks for raw mode but has no theta; "
                                        "switched to the intuitive controls."))
        kw["mode"] = "intuitive"
    kw["raw"] = raw
    return replace(d, **kw), msgs  # type: ignore[arg-type]


# --------------------------------------------------------------------------- sizes, images

def output_size(choice: str, in_size: Size) -> Size:
    """Output size (H', W'): the input's for "same", else N × N."""
    if choice == "same":
        return int(in_size[0]), int(in_size[1])
    n = int(choice)
    return n, n


def as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) / (H, W, 1) / (H, W, 3) image, uint8 or float in [0, 1] → float32 (H, W, 3) in [0, 1]."""
    a = np.asarray(image)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    a = a.astype(np.float32, copy=False)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an image of shape (H, W), (H, W, 1) or (H, W, 3), got {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    return np.ascontiguousarray(np.clip(a, 0.0, 1.0))


def fallback_digit() -> np.ndarray:
    """A generated 28×28 stand-in digit (an "F", asymmetric under every flip and turn): float32 (28, 28, 3)."""
    img = np.zeros((28, 28), np.float32)
    img[5:23, 8:12] = 1.0   # stem
    img[5:9, 8:21] = 1.0    # top bar
    img[12:15, 8:18] = 1.0  # middle bar
    return as_rgb(img)


def fallback_photo(h: int = 120, w: int = 160) -> np.ndarray:
    """A generated colour test picture (gradient, disc, bar): float32 (h, w, 3)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin(x / 9.0) * np.cos(y / 11.0)], axis=2) * 0.6
    disc = (x - 0.35 * w) ** 2 + (y - 0.4 * h) ** 2 < (0.18 * h) ** 2
    img[disc] = (1.0, 0.85, 0.1)
    img[int(0.7 * h):int(0.8 * h), int(0.5 * w):int(0.9 * w)] = (0.9, 0.1, 0.2)
    return np.clip(img, 0, 1).astype(np.float32)


@dataclass
class UploadResult:
    """Outcome of decoding an upload: image (H, W, 3) float32 or None, warnings, error text or None."""
    image: np.ndarray | None
    warnings: list[str]
    error: str | None


def decode_upload(data: bytes, name: str = "upload") -> UploadResult:
    """Decode uploaded bytes with :func:`stn_core.data.images.load_image`; never raises."""
    try:
        image, warns = load_image(data)
    except ImageError as e:
        return UploadResult(None, [], f"Could not use {name!r}: {e}.")
    except Exception as e:  # any other decoder failure must not crash the page
        return UploadResult(None, [], f"Could not use {name!r}: unexpected decoding problem ({type(e).__name__}: {e}).")
    return UploadResult(as_rgb(image), list(warns), None)


# --------------------------------------------------------------------------- warp

@dataclass
class WarpResult:
    """Output V ``(H', W', 3)`` float32, sampling grid ``(H', W', 2)`` (normalised source coords),
    valid ``(H', W')`` bool (False where the map has no finite source point), messages."""

    output: np.ndarray
    grid: np.ndarray
    valid: np.ndarray
    messages: list[Message]


def warp(image: np.ndarray, kind: str, params: Sequence[float], out_size: Size,
         sampling: str = "bilinear") -> WarpResult:
    """Warp ``image (H, W, 3)`` with θ: V = sample(U, T_θ(G)), zero padding.

    Output points a projective map sends to infinity or behind the viewer (w ≤ 0) are
    marked invalid in ``valid`` and sampled as empty (0); a warning says how many.
    """
    u = torch.from_numpy(as_rgb(image)).permute(2, 0, 1).unsqueeze(0)
    p = torch.tensor([list(params)], dtype=torch.float32)
    grid = make_grid(kind, p, out_size)
    valid = torch.isfinite(grid).all(-1)
    msgs: list[Message] = []
    if kind == "projective":
        w = projective_denominator(p, out_size)
        valid &= w > HORIZON_EPS
    n_bad = int((~valid).sum())
    if n_bad:
        grid = torch.where(valid.unsqueeze(-1), grid, torch.full_like(grid, 4.0))
        total = valid.numel()
        msgs.append(Message("warning",
                            f"The projective map sends {n_bad} of {total} output pixels "
                            f"({100.0 * n_bad / total:.0f}%) to infinity or behind the viewer (denominator "
                            "w = h31·x + h32·y + 1 ≤ 0): they have no source point and are shown as empty "
                            "(checkerboard). Make |p_x|, |p_y| smaller."))
    v = sample(u, grid, mode=sampling)
    g = grid[0].numpy()
    inside = valid[0].numpy() & (np.abs(g) <= 1.0).all(-1)
    if not inside.any():
        msgs.append(Message("info", "Every sampling point falls outside the input, so V is empty "
                                    "(zero padding). Reset or move the window back over the image."))
    out = v[0].permute(1, 2, 0).clamp(0.0, 1.0).numpy()
    return WarpResult(output=np.ascontiguousarray(out), grid=g, valid=valid[0].numpy(), messages=msgs)


# --------------------------------------------------------------------------- display text

def _num(v: float) -> str:
    s = f"{v:.3f}"
    return "0.000" if s == "-0.000" else s


def theta_latex(kind: str, params: Sequence[float]) -> str:
    """LaTeX for θ as the UI shows it (a bmatrix with 3 decimals)."""
    m = params_matrix(kind, params)
    body = r" \\ ".join(" & ".join(_num(v) for v in row) for row in m)
    if kind == "attention":
        s, tx, ty = (_num(float(v)) for v in params)
        return (r"A_\theta = \begin{bmatrix} s & 0 & t_x \\ 0 & s & t_y \end{bmatrix} = "
                r"\begin{bmatrix} " + body + r" \end{bmatrix}"
                + rf"\qquad (s,\ t_x,\ t_y) = ({s},\ {tx},\ {ty})")
    name = r"H_\theta" if kind == "projective" else r"A_\theta"
    return name + r" = \begin{bmatrix} " + body + r" \end{bmatrix}"


KIND_FORMULAS = {
    "affine": r"\begin{pmatrix} x^s \\ y^s \end{pmatrix} = A_\theta \begin{pmatrix} x^t \\ y^t \\ 1 \end{pmatrix}",
    "attention": r"\begin{pmatrix} x^s \\ y^s \end{pmatrix} = \begin{bmatrix} s & 0 & t_x \\ 0 & s & t_y "
                 r"\end{bmatrix} \begin{pmatrix} x^t \\ y^t \\ 1 \end{pmatrix}",
    "projective": r"\begin{pmatrix} u \\ v \\ w \end{pmatrix} = H_\theta \begin{pmatrix} x^t \\ y^t \\ 1 "
                  r"\end{pmatrix},\quad (x^s, y^s) = \left(\tfrac{u}{w}, \tfrac{v}{w}\right)",
}


def state_fields() -> tuple[str, ...]:
    """Names of the PlaygroundState fields (for the UI's session keys)."""
    return tuple(f.name for f in fields(PlaygroundState))


def invert_affine(params: Sequence[float]) -> tuple[float, ...]:
    """Inverse of an affine θ (6 values): the map that undoes it."""
    m = np.vstack([params_matrix("affine", params), [0.0, 0.0, 1.0]])
    return tuple(float(v) for v in np.linalg.inv(m)[:2].reshape(-1))


@dataclass
class PipelineExample:
    """The home page's worked example: a distorted digit U, the θ that straightens it,
    the sampling grid ``(H', W', 2)``, the window border and the output V."""

    u: np.ndarray
    theta: tuple[float, ...]
    grid: np.ndarray
    outline: np.ndarray
    v: np.ndarray


def pipeline_example(digit: np.ndarray, rotation_deg: float = 35.0, zoom_out: float = 1.35,
                     shift: tuple[float, float] = (0.18, -0.12)) -> PipelineExample:
    """Distort ``digit`` (H, W[, 3]) like the paper's RTS data (rotate, shrink, move), then
    take as θ the affine map that undoes it: what a trained localisation net would predict."""
    d = as_rgb(digit)
    size = (d.shape[0], d.shape[1])
    distort = intuitive_to_params(PlaygroundState(rot=rotation_deg, sx=zoom_out, sy=zoom_out,
                                                  tx=shift[0], ty=shift[1]), size)
    u = warp(d, "affine", distort, size).output
    theta = invert_affine(distort)
    res = warp(u, "affine", theta, size)
    return PipelineExample(u=u, theta=theta, grid=res.grid, outline=outline("affine", theta), v=res.output)
