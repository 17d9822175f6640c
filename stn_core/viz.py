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

import numpy as np
import plotly.graph_objects as go
from PIL import Image

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


def display_image(image: np.ndarray, empty: np.ndarray | None = None, target: int = 448) -> tuple[np.ndarray, int]:
    """Image for display: uint8, nearest-upscaled by k (returned), empty pixels as a checkerboard."""
    rgb = to_uint8(image)
    k = display_factor(rgb.shape[0], rgb.shape[1], target)
    big = upscale_nearest(rgb, k)
    if empty is not None and empty.any():
        big = checker_fill(big, upscale_nearest(empty[:, :, None], k)[:, :, 0], cell=max(4, k * 2 if k > 1 else 8))
    return big, k


def png_data_uri(rgb: np.ndarray) -> str:
    """uint8 (H, W, 3) → "data:image/png;base64,..." (fast compression)."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(rgb)).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_URI_CACHE: OrderedDict[bytes, tuple[str, int]] = OrderedDict()
_URI_CACHE_SIZE = 16


def display_uri(image: np.ndarray, empty: np.ndarray | None = None) -> tuple[str, int]:
    """PNG data URI of :func:`display_image` and its upscale factor, memoised on the pixels
    (the input U is re-sent unchanged on most redraws, so its encoding is reused)."""
    rgb = to_uint8(image)
    h = hashlib.blake2b(rgb.tobytes(), digest_size=16)
    h.update(repr(rgb.shape).encode())
    if empty is not None and empty.any():
        h.update(np.packbits(empty).tobytes())
    key = h.digest()
    hit = _URI_CACHE.get(key)
    if hit is not None:
        _URI_CACHE.move_to_end(key)
        return hit
    big, k = display_image(rgb, empty)
    out = (png_data_uri(big), k)
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

def _image_trace(image: np.ndarray, empty: np.ndarray | None = None, name: str = "image") -> go.Image:
    """An image trace in pixel coordinates of the *original* image, shown nearest-upscaled
    (small images) and drawn without smoothing (``zsmooth=False``), so pixels stay crisp."""
    uri, k = display_uri(image, empty)
    return go.Image(source=uri, x0=-0.5 + 0.5 / k, y0=-0.5 + 0.5 / k, dx=1.0 / k, dy=1.0 / k,
                    zsmooth=False, name=name, hoverinfo="skip")


def auto_height(xr: tuple[float, float], yr: tuple[float, float], plot_width: int = 500,
                lo: int = 260, hi: int = 560, chrome: int = 110) -> int:
    """Figure height (px) that fits the view's aspect for a plot about ``plot_width`` px wide,
    plus ``chrome`` for the title and legend."""
    aspect = (yr[1] - yr[0]) / max(1e-9, xr[1] - xr[0])
    return int(round(min(hi, max(lo, plot_width * aspect)))) + chrome


def _figure(traces: list, title: str, xr: tuple[float, float], yr: tuple[float, float],
            height: int | None) -> go.Figure:
    """One figure from traces and the shared layout, built in a single constructor call
    (several times faster than ``update_layout``; this runs on every redraw)."""
    height = auto_height(xr, yr) if height is None else height
    axis = dict(showgrid=False, zeroline=False, showticklabels=False, ticks="", constrain="domain")
    layout = go.Layout(
        title=dict(text=title, font=dict(size=FONT_SIZE + 4), x=0.0, xanchor="left"),
        height=height, margin=dict(l=10, r=10, t=50, b=10), font=dict(size=FONT_SIZE),
        showlegend=True, dragmode="pan", plot_bgcolor="#f3f3f3",
        legend=dict(orientation="h", yanchor="top", y=-0.02, xanchor="left", x=0.0, font=dict(size=FONT_SIZE - 1)),
        xaxis=dict(range=list(xr), **axis),
        yaxis=dict(range=[yr[1], yr[0]], scaleanchor="x", scaleratio=1.0, **axis),
    )
    return go.Figure(data=traces, layout=layout)


def _lines(points: np.ndarray, name: str, colour: str, width: float, opacity: float = 1.0) -> go.Scatter:
    return go.Scatter(x=points[:, 0], y=points[:, 1], mode="lines", name=name, opacity=opacity,
                      line=dict(color=colour, width=width), hoverinfo="skip", connectgaps=False)


def _corner(x: float, y: float, name: str) -> go.Scatter:
    return go.Scatter(x=[x], y=[y], mode="markers", name=name, hoverinfo="skip",
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
    traces = [_image_trace(image, name="U"), _lines(lines, "sampling grid T<sub>θ</sub>(G)", GRID_COLOUR, 1.6)]
    pts_for_range = lines
    if outline_pts is not None:
        ol = norm_to_pixel(outline_pts, (h, w))
        traces.append(_lines(ol, "output border", OUTLINE_COLOUR, 4))
        pts_for_range = np.concatenate([lines, ol], 0)
        if np.isfinite(ol[0]).all():
            traces.append(_corner(float(ol[0, 0]), float(ol[0, 1]), "V's top-left corner"))
    xr, yr = view_range((h, w), pts_for_range)
    return _figure(traces, title, xr, yr, height)


def output_figure(output: np.ndarray, valid: np.ndarray | None = None, n_lines: int = 9, show_grid: bool = True,
                  title: str = "Output V", height: int | None = None) -> go.Figure:
    """The output V (nearest-upscaled for display; invalid pixels as a checkerboard), with the
    regular grid G it was sampled on (the same n_lines lines as on the input)."""
    h, w = output.shape[:2]
    empty = None if valid is None else ~np.asarray(valid, bool)
    traces = [_image_trace(output, empty, name="V")]
    if show_grid:
        ys = (np.arange(h) + 0.5) / h * 2 - 1
        xs = (np.arange(w) + 0.5) / w * 2 - 1
        g = np.stack(np.meshgrid(xs, ys), -1)
        traces.append(_lines(norm_to_pixel(grid_polylines(g, None, n_lines), (h, w)), "regular grid G",
                             GRID_COLOUR, 1.2, opacity=0.6))
    border = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5], [-0.5, -0.5]])
    traces += [_lines(border, "output border", OUTLINE_COLOUR, 4), _corner(-0.5, -0.5, "top-left corner")]
    xr, yr = view_range((h, w), np.zeros((0, 2)))
    return _figure(traces, title, xr, yr, height)


# --------------------------------------------------------------------------- home-page schematic

def _svg_polyline(points: np.ndarray, colour: str, width: float, dash: str = "") -> str:
    """SVG polylines for points (M, 2) with NaN breaks."""
    out, run = [], []
    for x, y in list(points) + [(math.nan, math.nan)]:
        if math.isfinite(x) and math.isfinite(y):
            run.append(f"{x:.1f},{y:.1f}")
        elif run:
            if len(run) > 1:
                extra = f' stroke-dasharray="{dash}"' if dash else ""
                out.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" '
                           f'stroke-width="{width}"{extra}/>')
            run = []
    return "".join(out)


def _svg_thumb(image: np.ndarray, x: float, y: float, size: float, empty: np.ndarray | None = None) -> str:
    big, _ = display_image(image, empty, target=256)
    return (f'<image x="{x}" y="{y}" width="{size}" height="{size}" preserveAspectRatio="none" '
            f'href="{png_data_uri(big)}"/>'
            f'<rect x="{x}" y="{y}" width="{size}" height="{size}" fill="none" stroke="#444" stroke-width="1.5"/>')


def pipeline_svg(u: np.ndarray, grid: np.ndarray, v: np.ndarray, outline_pts: np.ndarray | None = None,
                 theta_text: str = "θ = f<tspan baseline-shift='sub' font-size='15'>loc</tspan>(U)",
                 n_lines: int = 7) -> str:
    """The spatial transformer as a picture (paper Fig. 2): U → [localisation net → grid
    generator → sampler] → V, with real thumbnails: U, T_θ(G) drawn over U, and V.

    u ``(H, W, 3)`` square-ish thumbnail source, grid ``(H', W', 2)`` normalised, v ``(H', W', 3)``;
    theta_text is SVG text content (may hold <tspan>; escape user text yourself).
    Returns a self-contained ``<svg>`` string (1200×370 user units); see :func:`svg_img_tag`."""
    t = 190.0  # thumbnail size
    ty = 95.0  # thumbnail top
    xu, xl, xg, xv = 20.0, 285.0, 590.0, 990.0
    xs = 818.0  # sampler box
    hh, ww = u.shape[:2]

    def to_thumb(points: np.ndarray) -> np.ndarray:
        p = norm_to_pixel(points, (hh, ww))
        return np.stack([xg + (p[:, 0] + 0.5) * t / ww, ty + (p[:, 1] + 0.5) * t / hh], 1)

    grid_pts = to_thumb(grid_polylines(grid, None, n_lines))
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1200 370" width="1200" height="370" '
        'font-family="Source Sans Pro, Helvetica, Arial, sans-serif">',
        '<defs><marker id="stnarrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#333"/></marker></defs>',
        '<rect width="1200" height="370" fill="#ffffff"/>',
        # spatial transformer box
        '<rect x="255" y="20" width="705" height="335" rx="14" fill="#f5f8ff" stroke="#5b7bd5" '
        'stroke-width="2" stroke-dasharray="8 5"/>',
        '<text x="607" y="50" text-anchor="middle" font-size="24" font-weight="bold" fill="#2f4fa8">'
        'Spatial transformer</text>',
        # U
        _svg_thumb(u, xu, ty, t),
        f'<text x="{xu + t / 2}" y="{ty + t + 32}" text-anchor="middle" font-size="22" font-weight="bold" '
        'fill="#222">U (input)</text>',
        # localisation net
        f'<rect x="{xl}" y="{ty + 35}" width="240" height="120" rx="10" fill="#ffffff" stroke="#333" '
        'stroke-width="2"/>',
        # sampler
        f'<rect x="{xs}" y="{ty + t / 2 - 30}" width="118" height="60" rx="10" fill="#ffffff" stroke="#333" '
        'stroke-width="2"/>',
        f'<text x="{xs + 59}" y="{ty + t / 2 + 7}" text-anchor="middle" font-size="21" fill="#222">Sampler</text>',
    ]
    for i, hgt in enumerate((90, 66, 44, 22)):  # shrinking layers icon
        cx = xl + 18 + i * 20
        parts.append(f'<rect x="{cx}" y="{ty + 95 - hgt / 2}" width="12" height="{hgt}" rx="2" '
                     'fill="#b7c7f0" stroke="#5b7bd5"/>')
    parts += [
        f'<text x="{xl + 165}" y="{ty + 90}" text-anchor="middle" font-size="21" fill="#222">Localisation</text>',
        f'<text x="{xl + 165}" y="{ty + 115}" text-anchor="middle" font-size="21" fill="#222">'
        'net f<tspan baseline-shift="sub" font-size="15">loc</tspan></text>',
        f'<text x="{xl + 120}" y="{ty + t + 32}" text-anchor="middle" font-size="20" fill="#222">'
        f'{theta_text}</text>',
        # grid generator + sampler thumbnail
        _svg_thumb(u, xg, ty, t),
        f'<clipPath id="stnclip"><rect x="{xg}" y="{ty}" width="{t}" height="{t}"/></clipPath>',
        '<g clip-path="url(#stnclip)">',
        _svg_polyline(grid_pts, "#00d8ff", 1.6),
    ]
    if outline_pts is not None:
        parts.append(_svg_polyline(to_thumb(outline_pts), "#ff4b2b", 3.5))
    parts += [
        '</g>',
        f'<text x="{xg + t / 2}" y="{ty + t + 32}" text-anchor="middle" font-size="20" fill="#222">'
        'Grid generator: T<tspan baseline-shift="sub" font-size="15">θ</tspan>(G) on U</text>',
        # V
        _svg_thumb(v, xv, ty, t),
        f'<text x="{xv + t / 2}" y="{ty + t + 32}" text-anchor="middle" font-size="22" font-weight="bold" '
        'fill="#222">V (output)</text>',
        # arrows: U → loc net, loc net → grid, grid/sampler → V, U → sampler (under the box)
        f'<line x1="{xu + t + 4}" y1="{ty + 95}" x2="{xl - 4}" y2="{ty + 95}" stroke="#333" stroke-width="2.5" '
        'marker-end="url(#stnarrow)"/>',
        f'<line x1="{xl + 244}" y1="{ty + 95}" x2="{xg - 6}" y2="{ty + 95}" stroke="#333" stroke-width="2.5" '
        'marker-end="url(#stnarrow)"/>',
        f'<text x="{(xl + 244 + xg) / 2}" y="{ty + 85}" text-anchor="middle" font-size="24" font-style="italic" '
        'fill="#333">θ</text>',
        f'<line x1="{xg + t + 4}" y1="{ty + t / 2}" x2="{xs - 4}" y2="{ty + t / 2}" stroke="#333" '
        'stroke-width="2.5" marker-end="url(#stnarrow)"/>',
        f'<line x1="{xs + 122}" y1="{ty + t / 2}" x2="{xv - 6}" y2="{ty + t / 2}" stroke="#333" '
        'stroke-width="2.5" marker-end="url(#stnarrow)"/>',
        f'<path d="M {xu + t / 2} {ty + t + 44} L {xu + t / 2} 342 L {xs + 59} 342 L {xs + 59} {ty + t / 2 + 34}" '
        'fill="none" stroke="#888" stroke-width="2" stroke-dasharray="6 4" marker-end="url(#stnarrow)"/>',
        '</svg>',
    ]
    return "".join(parts)


def svg_img_tag(svg: str, alt: str = "") -> str:
    """Wrap an SVG document as an ``<img>`` with a data URI: it survives HTML sanitisers
    (st.html strips inline <svg>) and scales to the container width."""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (f'<img src="data:image/svg+xml;base64,{data}" alt="{html.escape(alt, quote=True)}" '
            'style="width:100%;max-width:1200px;height:auto"/>')
