"""Figure helpers for the STN Lab pages: plotly figures and numpy/PNG/SVG images.

Pure functions, no Streamlit. Coordinates: normalised [-1, 1] with ``align_corners=False``;
in figures, pixel (row i, column j) is centred at (x = j, y = i), so the image spans
[-0.5, W - 0.5] × [-0.5, H - 0.5] and a normalised x maps to ((x + 1)·W − 1) / 2.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import math
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont
from plotly.subplots import make_subplots

from pages.shell.widgets import svg_img_tag  # noqa: F401 (re-exported)

GRID_COLOUR = "#00d8ff"
OUTLINE_COLOUR = "#ff4b2b"
CORNER_COLOUR = "#ffd400"
FONT_SIZE = 16
CHECKER = (150, 200)  # the two greys of the "empty" checkerboard


# --------------------------------------------------------------------------- images

def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (H, W) / (H, W, 1) / (H, W, 3), or uint8 → uint8 (H, W, 3)."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = np.round(np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0) * 255.0).astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def display_factor(h: int, w: int, target: int = 448, max_factor: int = 16) -> int:
    """Integer nearest-neighbour upscale factor so the longer side reaches about ``target`` px."""
    return int(max(1, min(max_factor, target // max(1, h, w))))


def upscale_nearest(image: np.ndarray, k: int) -> np.ndarray:
    """Repeat every pixel k×k (keeps pixels crisp): (H, W, C) → (kH, kW, C)."""
    if k <= 1:
        return image
    return np.repeat(np.repeat(image, k, axis=0), k, axis=1)


def checker_fill(rgb: np.ndarray, empty: np.ndarray, cell: int = 8) -> np.ndarray:
    """Paint a grey checkerboard where ``empty (H, W)`` is True: uint8 (H, W, 3) → copy."""
    if not empty.any():
        return rgb
    h, w = empty.shape
    yy, xx = np.mgrid[0:h, 0:w]
    board = np.where(((yy // cell) + (xx // cell)) % 2 == 0, CHECKER[0], CHECKER[1]).astype(np.uint8)
    out = rgb.copy()
    out[empty] = board[empty][:, None]
    return out


def display_image(image: np.ndarray, empty: np.ndarray | None = None, target: int = 448,
                  upscale: bool = True) -> tuple[np.ndarray, int]:
    """Image for display: uint8, nearest-upscaled by k (returned; 1 with ``upscale=False``), empty pixels as a
    checkerboard whose cells are 2 image pixels when the image is small enough to be enlarged, else 8."""
    rgb = to_uint8(image)
    small = display_factor(rgb.shape[0], rgb.shape[1], target)
    k = small if upscale else 1
    big = upscale_nearest(rgb, k)
    if empty is not None and empty.any():
        big = checker_fill(big, upscale_nearest(empty[:, :, None], k)[:, :, 0], cell=(2 if small > 1 else 8) * k)
    return big, k


def png_bytes(image: np.ndarray, upscale: int = 1) -> bytes:
    """(H, W) or (H, W, 3) image, float in [0, 1] or uint8 → PNG file bytes, optionally
    enlarged ``upscale``× with nearest neighbour (crisp pixels for small digits)."""
    rgb = to_uint8(image)
    if upscale > 1:
        rgb = upscale_nearest(rgb, int(upscale))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def png_data_uri(rgb: np.ndarray) -> str:
    """uint8 (H, W, 3) → "data:image/png;base64,..." (fast compression)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode("ascii")


#: JPEG quality of colour photographs sent to the browser (4:4:4, no chroma subsampling).
JPEG_QUALITY = 90


def is_colour(rgb: np.ndarray) -> bool:
    """Whether a uint8 (H, W, 3) image has colour (some pixel's channels differ): a photograph, not a digit."""
    return bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any())


def image_data_uri(rgb: np.ndarray, exact: bool = False) -> str:
    """uint8 (H, W, 3) → a data URI: a colour photograph as JPEG (quality :data:`JPEG_QUALITY`, 4:4:4; ~10× faster
    to encode and ~5× smaller than PNG for a 256-px bird), anything grey (digits) or ``exact`` as PNG, lossless."""
    if exact or not is_colour(rgb):
        return png_data_uri(rgb)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_URI_CACHE: OrderedDict[bytes, tuple[str, int]] = OrderedDict()
_URI_CACHE_SIZE = 16


def display_uri(image: np.ndarray, empty: np.ndarray | None = None, upscale: bool = True,
                exact: bool = False) -> tuple[str, int]:
    """Data URI of :func:`display_image` (:func:`image_data_uri`: colour photographs as JPEG, grey images and
    ``exact`` ones as PNG) and its upscale factor, memoised on the pixels (the input U is re-sent unchanged on
    most redraws, so its encoding is reused).
    ``upscale=False``: the pixels as they are (factor 1; the empty-pixel checkerboard keeps the cell
    size, in image pixels, that the upscaled picture has) — for a viewer that enlarges without
    smoothing, such as plotly's image trace with ``zsmooth=False``."""
    rgb = to_uint8(image)
    h = hashlib.blake2b(rgb.tobytes(), digest_size=16)
    h.update(repr(rgb.shape).encode() + bytes([upscale, exact]))
    if empty is not None and empty.any():
        h.update(np.packbits(empty).tobytes())
    key = h.digest()
    hit = _URI_CACHE.get(key)
    if hit is not None:
        _URI_CACHE.move_to_end(key)
        return hit
    big, k = display_image(rgb, empty, upscale=upscale)
    out = (image_data_uri(big, exact), k)
    _URI_CACHE[key] = out
    if len(_URI_CACHE) > _URI_CACHE_SIZE:
        _URI_CACHE.popitem(last=False)
    return out


# --------------------------------------------------------------------------- geometry

def norm_to_pixel(xy: np.ndarray, in_size: tuple[int, int]) -> np.ndarray:
    """Normalised (..., 2) (x, y) → pixel coordinates (..., 2) for an image of size (H, W)."""
    h, w = in_size
    xy = np.asarray(xy, dtype=np.float64)
    out = np.empty_like(xy)
    out[..., 0] = ((xy[..., 0] + 1.0) * w - 1.0) / 2.0
    out[..., 1] = ((xy[..., 1] + 1.0) * h - 1.0) / 2.0
    return out


def line_indices(n: int, n_lines: int) -> np.ndarray:
    """Up to ``n_lines`` evenly spread indices in [0, n) including both ends."""
    return np.unique(np.round(np.linspace(0, n - 1, min(n, n_lines))).astype(int))


def grid_polylines(grid: np.ndarray, valid: np.ndarray | None = None, n_lines: int = 9,
                   max_points: int = 65) -> np.ndarray:
    """Subsample the sampling grid ``(H', W', 2)`` into ``n_lines`` rows and columns.

    Returns points ``(M, 2)`` (same units as ``grid``) with NaN rows separating the lines
    and replacing invalid points, ready for one plotly scatter trace.
    """
    g = np.asarray(grid, dtype=np.float64).copy()
    if valid is not None:
        g[~np.asarray(valid, bool)] = np.nan
    g[~np.isfinite(g).all(-1)] = np.nan
    hh, ww = g.shape[:2]
    gap = np.full((1, 2), np.nan)
    parts = []
    along_x = line_indices(ww, max_points)
    along_y = line_indices(hh, max_points)
    for i in line_indices(hh, n_lines):
        parts += [g[i, along_x], gap]
    for j in line_indices(ww, n_lines):
        parts += [g[along_y, j], gap]
    return np.concatenate(parts, axis=0)


def _finite_extent(points: np.ndarray) -> tuple[float, float, float, float] | None:
    p = points[np.isfinite(points).all(-1)]
    if p.size == 0:
        return None
    return float(p[:, 0].min()), float(p[:, 0].max()), float(p[:, 1].min()), float(p[:, 1].max())


def view_range(in_size: tuple[int, int], points: np.ndarray, max_extra: float = 1.0,
               margin: float = 0.04) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis ranges (x, y) covering the image and the pixel ``points``, the points clipped
    to ``max_extra`` image sizes beyond each side (so the image stays visible)."""
    h, w = in_size
    x0, x1, y0, y1 = -0.5, w - 0.5, -0.5, h - 0.5
    ext = _finite_extent(points)
    if ext is not None:
        x0 = min(x0, max(ext[0], -0.5 - max_extra * w))
        x1 = max(x1, min(ext[1], w - 0.5 + max_extra * w))
        y0 = min(y0, max(ext[2], -0.5 - max_extra * h))
        y1 = max(y1, min(ext[3], h - 0.5 + max_extra * h))
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    return (x0 - mx, x1 + mx), (y0 - my, y1 + my)


# --------------------------------------------------------------------------- plotly figures

def _trace(kind: str, **props) -> dict:
    """A trace as a plain spec, e.g. ``_trace("scatter", x=…, y=…)``."""
    return dict(type=kind, **props)


def _figure(data: list[dict], layout: dict) -> go.Figure:
    """A figure from plain specs, without plotly's property-by-property validation: that cost ~8 ms of
    every redraw of the playground here. ``tests/app/test_figure_specs.py`` validates what every builder
    makes (validating it again must give the same figure), so a typo still fails a test. No plotly template
    (``{}``): Streamlit's theme styles the chart in the browser, and plotly's default template was ~3 kB
    copied, validated and sent with every figure (Chromium screenshots of every page unchanged)."""
    return go.Figure(data=data, layout={"template": {}, **layout}, _validate=False)


def image_trace(image: np.ndarray, empty: np.ndarray | None = None, name: str = "image") -> dict:
    """An image trace in pixel coordinates of the image, drawn without smoothing (``zsmooth=False``:
    plotly renders a source image "pixelated"), so pixels stay crisp. The pixels are sent as they are,
    not enlarged: a 42×42 digit is a 0.2 ms PNG of ~3 kB instead of a 3 ms one of ~12 kB per redraw."""
    uri, k = display_uri(image, empty, upscale=False)
    return _trace("image", source=uri, x0=-0.5 + 0.5 / k, y0=-0.5 + 0.5 / k, dx=1.0 / k, dy=1.0 / k,
                    zsmooth=False, name=name, hoverinfo="skip")


def auto_height(xr: tuple[float, float], yr: tuple[float, float], plot_width: int = 500,
                lo: int = 260, hi: int = 560, chrome: int = 110) -> int:
    """Figure height (px) that fits the view's aspect for a plot about ``plot_width`` px wide,
    plus ``chrome`` for the title and legend."""
    aspect = (yr[1] - yr[0]) / max(1e-9, xr[1] - xr[0])
    return int(round(min(hi, max(lo, plot_width * aspect)))) + chrome


def plot_figure(traces: list, title: str, xr: tuple[float, float], yr: tuple[float, float],
            height: int | None) -> go.Figure:
    """One figure from traces and the shared layout, built in a single constructor call
    (several times faster than ``update_layout``; this runs on every redraw)."""
    height = auto_height(xr, yr) if height is None else height
    axis = dict(showgrid=False, zeroline=False, showticklabels=False, ticks="", constrain="domain")
    layout = dict(
        title=dict(text=title, font=dict(size=FONT_SIZE + 4), x=0.0, xanchor="left"),
        height=height, margin=dict(l=10, r=10, t=50, b=10), font=dict(size=FONT_SIZE),
        showlegend=True, dragmode="pan", plot_bgcolor="#f3f3f3",
        legend=dict(orientation="h", yanchor="top", y=-0.02, xanchor="left", x=0.0, font=dict(size=FONT_SIZE - 1)),
        xaxis=dict(range=list(xr), **axis),
        yaxis=dict(range=[yr[1], yr[0]], scaleanchor="x", scaleratio=1.0, **axis),
    )
    return _figure(traces, layout)


def _lines(points: np.ndarray, name: str, colour: str, width: float, opacity: float = 1.0) -> dict:
    return _trace("scatter", x=points[:, 0], y=points[:, 1], mode="lines", name=name, opacity=opacity,
                      line=dict(color=colour, width=width), hoverinfo="skip", connectgaps=False)


def _corner(x: float, y: float, name: str) -> dict:
    return _trace("scatter", x=[x], y=[y], mode="markers", name=name, hoverinfo="skip",
                      marker=dict(color=CORNER_COLOUR, size=16, line=dict(color="black", width=2)))


def input_figure(image: np.ndarray, grid: np.ndarray, outline_pts: np.ndarray | None = None,
                 valid: np.ndarray | None = None, n_lines: int = 9, title: str = "Input U",
                 height: int | None = None) -> go.Figure:
    """The input U with the transformed sampling grid T_θ(G) (n_lines × n_lines lines
    subsampled from the real grid ``(H', W', 2)``, normalised) and the output window's border
    ``outline_pts (M, 2)`` (normalised, NaN breaks; the quadrilateral of the paper's Fig. 1b).
    The output's top-left corner is marked so flips and turns are visible. height None: from the
    view's aspect (:func:`auto_height`)."""
    h, w = image.shape[:2]
    lines = norm_to_pixel(grid_polylines(grid, valid, n_lines), (h, w))
    traces = [image_trace(image, name="U"), _lines(lines, "sampling grid T<sub>θ</sub>(G)", GRID_COLOUR, 1.6)]
    pts_for_range = lines
    if outline_pts is not None:
        ol = norm_to_pixel(outline_pts, (h, w))
        traces.append(_lines(ol, "output border", OUTLINE_COLOUR, 4))
        pts_for_range = np.concatenate([lines, ol], 0)
        if np.isfinite(ol[0]).all():
            traces.append(_corner(float(ol[0, 0]), float(ol[0, 1]), "V's top-left corner"))
    xr, yr = view_range((h, w), pts_for_range)
    return plot_figure(traces, title, xr, yr, height)


def output_figure(output: np.ndarray, valid: np.ndarray | None = None, n_lines: int = 9, show_grid: bool = True,
                  title: str = "Output V", height: int | None = None) -> go.Figure:
    """The output V (nearest-upscaled for display; invalid pixels as a checkerboard), with the
    regular grid G it was sampled on (the same n_lines lines as on the input)."""
    h, w = output.shape[:2]
    empty = None if valid is None else ~np.asarray(valid, bool)
    traces = [image_trace(output, empty, name="V")]
    if show_grid:
        ys = (np.arange(h) + 0.5) / h * 2 - 1
        xs = (np.arange(w) + 0.5) / w * 2 - 1
        g = np.stack(np.meshgrid(xs, ys), -1)
        traces.append(_lines(norm_to_pixel(grid_polylines(g, None, n_lines), (h, w)), "regular grid G",
                             GRID_COLOUR, 1.2, opacity=0.6))
    border = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5], [-0.5, -0.5]])
    traces += [_lines(border, "output border", OUTLINE_COLOUR, 4), _corner(-0.5, -0.5, "top-left corner")]
    xr, yr = view_range((h, w), np.zeros((0, 2)))
    return plot_figure(traces, title, xr, yr, height)


# --------------------------------------------------------------------------- vector pictures: one layout, SVG and PNG
#
# The pipeline picture and the Figure-1 gallery are built once as a :class:`Scene` (a list of
# shapes in SVG user units, origin top-left, y down); :func:`scene_svg` writes it as SVG and
# :func:`scene_png` paints the same shapes with Pillow (supersampled, then box-filtered), so the
# PNG download shows the same picture without an SVG rasteriser.

ARROW_COLOUR = "#333"
FONT_FAMILY = "Source Sans Pro, Helvetica, Arial, sans-serif"
PNG_SCALE = 2  # PNG pixels per SVG user unit
ARROW_HEAD = 7.0  # arrow-head length in stroke widths (the SVG marker's markerWidth)
ARROW_REF = 0.9  # fraction of the head that lies before the line's end point (marker refX / 10)
SUB_SIZE = 15.0  # font size of subscripts ("f_loc")
SUB_SHIFT = 0.56  # subscript baseline drop, in subscript font sizes (as Chromium draws baseline-shift="sub")
FRAME_COLOUR, FRAME_WIDTH = "#444", 1.5  # thin frame around every thumbnail
THUMB_TARGET = 256  # thumbnails are nearest-upscaled to about this many pixels before stretching

Spans = tuple[tuple[str, bool], ...]  # text pieces and whether each is a subscript


@dataclass(frozen=True, eq=False)
class Rect:
    """Rectangle (x, y, w, h) with corner radius rx; ``dash`` is the SVG stroke-dasharray."""
    x: float
    y: float
    w: float
    h: float
    fill: str | None = None
    stroke: str | None = None
    stroke_width: float = 0.0
    rx: float = 0.0
    dash: tuple[float, ...] = ()


@dataclass(frozen=True, eq=False)
class Label:
    """Text whose baseline starts / is centred / ends at (x, y) (anchor "start" | "middle" | "end")."""
    x: float
    y: float
    spans: Spans
    size: float
    fill: str = "#222"
    anchor: str = "middle"
    bold: bool = False
    italic: bool = False

    @property
    def text(self) -> str:
        return "".join(s for s, _ in self.spans)


@dataclass(frozen=True, eq=False)
class Lines:
    """Open polylines through ``points (M, 2)``, NaN rows break them; ``arrow``: a head at the end."""
    points: np.ndarray
    stroke: str
    width: float
    dash: tuple[float, ...] = ()
    arrow: bool = False


@dataclass(frozen=True, eq=False)
class Thumb:
    """Image (H, W) / (H, W, 3) stretched into the square (x, y, size), framed; ``empty (H, W)``
    pixels shown as a checkerboard."""

    image: np.ndarray
    x: float
    y: float
    size: float
    empty: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Clip:
    """Shapes drawn only inside the rectangle (x, y, w, h)."""
    x: float
    y: float
    w: float
    h: float
    items: tuple


@dataclass(frozen=True, eq=False)
class Scene:
    """A picture ``width`` × ``height`` user units on white, drawn in ``items`` order."""
    width: float
    height: float
    items: tuple


def _text(s: str) -> Spans:
    return ((s, False),)


def _walk(items) -> list:
    """All shapes, clips opened (drawing order)."""
    out = []
    for it in items:
        out += _walk(it.items) if isinstance(it, Clip) else [it]
    return out


def scene_thumbs(scene: Scene) -> list[Thumb]:
    """The thumbnails of a scene (where the images sit), in drawing order."""
    return [it for it in _walk(scene.items) if isinstance(it, Thumb)]


def scene_texts(scene: Scene) -> list[str]:
    """The plain text of every label, in drawing order."""
    return [it.text for it in _walk(scene.items) if isinstance(it, Label)]


def _n(v: float) -> str:
    return f"{float(v):.6g}"


def _thumb_pixels(t: Thumb) -> np.ndarray:
    return display_image(t.image, t.empty, target=THUMB_TARGET)[0]


# ---- SVG writer

def _svg_stroke(stroke: str | None, width: float, dash: tuple[float, ...]) -> str:
    if not stroke:
        return ""
    out = f' stroke="{stroke}" stroke-width="{_n(width)}"'
    return out + (f' stroke-dasharray="{" ".join(_n(d) for d in dash)}"' if dash else "")


def _svg_rect(r: Rect) -> str:
    rx = f' rx="{_n(r.rx)}"' if r.rx else ""
    return (f'<rect x="{_n(r.x)}" y="{_n(r.y)}" width="{_n(r.w)}" height="{_n(r.h)}"{rx} fill="{r.fill or "none"}"'
            f'{_svg_stroke(r.stroke, r.stroke_width, r.dash)}/>')


def _svg_lines(a: Lines) -> str:
    out, run = [], []
    marker = ' marker-end="url(#stnarrow)"' if a.arrow else ""
    for x, y in list(np.asarray(a.points, dtype=float)) + [(math.nan, math.nan)]:
        if math.isfinite(x) and math.isfinite(y):
            run.append(f"{x:.1f},{y:.1f}")
            continue
        if len(run) > 1:
            out.append(f'<polyline points="{" ".join(run)}" fill="none"{_svg_stroke(a.stroke, a.width, a.dash)}'
                       f'{marker}/>')
        run = []
    return "".join(out)


def _svg_label(t: Label) -> str:
    style = (' font-weight="bold"' if t.bold else "") + (' font-style="italic"' if t.italic else "")
    body = "".join(f'<tspan baseline-shift="sub" font-size="{_n(SUB_SIZE)}">{html.escape(s)}</tspan>' if sub
                   else html.escape(s) for s, sub in t.spans)
    return (f'<text x="{_n(t.x)}" y="{_n(t.y)}" text-anchor="{t.anchor}" font-size="{_n(t.size)}"{style} '
            f'fill="{t.fill}">{body}</text>')


def _svg_thumb_source(t: Thumb) -> str:
    """The ``href`` of a thumbnail: an image smaller than its square goes unenlarged and the viewer enlarges it
    without smoothing (crisp pixels at any zoom, a smaller file); a larger one as :func:`_thumb_pixels`."""
    h, w = np.asarray(t.image).shape[:2]
    if max(h, w) < t.size:
        pixels = display_image(t.image, t.empty, target=THUMB_TARGET, upscale=False)[0]
        return f' style="image-rendering:pixelated" href="{png_data_uri(pixels)}"'
    return f' href="{png_data_uri(_thumb_pixels(t))}"'


def _svg_items(items, clip_ids: list[int]) -> str:
    out = []
    for it in items:
        if isinstance(it, Rect):
            out.append(_svg_rect(it))
        elif isinstance(it, Label):
            out.append(_svg_label(it))
        elif isinstance(it, Lines):
            out.append(_svg_lines(it))
        elif isinstance(it, Thumb):
            out.append(f'<image x="{_n(it.x)}" y="{_n(it.y)}" width="{_n(it.size)}" height="{_n(it.size)}" '
                       f'preserveAspectRatio="none"{_svg_thumb_source(it)}/>'
                       + _svg_rect(Rect(it.x, it.y, it.size, it.size, None, FRAME_COLOUR, FRAME_WIDTH)))
        elif isinstance(it, Clip):
            clip_ids.append(len(clip_ids))
            cid = f"stnclip{clip_ids[-1]}"
            out.append(f'<clipPath id="{cid}"><rect x="{_n(it.x)}" y="{_n(it.y)}" width="{_n(it.w)}" '
                       f'height="{_n(it.h)}"/></clipPath><g clip-path="url(#{cid})">'
                       + _svg_items(it.items, clip_ids) + "</g>")
        else:
            raise TypeError(f"Cannot draw a {type(it).__name__} in a scene.")
    return "".join(out)


def scene_svg(scene: Scene) -> str:
    """The scene as a self-contained ``<svg>`` document string (see :func:`svg_img_tag`)."""
    w, h = _n(scene.width), _n(scene.height)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
            f'font-family="{FONT_FAMILY}">')
    if any(isinstance(it, Lines) and it.arrow for it in _walk(scene.items)):
        head += ('<defs><marker id="stnarrow" viewBox="0 0 10 10" '
                 f'refX="{_n(10 * ARROW_REF)}" refY="5" markerWidth="{_n(ARROW_HEAD)}" '
                 f'markerHeight="{_n(ARROW_HEAD)}" orient="auto-start-reverse">'
                 f'<path d="M 0 0 L 10 5 L 0 10 z" fill="{ARROW_COLOUR}"/></marker></defs>')
    head += f'<rect width="{w}" height="{h}" fill="#ffffff"/>'
    return head + _svg_items(scene.items, []) + "</svg>"


# ---- PNG painter (Pillow)

_FONT_FILES = {  # metric-compatible stand-ins for Helvetica / Arial first, then anything common
    (False, False): ("LiberationSans-Regular.ttf", "Arial.ttf", "arial.ttf", "Helvetica.ttc", "DejaVuSans.ttf"),
    (True, False): ("LiberationSans-Bold.ttf", "Arial Bold.ttf", "arialbd.ttf", "DejaVuSans-Bold.ttf"),
    (False, True): ("LiberationSans-Italic.ttf", "Arial Italic.ttf", "ariali.ttf", "DejaVuSans-Oblique.ttf"),
    (True, True): ("LiberationSans-BoldItalic.ttf", "Arial Bold Italic.ttf", "arialbi.ttf",
                   "DejaVuSans-BoldOblique.ttf"),
}


@lru_cache(maxsize=64)
def _font(px: int, bold: bool = False, italic: bool = False):
    """A TrueType font of ``px`` pixels (Liberation Sans / Arial / DejaVu Sans, else Pillow's own)."""
    for name in _FONT_FILES[(bold, italic)] + _FONT_FILES[(False, False)]:
        try:
            return ImageFont.truetype(name, px)
        except OSError:
            continue
    try:
        return ImageFont.load_default(px)  # Pillow ≥ 10.1 with FreeType: a scalable font
    except TypeError:
        return ImageFont.load_default()


def _dash_runs(points: np.ndarray, dash: tuple[float, ...]) -> list[np.ndarray]:
    """Split a polyline (M, 2) into its painted dashes (SVG stroke-dasharray, offset 0)."""
    pattern = list(dash) * (2 if len(dash) % 2 else 1)
    if not pattern or sum(pattern) <= 0:
        return [points]
    runs, cur, k, left, on = [], [points[0]], 0, pattern[0], True
    for p, q in zip(points[:-1], points[1:]):
        seg = float(np.hypot(*(q - p)))
        pos = 0.0
        while seg - pos > left:
            pos += left
            pt = p + (q - p) * (pos / seg)
            if on:
                runs.append(np.array(cur + [pt]))
            cur = [pt]
            on, k = not on, (k + 1) % len(pattern)
            left = pattern[k]
        left -= seg - pos
        cur.append(q)
    if on and len(cur) > 1:
        runs.append(np.array(cur))
    return runs


def _rect_outline(r: Rect, steps: int = 8) -> np.ndarray:
    """Closed outline of a (rounded) rectangle as points (M, 2), starting at the top edge's left end
    and running clockwise like an SVG rect's stroke."""
    rx = min(r.rx, r.w / 2, r.h / 2)
    x0, y0, x1, y1 = r.x, r.y, r.x + r.w, r.y + r.h
    pts = []
    for cx, cy, a0 in ((x1 - rx, y0 + rx, -90), (x1 - rx, y1 - rx, 0), (x0 + rx, y1 - rx, 90), (x0 + rx, y0 + rx, 180)):
        for a in np.radians(np.linspace(a0, a0 + 90, steps + 1 if rx > 0 else 1)):
            pts.append((cx + rx * math.cos(a), cy + rx * math.sin(a)))
    pts = [(x0 + rx, y0)] + pts + [(x0 + rx, y0)]
    return np.array(pts, dtype=float)


_SHAPES = (Rect, Label, Lines, Thumb, Clip)


class _Painter:
    """Paints scene shapes on a Pillow image whose pixel (0, 0) sits at user point (ox, oy) / s."""
    def __init__(self, img: Image.Image, s: float, ox: float = 0.0, oy: float = 0.0) -> None:
        self.img, self.s, self.ox, self.oy = img, s, ox, oy
        self.draw = ImageDraw.Draw(img)

    def px(self, x: float, y: float) -> tuple[float, float]:
        return x * self.s - self.ox, y * self.s - self.oy

    def box(self, x: float, y: float, w: float, h: float, grow: float = 0.0) -> list[int]:
        """Pillow's inclusive pixel box covering [x, x + w) × [y, y + h) grown by ``grow`` px."""
        (a, b), (c, d) = self.px(x, y), self.px(x + w, y + h)
        return [round(a - grow), round(b - grow), round(c + grow) - 1, round(d + grow) - 1]

    def items(self, items) -> None:
        for it in items:
            paint = getattr(self, type(it).__name__.lower(), None) if isinstance(it, _SHAPES) else None
            if paint is None:
                raise TypeError(f"Cannot draw a {type(it).__name__} in a scene.")
            paint(it)

    def rect(self, r: Rect) -> None:
        rad = r.rx * self.s
        if r.fill and r.fill != "none":
            self.draw.rounded_rectangle(self.box(r.x, r.y, r.w, r.h), radius=rad, fill=r.fill)
        if not r.stroke or r.stroke_width <= 0:
            return
        if r.dash:
            self.lines(Lines(_rect_outline(r), r.stroke, r.stroke_width, r.dash))
            return
        half = r.stroke_width * self.s / 2
        self.draw.rounded_rectangle(self.box(r.x, r.y, r.w, r.h, grow=half), radius=rad + half,
                                    outline=r.stroke, width=max(1, round(2 * half)))

    def lines(self, a: Lines) -> None:
        pts = np.asarray(a.points, dtype=float)
        ok = np.isfinite(pts).all(axis=1)
        width = max(1, round(a.width * self.s))
        breaks = np.flatnonzero(~ok)
        for run in np.split(pts, breaks):
            run = run[np.isfinite(run).all(axis=1)]
            if len(run) < 2:
                continue
            for piece in (_dash_runs(run, a.dash) if a.dash else [run]):
                self.draw.line([self.px(x, y) for x, y in piece], fill=a.stroke, width=width, joint="curve")
        if a.arrow and ok.all() and len(pts) >= 2:
            end, d = pts[-1], pts[-1] - pts[-2]
            d = d / max(float(np.hypot(*d)), 1e-9)
            n = np.array([-d[1], d[0]])
            length = ARROW_HEAD * a.width
            tip, base = end + d * (1 - ARROW_REF) * length, end - d * ARROW_REF * length
            head = [tip, base + n * length / 2, base - n * length / 2]
            self.draw.polygon([self.px(x, y) for x, y in head], fill=ARROW_COLOUR)

    def label(self, t: Label) -> None:
        fonts = [_font(max(1, round(self.s * (SUB_SIZE if sub else t.size))), t.bold, t.italic) for _, sub in t.spans]
        widths = [f.getlength(s) for f, (s, _) in zip(fonts, t.spans)]
        x, y = self.px(t.x, t.y)
        x -= {"start": 0.0, "middle": 0.5, "end": 1.0}[t.anchor] * sum(widths)
        for f, w, (s, sub) in zip(fonts, widths, t.spans):
            self.draw.text((x, y + (SUB_SHIFT * SUB_SIZE * self.s if sub else 0.0)), s, fill=t.fill, font=f,
                           anchor="ls")
            x += w

    def thumb(self, t: Thumb) -> None:
        a, b, c, d = self.box(t.x, t.y, t.size, t.size)
        pic = Image.fromarray(_thumb_pixels(t)).resize((c - a + 1, d - b + 1), Image.Resampling.BILINEAR)
        self.img.paste(pic, (a, b))
        self.rect(Rect(t.x, t.y, t.size, t.size, None, FRAME_COLOUR, FRAME_WIDTH))

    def clip(self, c: Clip) -> None:
        a, b, r, d = self.box(c.x, c.y, c.w, c.h)
        a, b = max(a, 0), max(b, 0)
        r, d = min(r, self.img.width - 1), min(d, self.img.height - 1)
        if r < a or d < b:
            return
        sub = self.img.crop((a, b, r + 1, d + 1))
        _Painter(sub, self.s, self.ox + a, self.oy + b).items(c.items)
        self.img.paste(sub, (a, b))


def scene_image(scene: Scene, scale: float = PNG_SCALE, supersample: int = 3) -> np.ndarray:
    """The scene painted with Pillow: uint8 (round(height·scale), round(width·scale), 3).
    Shapes are drawn ``supersample``× larger and box-filtered down (smooth edges)."""
    if scale <= 0 or supersample < 1:
        raise ValueError(f"scale must be > 0 and supersample ≥ 1 (got {scale}, {supersample}).")
    w, h = max(1, round(scene.width * scale)), max(1, round(scene.height * scale))
    big = Image.new("RGB", (w * supersample, h * supersample), "#ffffff")
    _Painter(big, scale * supersample).items(scene.items)
    return np.asarray(big.reduce(supersample) if supersample > 1 else big)


def scene_png(scene: Scene, scale: float = PNG_SCALE, supersample: int = 3) -> bytes:
    """The scene as PNG file bytes, ``scale`` pixels per user unit (see :func:`scene_image`)."""
    buf = io.BytesIO()
    Image.fromarray(scene_image(scene, scale, supersample)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


# --------------------------------------------------------------------------- home-page schematic

THETA_LABEL: Spans = (("θ = f", False), ("loc", True), ("(U)", False))


def pipeline_scene(u: np.ndarray, grid: np.ndarray, v: np.ndarray, outline_pts: np.ndarray | None = None,
                   theta_label: Spans = THETA_LABEL, n_lines: int = 7) -> Scene:
    """The spatial transformer as a picture (paper Fig. 2): U → [localisation net → grid
    generator → sampler] → V, with real thumbnails: U, T_θ(G) drawn over U, and V.

    u ``(H, W, 3)`` square-ish thumbnail source, grid ``(H', W', 2)`` normalised, v ``(H', W', 3)``,
    outline_pts ``(M, 2)`` normalised; 1200×370 user units."""
    t = 190.0  # thumbnail size
    ty = 95.0  # thumbnail top
    xu, xl, xg, xv = 20.0, 285.0, 590.0, 990.0  # U, localisation net, grid generator, V
    xs = 818.0  # sampler box
    mid, below = ty + t / 2, ty + t + 32  # arrow height, caption baseline
    hh, ww = u.shape[:2]

    def to_thumb(points: np.ndarray) -> np.ndarray:
        p = norm_to_pixel(points, (hh, ww))
        return np.stack([xg + (p[:, 0] + 0.5) * t / ww, ty + (p[:, 1] + 0.5) * t / hh], 1)

    over_u: list = [Lines(to_thumb(grid_polylines(grid, None, n_lines)), GRID_COLOUR, 1.6)]
    if outline_pts is not None:
        over_u.append(Lines(to_thumb(outline_pts), OUTLINE_COLOUR, 3.5))
    layers = [Rect(xl + 18 + i * 20, ty + 95 - hgt / 2, 12, hgt, "#b7c7f0", "#5b7bd5", 1.0, rx=2)
              for i, hgt in enumerate((90, 66, 44, 22))]  # shrinking layers icon

    def arrow(*pts: tuple[float, float], colour: str = ARROW_COLOUR, width: float = 2.5,
              dash: tuple[float, ...] = ()) -> Lines:
        return Lines(np.array(pts, dtype=float), colour, width, dash, arrow=True)

    items = [
        Rect(255, 20, 705, 335, "#f5f8ff", "#5b7bd5", 2, rx=14, dash=(8, 5)),  # the spatial transformer
        Label(607, 50, _text("Spatial transformer"), 24, fill="#2f4fa8", bold=True),
        Thumb(u, xu, ty, t),
        Label(xu + t / 2, below, _text("U (input)"), 22, bold=True),
        Rect(xl, ty + 35, 240, 120, "#ffffff", "#333", 2, rx=10),  # localisation net
        Rect(xs, mid - 30, 118, 60, "#ffffff", "#333", 2, rx=10),  # sampler
        Label(xs + 59, mid + 7, _text("Sampler"), 21),
        *layers,
        Label(xl + 165, ty + 90, _text("Localisation"), 21),
        Label(xl + 165, ty + 115, (("net f", False), ("loc", True)), 21),
        Label(xl + 120, below, tuple(theta_label), 20),
        Thumb(u, xg, ty, t),  # grid generator: T_θ(G) over U
        Clip(xg, ty, t, t, tuple(over_u)),
        Label(xg + t / 2, below, (("Grid generator: T", False), ("θ", True), ("(G) on U", False)), 20),
        Thumb(v, xv, ty, t),
        Label(xv + t / 2, below, _text("V (output)"), 22, bold=True),
        arrow((xu + t + 4, ty + 95), (xl - 4, ty + 95)),  # U → localisation net
        arrow((xl + 244, ty + 95), (xg - 6, ty + 95)),  # θ → grid generator
        Label((xl + 244 + xg) / 2, ty + 85, _text("θ"), 24, fill="#333", italic=True),
        arrow((xg + t + 4, mid), (xs - 4, mid)),  # grid → sampler
        arrow((xs + 122, mid), (xv - 6, mid)),  # sampler → V
        arrow((xu + t / 2, ty + t + 44), (xu + t / 2, 342), (xs + 59, 342), (xs + 59, mid + 34),
              colour="#888", width=2, dash=(6, 4)),  # U → sampler, under the box
    ]
    return Scene(1200, 370, tuple(items))


def pipeline_svg(u: np.ndarray, grid: np.ndarray, v: np.ndarray, outline_pts: np.ndarray | None = None,
                 theta_label: Spans = THETA_LABEL, n_lines: int = 7) -> str:
    """:func:`pipeline_scene` as a self-contained ``<svg>`` string (1200×370); see :func:`svg_img_tag`."""
    return scene_svg(pipeline_scene(u, grid, v, outline_pts, theta_label, n_lines))


def pipeline_png(u: np.ndarray, grid: np.ndarray, v: np.ndarray, outline_pts: np.ndarray | None = None,
                 theta_label: Spans = THETA_LABEL, n_lines: int = 7, scale: float = PNG_SCALE) -> bytes:
    """:func:`pipeline_scene` as PNG bytes (1200·scale × 370·scale pixels), the same picture as the SVG."""
    return scene_png(pipeline_scene(u, grid, v, outline_pts, theta_label, n_lines), scale)


# --------------------------------------------------------------------------- thin-plate spline page

LATTICE_COLOUR = "#ffd400"
AFFINE_COLOUR = "#ff4b2b"


def _numbered_points(px: np.ndarray, name: str, colour: str = LATTICE_COLOUR, size: int = 22,
                     symbol: str = "circle") -> dict:
    """Numbered markers (1, 2, …) at pixel positions ``px (K, 2)``."""
    return _trace("scatter", x=px[:, 0], y=px[:, 1], mode="markers+text", name=name, hoverinfo="skip",
                      text=[str(i + 1) for i in range(px.shape[0])], textposition="middle center",
                      textfont=dict(size=FONT_SIZE - 4, color="black"),
                      marker=dict(color=colour, size=size, symbol=symbol, line=dict(color="black", width=1.5)))


def lattice_output_figure(output: np.ndarray, ctrl_out: np.ndarray, title: str = "Output V",
                          n_lines: int = 9, height: int | None = None) -> go.Figure:
    """The output V with the regular grid G and the numbered output control points ``ctrl_out
    (K, 2)`` (normalised): output point k is read from input point k."""
    h, w = output.shape[:2]
    ys = (np.arange(h) + 0.5) / h * 2 - 1
    xs = (np.arange(w) + 0.5) / w * 2 - 1
    g = np.stack(np.meshgrid(xs, ys), -1)
    traces = [image_trace(output, name="V"),
              _lines(norm_to_pixel(grid_polylines(g, None, n_lines), (h, w)), "regular grid G", GRID_COLOUR, 1.2,
                     opacity=0.6),
              _numbered_points(norm_to_pixel(np.asarray(ctrl_out), (h, w)), "output control points")]
    xr, yr = view_range((h, w), np.zeros((0, 2)), margin=0.07)
    return plot_figure(traces, title, xr, yr, height)


def affine_fit_figure(image: np.ndarray, grid: np.ndarray, mapped: np.ndarray, ctrl_in: np.ndarray,
                      title: str = "Best affine fit on U", n_lines: int = 9,
                      height: int | None = None) -> go.Figure:
    """The input U with the affine fit's sampling grid, where the affine map sends the lattice
    (``mapped (K, 2)``, numbered diamonds) and the dragged points ``ctrl_in (K, 2)`` (hollow circles):
    the gaps are what an affine map cannot follow. All coordinates normalised."""
    h, w = image.shape[:2]
    lines = norm_to_pixel(grid_polylines(grid, None, n_lines), (h, w))
    m_px = norm_to_pixel(np.asarray(mapped), (h, w))
    c_px = norm_to_pixel(np.asarray(ctrl_in), (h, w))
    gaps = np.full((3 * len(m_px), 2), np.nan)
    gaps[0::3], gaps[1::3] = m_px, c_px
    traces = [image_trace(image, name="U"), _lines(lines, "affine sampling grid", GRID_COLOUR, 1.6),
              _lines(gaps, "miss", AFFINE_COLOUR, 2.5),
              _trace("scatter", x=c_px[:, 0], y=c_px[:, 1], mode="markers", name="your points", hoverinfo="skip",
                         marker=dict(color="rgba(0,0,0,0)", size=18, line=dict(color=LATTICE_COLOUR, width=3))),
              _numbered_points(m_px, "where the affine fit puts them", AFFINE_COLOUR, size=20, symbol="diamond")]
    xr, yr = view_range((h, w), np.concatenate([lines, m_px, c_px], 0), max_extra=0.3, margin=0.05)
    return plot_figure(traces, title, xr, yr, height)


# --------------------------------------------------------------------------- sampler page

NEAREST_COLOUR = "#e8590c"
BILINEAR_COLOUR = "#1c7ed6"


def _plain_layout(title: str, height: int, **extra) -> dict:
    return dict(title=dict(text=title, font=dict(size=FONT_SIZE + 2), x=0.0, xanchor="left"), height=height,
                margin=dict(l=10, r=10, t=50, b=10), font=dict(size=FONT_SIZE), plot_bgcolor="#f3f3f3", **extra)


def image_panel(image: np.ndarray, title: str, height: int | None = None) -> go.Figure:
    """Just an image (crisp pixels, no legend, no axes): ``(H, W[, 3])`` float in [0, 1]."""
    h, w = image.shape[:2]
    xr, yr = view_range((h, w), np.zeros((0, 2)), margin=0.01)
    height = auto_height(xr, yr, plot_width=420, lo=220, hi=460, chrome=60) if height is None else height
    axis = dict(showgrid=False, zeroline=False, showticklabels=False, ticks="", constrain="domain")
    layout = dict(**_plain_layout(title, height, showlegend=False, dragmode="pan"),
                       xaxis=dict(range=list(xr), **axis), yaxis=dict(range=[yr[1], yr[0]], scaleanchor="x", **axis))
    return _figure([image_trace(image, name=title)], layout)


DIFF_SCALE = [[0.0, "#ffffff"], [0.15, "#ffd8a8"], [0.5, "#f76707"], [1.0, "#5c0a0a"]]


def heatmap_panel(values: np.ndarray, title: str, colorscale: str | list = DIFF_SCALE, zmin: float | None = None,
                  zmax: float | None = None, colorbar_title: str = "", height: int | None = None) -> go.Figure:
    """A heat map of ``values (H, W)`` drawn like an image (row 0 at the top, square pixels, colour bar)."""
    v = np.asarray(values, dtype=np.float64)
    h, w = v.shape
    xr, yr = view_range((h, w), np.zeros((0, 2)), margin=0.01)
    height = auto_height(xr, yr, plot_width=400, lo=220, hi=460, chrome=60) if height is None else height
    axis = dict(showgrid=False, zeroline=False, showticklabels=False, ticks="", constrain="domain")
    trace = _trace("heatmap", z=v, zmin=zmin, zmax=zmax, colorscale=colorscale, zsmooth=False,
                       colorbar=dict(title=dict(text=colorbar_title), thickness=14, len=0.9),
                       hovertemplate="row %{y}, column %{x}: %{z:.3g}<extra></extra>")
    layout = dict(**_plain_layout(title, height, showlegend=False, dragmode="pan"),
                       xaxis=dict(range=list(xr), **axis), yaxis=dict(range=[yr[1], yr[0]], scaleanchor="x", **axis))
    return _figure([trace], layout)


def gradient_pair_figure(gx: np.ndarray, gy: np.ndarray, title: str, height: int = 430) -> go.Figure:
    """∂V/∂x^s and ∂V/∂y^s side by side as heat maps with one symmetric colour scale (red +, blue −)."""
    lim = float(max(np.abs(gx).max(), np.abs(gy).max(), 1e-12))
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.06,
                        subplot_titles=("∂V/∂x<sup>s</sup>", "∂V/∂y<sup>s</sup>"))
    for c, v in enumerate((gx, gy), start=1):
        fig.add_trace(go.Heatmap(z=v, zmin=-lim, zmax=lim, colorscale="RdBu_r", zsmooth=False, showscale=c == 2,
                                 colorbar=dict(title=dict(text="per pixel"), thickness=14),
                                 hovertemplate="row %{y}, column %{x}: %{z:.3g}<extra></extra>"), row=1, col=c)
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain", row=1, col=c)
        fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed",
                         scaleanchor=f"x{'' if c == 1 else c}", constrain="domain", row=1, col=c)
    fig.update_annotations(font=dict(size=FONT_SIZE + 2))
    fig.update_layout(**_plain_layout(title, height, showlegend=False))
    fig.update_layout(margin=dict(l=10, r=10, t=80, b=10))
    return fig


def kernel_figure(curves: dict, height: int = 380) -> go.Figure:
    """The two sampling kernels k(d) (left) and their (sub)gradients dk/dx (right), d = x − m.
    ``curves``: :func:`pages.lab.sampler.kernel_curves`. Filled dots: the value the formula
    takes at a jump; hollow: the other side."""

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=("kernel k(d)", "its (sub)gradient ∂k(x − m)/∂x"))
    spec = [("bilinear", "bilinear: max(0, 1 − |d|)", BILINEAR_COLOUR, 1, "solid"),
            ("nearest", "nearest: δ(⌊x + ½⌋ − m)", NEAREST_COLOUR, 1, "dash"),
            ("bilinear_grad", "bilinear: the paper's g", BILINEAR_COLOUR, 2, "solid"),
            ("nearest_grad", "nearest: 0 everywhere", NEAREST_COLOUR, 2, "dash")]
    for key, name, colour, col, dash in spec:
        c = curves[key]
        fig.add_trace(go.Scatter(x=c.x, y=c.y, mode="lines", name=name, line=dict(color=colour, width=4, dash=dash),
                                 connectgaps=False, hoverinfo="skip", legendgroup=key), row=1, col=col)
        for x, y, taken in c.dots:
            fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers", showlegend=False, hoverinfo="skip",
                                     marker=dict(size=11, color=colour if taken else "white",
                                                 line=dict(color=colour, width=2.5))), row=1, col=col)
    for col in (1, 2):
        fig.update_xaxes(title_text="d = x − m (pixels)", zeroline=True, zerolinecolor="#999", dtick=0.5,
                         row=1, col=col)
        fig.update_yaxes(zeroline=True, zerolinecolor="#999", row=1, col=col)
    fig.update_yaxes(range=[-0.15, 1.15], row=1, col=1)
    fig.update_yaxes(range=[-1.3, 1.3], row=1, col=2)
    fig.update_annotations(font=dict(size=FONT_SIZE + 2))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), font=dict(size=FONT_SIZE),
                      plot_bgcolor="#fafafa",
                      legend=dict(orientation="h", yanchor="top", y=-0.22, x=0.0, font=dict(size=FONT_SIZE - 1)))
    return fig


def zoom_figure(z, title: str | None = None, height: int = 640) -> go.Figure:
    """The zoom onto one output pixel (``pages.lab.sampler.Zoom``): the input pixels around its
    source point (values written in), the 4 pixels bilinear reads (blue, with weights), the one
    nearest reads (orange), the source point (×) and those of the 8 neighbouring output pixels (dots).
    Axes in input pixel indices (m: column, n: row)."""
    size = z.patch.shape[0]
    uri, k = display_uri(z.patch, exact=True)  # the pixel values are the lesson: lossless
    traces: list = [_trace("image", source=uri, x0=z.m0 - 0.5 + 0.5 / k, y0=z.n0 - 0.5 + 0.5 / k, dx=1.0 / k, dy=1.0 / k,
                             hoverinfo="skip", name="U")]
    grey = z.patch.mean(-1)
    xs, ys, texts, colours = [], [], [], []
    for a in range(size):
        for b in range(size):
            xs.append(z.m0 + b)
            ys.append(z.n0 + a + 0.27)
            texts.append(f"{grey[a, b]:.2f}")
            colours.append("black" if grey[a, b] > 0.55 else "white")
    traces.append(_trace("scatter", x=xs, y=ys, mode="text", text=texts, textfont=dict(size=FONT_SIZE - 3, color=colours),
                             hoverinfo="skip", showlegend=False))

    def square(m: int, n: int, inset: float) -> tuple[list[float], list[float]]:
        lo, hi = -0.5 + inset, 0.5 - inset
        return [m + lo, m + hi, m + hi, m + lo, m + lo, None], [n + lo, n + lo, n + hi, n + hi, n + lo, None]

    bx, by = [], []
    for r in z.bilinear:
        sx, sy = square(r.m, r.n, 0.06)
        bx += sx
        by += sy
    traces.append(_trace("scatter", x=bx, y=by, mode="lines", name="bilinear reads (weight)",
                             line=dict(color=BILINEAR_COLOUR, width=5), hoverinfo="skip"))
    # weight labels (boxed, readable on any pixel) on the side of each pixel away from the source point
    labels = [dict(x=r.m + 0.1 * (1.0 if r.m >= z.x else -1.0), y=r.n - 0.2 if r.n <= z.y else r.n - 0.02,
                   text=f"<b>{r.weight:.2f}</b>", showarrow=False, bgcolor="rgba(255,255,255,0.9)",
                   bordercolor=BILINEAR_COLOUR, borderwidth=1.5, borderpad=2,
                   font=dict(size=FONT_SIZE, color=BILINEAR_COLOUR)) for r in z.bilinear]
    nx, ny = square(z.nearest.m, z.nearest.n, 0.16)
    traces.append(_trace("scatter", x=nx, y=ny, mode="lines", name="nearest reads (weight 1)",
                             line=dict(color=NEAREST_COLOUR, width=4, dash="dot"), hoverinfo="skip"))
    nb = z.sources.reshape(-1, 2)
    traces.append(_trace("scatter", x=nb[:, 0], y=nb[:, 1], mode="markers", name="source points of the 3×3 output pixels",
                             marker=dict(size=9, color="#00d8ff", line=dict(color="black", width=1)), hoverinfo="skip"))
    traces.append(_trace("scatter", x=[z.x], y=[z.y], mode="markers", name=f"(x<sup>s</sup>, y<sup>s</sup>) of pixel "
                             f"({z.i}, {z.j})", hoverinfo="skip", opacity=0.9,
                             marker=dict(size=15, symbol="x", color=CORNER_COLOUR, line=dict(color="black", width=1.5))))
    axis = dict(showgrid=False, zeroline=False, dtick=1, ticks="outside", constrain="domain")
    lo_x, lo_y = z.m0 - 0.5, z.n0 - 0.5
    layout = dict(**_plain_layout(title or f"Output pixel (row {z.i}, column {z.j}) reads from the input",
                                       height, showlegend=True, dragmode=False),
                       legend=dict(orientation="v", yanchor="top", y=-0.1, x=0.0, font=dict(size=FONT_SIZE - 2)),
                       xaxis=dict(range=[lo_x, lo_x + size], title=dict(text="column m"), **axis),
                       yaxis=dict(range=[lo_y + size, lo_y], scaleanchor="x", title=dict(text="row n"), **axis))
    layout["margin"] = dict(l=60, r=10, t=50, b=10)
    layout["annotations"] = labels
    return _figure(traces, layout)


def loss_figure(runs: dict, height: int = 360) -> go.Figure:
    """Loss per step for each run (``{mode: AlignRun}``), log scale."""
    traces = []
    for mode, run in runs.items():
        colour = BILINEAR_COLOUR if mode == "bilinear" else NEAREST_COLOUR
        traces.append(_trace("scatter", x=np.arange(len(run.losses)), y=np.maximum(run.losses, 1e-12), mode="lines",
                                 name=mode, line=dict(color=colour, width=4, dash="solid" if mode == "bilinear" else "dash")))
    layout = dict(**_plain_layout("Loss (MSE to the template)", height, showlegend=True),
                       xaxis=dict(title=dict(text="step")),
                       yaxis=dict(type="log", dtick=1, exponentformat="power", title=dict(text="loss")),
                       legend=dict(orientation="v", yanchor="top", y=0.98, x=0.98, xanchor="right",
                                   bgcolor="rgba(255,255,255,0.8)"))
    return _figure(traces, layout)


def theta_figure(runs: dict, target: np.ndarray, height: int = 420) -> go.Figure:
    """θ11 … θ23 per step for each run, with the θ that undoes the motion dotted."""
    names = ["θ11", "θ12", "θ13", "θ21", "θ22", "θ23"]
    fig = make_subplots(rows=2, cols=3, subplot_titles=names, horizontal_spacing=0.07, vertical_spacing=0.16)
    for p in range(6):
        r, c = p // 3 + 1, p % 3 + 1
        for mode, run in runs.items():
            colour = BILINEAR_COLOUR if mode == "bilinear" else NEAREST_COLOUR
            fig.add_trace(go.Scatter(x=np.arange(run.thetas.shape[0]), y=run.thetas[:, p], mode="lines", name=mode,
                                     legendgroup=mode, showlegend=p == 0,
                                     line=dict(color=colour, width=3.5, dash="solid" if mode == "bilinear" else "dash")),
                          row=r, col=c)
        fig.add_trace(go.Scatter(x=[0, run.thetas.shape[0] - 1], y=[target[p]] * 2, mode="lines", name="θ that undoes it",
                                 legendgroup="target", showlegend=p == 0, line=dict(color="#2b8a3e", width=2, dash="dot")),
                      row=r, col=c)
    fig.update_annotations(font=dict(size=FONT_SIZE))
    fig.update_layout(**_plain_layout("θ during the optimisation", height, showlegend=True),
                      legend=dict(orientation="h", yanchor="bottom", y=1.06, x=1.0, xanchor="right"))
    return fig


# --------------------------------------------------------------------------- trained model explorer

CORRECT_COLOUR = "#2b8a3e"
WRONG_COLOUR = "#c92a2a"
MODEL_COLOUR = "#1c7ed6"
CONTRAST_COLOUR = "#adb5bd"


def region_figure(image: np.ndarray, region: np.ndarray | None, grid: np.ndarray | None = None,
                  ctrl: np.ndarray | None = None, title: str = "Sampled region", n_lines: int = 7,
                  height: int | None = None) -> go.Figure:
    """Figure 1(b) of the paper: the input ``(S, S[, 3])`` with the region a spatial transformer
    samples. ``region (M, 2)``: the output square's border mapped into the input (normalised, NaN
    breaks; the quadrilateral for affine/projective); ``grid (S', S', 2)``: optional sampling grid
    drawn as ``n_lines`` warped lines (TPS); ``ctrl (K, 2)``: optional TPS control points."""
    h, w = image.shape[:2]
    traces: list = [image_trace(image, name="input")]
    pts = [np.zeros((0, 2))]
    if grid is not None:
        lines = norm_to_pixel(grid_polylines(grid, None, n_lines), (h, w))
        traces.append(_lines(lines, "sampling grid", GRID_COLOUR, 1.6))
        pts.append(lines)
    if region is not None:
        ol = norm_to_pixel(region, (h, w))
        traces.append(_lines(ol, "sampled region", OUTLINE_COLOUR, 4))
        pts.append(ol)
        if np.isfinite(ol[0]).all():
            traces.append(_corner(float(ol[0, 0]), float(ol[0, 1]), "output's top-left corner"))
    if ctrl is not None:
        c = norm_to_pixel(np.asarray(ctrl), (h, w))
        traces.append(_trace("scatter", x=c[:, 0], y=c[:, 1], mode="markers", name="control points", hoverinfo="skip",
                                 marker=dict(color=LATTICE_COLOUR, size=9, line=dict(color="black", width=1))))
    xr, yr = view_range((h, w), np.concatenate(pts, 0), max_extra=0.35, margin=0.01)
    height = auto_height(xr, yr, plot_width=330, lo=220, hi=420, chrome=60) if height is None else height
    axis = dict(showgrid=False, zeroline=False, showticklabels=False, ticks="", constrain="domain")
    layout = dict(**_plain_layout(title, height, showlegend=False, dragmode="pan"),
                       xaxis=dict(range=list(xr), **axis), yaxis=dict(range=[yr[1], yr[0]], scaleanchor="x", **axis))
    return _figure(traces, layout)


def probability_figure(series: list[tuple[str, np.ndarray]], classes: list[str] | None = None,
                       true_label: int | None = None, title: str = "Class probabilities",
                       height: int = 360) -> go.Figure:
    """Grouped bars of class probabilities: ``series`` = [(name, probs (C,)), ...]; the first is
    drawn in blue, the others in grey. Each series' top class is labelled with its percentage, unless
    an earlier series' top is the same class (side-by-side labels would overlap; hover shows it);
    the true class (if known) is marked under the axis."""
    n = len(series[0][1]) if series else 10
    classes = [str(i) for i in range(n)] if classes is None else list(classes)
    traces, labelled = [], set()
    for i, (name, probs) in enumerate(series):
        p = np.asarray(probs, dtype=np.float64)
        top = int(p.argmax())
        text = [f"{100 * v:.0f}%" if j == top and j not in labelled else "" for j, v in enumerate(p)]
        labelled.add(top)
        traces.append(_trace("bar", x=classes, y=p, name=name, text=text, textposition="outside", cliponaxis=False,
                             constraintext="none",
                             textfont=dict(size=FONT_SIZE, color="#222"),
                             marker=dict(color=MODEL_COLOUR if i == 0 else CONTRAST_COLOUR),
                             hovertemplate=f"{name}<br>class %{{x}}: %{{y:.3f}}<extra></extra>"))
    ticks = [f"<b>{c}</b>" if true_label is not None and j == true_label else c for j, c in enumerate(classes)]
    layout = dict(**_plain_layout(title, height, showlegend=len(series) > 1, barmode="group", bargap=0.25),
                       xaxis=dict(type="category", tickmode="array", tickvals=classes, ticktext=ticks,
                                  tickfont=dict(size=FONT_SIZE + 2),
                                  # below the "true" mark when there is one (it sits 30 px under the axis)
                                  title=dict(text="class", standoff=30 if true_label is not None else 10)),
                       yaxis=dict(range=[0, 1.12], tickformat=".0%", dtick=0.25, title=dict(text="probability")),
                       legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0,
                                   font=dict(size=FONT_SIZE - 1)))
    layout["plot_bgcolor"] = "#ffffff"
    if true_label is not None:
        layout["annotations"] = [dict(x=classes[true_label], y=-0.02, yref="paper", yanchor="top", yshift=-30,
                                   text="true", showarrow=False, font=dict(size=FONT_SIZE - 2, color=CORRECT_COLOUR))]
    return _figure(traces, layout)


def figure1_gallery_scene(inputs: list[np.ndarray], preds: list[int], confidences: list[float],
                          labels: list[int | None], regions: list[np.ndarray | None] | None = None,
                          outputs: list[np.ndarray | None] | None = None,
                          grids: list[np.ndarray | None] | None = None,
                          captions: list[str] | None = None, cell: float = 118.0) -> Scene:
    """The paper's Figure 1 for a batch of digits: one column per digit, rows (a) input,
    (b) the sampled region drawn on the input, (c) the transformer's output, (d) the prediction
    (green if right, red if wrong, with its probability and the true class).
    ``regions``/``outputs`` None (no transformer): rows (a) and (d) only. Images are grey ``(S, S)``
    in [0, 1]; regions ``(M, 2)`` and grids ``(S, S, 2)`` normalised (grids: TPS warped lines)."""
    n = len(inputs)
    with_st = regions is not None and outputs is not None
    row_names = (["(a) input", "(b) region", "(c) output", "(d) prediction"] if with_st
                 else ["(a) input", "(d) prediction"])
    gap, left, top = 10.0, 128.0, 30.0 if captions else 8.0
    pitch = cell + gap
    items: list = []
    for r, name in enumerate(row_names):
        y = top + r * pitch + cell / 2
        label, part = name.split(" ", 1)
        items += [Label(left - 12, y - 4, _text(label), 22, anchor="end", bold=True),
                  Label(left - 12, y + 20, _text(part), 18, fill="#444", anchor="end")]
    for i in range(n):
        x0 = left + i * pitch
        img = np.asarray(inputs[i])
        hh, ww = img.shape[:2]
        if captions:
            items.append(Label(x0 + cell / 2, top - 9, _text(str(captions[i])), 19, fill="#555"))
        rows = [("img", img)]
        if with_st:
            rows += [("region", img), ("img", outputs[i])]
        for r, (what, im) in enumerate(rows):
            y0 = top + r * pitch
            if im is None:
                continue
            items.append(Thumb(np.asarray(im), x0, y0, cell))
            if what == "region":
                def to_cell(points: np.ndarray) -> np.ndarray:
                    p = norm_to_pixel(points, (hh, ww))
                    return np.stack([x0 + (p[:, 0] + 0.5) * cell / ww, y0 + (p[:, 1] + 0.5) * cell / hh], 1)
                drawn = []
                if grids is not None and grids[i] is not None:
                    drawn.append(Lines(to_cell(grid_polylines(grids[i], None, 5)), GRID_COLOUR, 1.2))
                if regions[i] is not None:
                    drawn.append(Lines(to_cell(regions[i]), OUTLINE_COLOUR, 3.0))
                items.append(Clip(x0, y0, cell, cell, tuple(drawn)))
        y0 = top + (len(row_names) - 1) * pitch
        lab = labels[i]
        ok = lab is None or int(lab) == int(preds[i])
        colour = CORRECT_COLOUR if lab is not None and ok else (WRONG_COLOUR if not ok else "#222")
        fill = "#ebfbee" if lab is not None and ok else ("#fff5f5" if not ok else "#f8f9fa")
        items += [Rect(x0, y0, cell, cell, fill, colour, 2, rx=8),
                  Label(x0 + cell / 2, y0 + 0.5 * cell, _text(str(int(preds[i]))), 52, fill=colour, bold=True),
                  Label(x0 + cell / 2, y0 + 0.5 * cell + 27, _text(f"{100 * float(confidences[i]):.0f} %"), 21,
                        fill="#333")]
        if lab is not None:
            items.append(Label(x0 + cell / 2, y0 + 0.5 * cell + 50, _text(f"true {int(lab)}"), 19, fill="#555"))
    return Scene(left + n * pitch + gap, top + len(row_names) * pitch + 4, tuple(items))


def figure1_gallery_svg(*args, **kwargs) -> str:
    """:func:`figure1_gallery_scene` (same arguments) as a self-contained ``<svg>`` string."""
    return scene_svg(figure1_gallery_scene(*args, **kwargs))


def figure1_gallery_png(*args, scale: float = PNG_SCALE, **kwargs) -> bytes:
    """:func:`figure1_gallery_scene` (same arguments) as PNG bytes, the same picture as the SVG."""
    return scene_png(figure1_gallery_scene(*args, **kwargs), scale)


# --------------------------------------------------------------------------- Figure 1 for one digit

def _square_view(h: int, w: int, points: np.ndarray, max_extra: float = 0.35) -> tuple[float, float, float]:
    """A square view (x0, y0, side) in pixel units covering the image and ``points`` (at most ``max_extra``
    image sizes beyond each side), centred on the covered box."""
    (x0, x1), (y0, y1) = view_range((h, w), points, max_extra=max_extra, margin=0.0)
    side = max(x1 - x0, y1 - y0)
    return (x0 + x1 - side) / 2, (y0 + y1 - side) / 2, side


def _dot(x: float, y: float, d: float, fill: str) -> Rect:
    """A round marker of diameter ``d`` centred on (x, y), black rim."""
    return Rect(x - d / 2, y - d / 2, d, d, fill, "#000", 1.2, rx=d / 2)


def _region_panel(image: np.ndarray, x: float, y: float, size: float, region: np.ndarray | None,
                  grid: np.ndarray | None, ctrl: np.ndarray | None, n_lines: int) -> list:
    """Figure 1(b) in the square (x, y, size): the input ``(S, S)`` with the sampled region (red), the TPS grid
    (cyan) and control points; the view grows past the input to show the region (grey outside it)."""
    h, w = image.shape[:2]
    lines = norm_to_pixel(grid_polylines(grid, None, n_lines), (h, w)) if grid is not None else None
    ol = norm_to_pixel(region, (h, w)) if region is not None else None
    vx, vy, side = _square_view(h, w, np.concatenate([np.zeros((0, 2))] + [p for p in (lines, ol) if p is not None]))
    s = size / side

    def at(p: np.ndarray) -> np.ndarray:  # pixel centres → scene units
        return np.stack([x + (p[:, 0] - vx) * s, y + (p[:, 1] - vy) * s], 1)

    drawn: list = [Rect(x, y, size, size, "#e9ecef"),
                   Thumb(np.asarray(image), x + (-0.5 - vx) * s, y + (-0.5 - vy) * s, w * s)]
    if lines is not None:
        drawn.append(Lines(at(lines), GRID_COLOUR, 1.6))
    if ol is not None:
        drawn.append(Lines(at(ol), OUTLINE_COLOUR, 3.5))
        if np.isfinite(ol[0]).all():
            drawn.append(_dot(*at(ol[:1])[0], 13, CORNER_COLOUR))
    if ctrl is not None:
        drawn += [_dot(cx, cy, 9, LATTICE_COLOUR) for cx, cy in at(norm_to_pixel(np.asarray(ctrl), (h, w)))]
    return [Clip(x, y, size, size, tuple(drawn)), Rect(x, y, size, size, None, FRAME_COLOUR, FRAME_WIDTH)]


def _probability_bars(series: list[tuple[str, np.ndarray]], classes: list[str], true_label: int | None,
                      x: float, y: float, w: float, h: float) -> list:
    """Grouped class-probability bars in the box (x, y, w, h): axis 0–100 %, one group per class, the first
    series blue and the others grey, its top class labelled, the true class marked, a legend for two or more."""
    items: list = []
    ax0, ax1 = x + 58.0, x + w - 4.0
    ay0, ay1 = y + 50.0, y + h - 40.0        # value 1.0 at ay0, 0 at ay1
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        yy = ay1 - v * (ay1 - ay0)
        items += [Lines(np.array([[ax0, yy], [ax1, yy]]), "#dee2e6" if v else "#868e96", 1.0),
                  Label(ax0 - 6, yy + 5, _text(f"{100 * v:.0f}%"), 18, fill="#555", anchor="end")]
    slot = (ax1 - ax0) / max(len(classes), 1)
    bar = 0.75 * slot / max(len(series), 1)
    for j, c in enumerate(classes):
        cx = ax0 + (j + 0.5) * slot
        is_true = true_label is not None and j == true_label
        items.append(Label(cx, ay1 + 22, _text(c), 20, fill=CORRECT_COLOUR if is_true else "#222", bold=is_true))
        if is_true:
            items.append(Label(cx, ay1 + 39, _text("true"), 15, fill=CORRECT_COLOUR))
    for i, (_name, probs) in enumerate(series):
        p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0)
        top_j = int(p.argmax())
        for j, v in enumerate(p):
            bx = ax0 + j * slot + (slot - bar * len(series)) / 2 + i * bar
            hgt = v * (ay1 - ay0)
            if hgt > 0.2:
                items.append(Rect(bx, ay1 - hgt, bar, hgt, MODEL_COLOUR if i == 0 else CONTRAST_COLOUR))
            if j == top_j and i == 0:  # the model's top class (a second label would overlap it)
                items.append(Label(bx + bar / 2, ay1 - hgt - 5, _text(f"{100 * v:.0f}%"), 18, fill="#222"))
    if len(series) > 1:  # legend, right-aligned above the plot
        lx = ax1
        for i, (name, _p) in reversed(list(enumerate(series))):
            items.append(Label(lx, y + 15, _text(name), 18, fill="#333", anchor="end"))
            lx -= _font(18).getlength(name) + 6  # the label's width (Helvetica-metric font) and a gap
            items.append(Rect(lx - 14, y + 2, 14, 14, MODEL_COLOUR if i == 0 else CONTRAST_COLOUR))
            lx -= 32
    return items


def figure1_digit_scene(image: np.ndarray, series: list[tuple[str, np.ndarray]], titles: tuple[str, ...],
                        region: np.ndarray | None = None, output: np.ndarray | None = None,
                        grid: np.ndarray | None = None, ctrl: np.ndarray | None = None,
                        classes: list[str] | None = None, true_label: int | None = None,
                        panel: float = 270.0, n_lines: int = 7) -> Scene:
    """The paper's Figure 1 for one digit, as one picture: (a) the input ``(S, S)``, (b) the region the
    transformer samples drawn on it (``region (M, 2)``: the output square's border, normalised, NaN breaks;
    ``grid (S', S', 2)``: TPS sampling grid as ``n_lines`` warped lines; ``ctrl (K, 2)``: TPS control points;
    the view grows up to 0.35 image sizes past the input, grey outside it), (c) the transformer's output, (d)
    grouped class-probability bars for ``series`` = [(name, probs (C,)), …], the first blue, the others grey,
    the first series' top class labelled with its percentage and the true class marked. ``titles``: one per
    panel drawn; without ``output`` only (a) and (d) are drawn."""
    top, gap, title_size = 34.0, 22.0, 24.0
    n_img = 3 if output is not None else 1
    n = len(series[0][1]) if series else 10
    classes = [str(i) for i in range(n)] if classes is None else [str(c) for c in classes]
    bars_w = 1.75 * panel
    items: list = []
    for k in range(n_img + 1):
        x = k * (panel + gap)
        width = panel if k < n_img else bars_w
        items.append(Label(x + width / 2, top - 11, _text(titles[k] if k < len(titles) else "prediction"),
                           title_size, fill="#222"))
        if k == n_img:
            items += _probability_bars(series, classes, true_label, x, top, bars_w, panel)
        elif k == 1:
            items += _region_panel(image, x, top, panel, region, grid, ctrl, n_lines)
        else:
            items.append(Thumb(np.asarray(image if k == 0 else output), x, top, panel))
    return Scene(n_img * (panel + gap) + bars_w, top + panel + 6, tuple(items))

