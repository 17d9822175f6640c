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


# --------------------------------------------------------------------------- thin-plate spline page

LATTICE_COLOUR = "#ffd400"
AFFINE_COLOUR = "#ff4b2b"


def _numbered_points(px: np.ndarray, name: str, colour: str = LATTICE_COLOUR, size: int = 22,
                     symbol: str = "circle") -> go.Scatter:
    """Numbered markers (1, 2, …) at pixel positions ``px (K, 2)``."""
    return go.Scatter(x=px[:, 0], y=px[:, 1], mode="markers+text", name=name, hoverinfo="skip",
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
    traces = [_image_trace(output, name="V"),
              _lines(norm_to_pixel(grid_polylines(g, None, n_lines), (h, w)), "regular grid G", GRID_COLOUR, 1.2,
                     opacity=0.6),
              _numbered_points(norm_to_pixel(np.asarray(ctrl_out), (h, w)), "output control points")]
    xr, yr = view_range((h, w), np.zeros((0, 2)), margin=0.07)
    return _figure(traces, title, xr, yr, height)


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
    traces = [_image_trace(image, name="U"), _lines(lines, "affine sampling grid", GRID_COLOUR, 1.6),
              _lines(gaps, "miss", AFFINE_COLOUR, 2.5),
              go.Scatter(x=c_px[:, 0], y=c_px[:, 1], mode="markers", name="your points", hoverinfo="skip",
                         marker=dict(color="rgba(0,0,0,0)", size=18, line=dict(color=LATTICE_COLOUR, width=3))),
              _numbered_points(m_px, "where the affine fit puts them", AFFINE_COLOUR, size=20, symbol="diamond")]
    xr, yr = view_range((h, w), np.concatenate([lines, m_px, c_px], 0), max_extra=0.3, margin=0.05)
    return _figure(traces, title, xr, yr, height)


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
    layout = go.Layout(**_plain_layout(title, height, showlegend=False, dragmode="pan"),
                       xaxis=dict(range=list(xr), **axis), yaxis=dict(range=[yr[1], yr[0]], scaleanchor="x", **axis))
    return go.Figure(data=[_image_trace(image, name=title)], layout=layout)


DIFF_SCALE = [[0.0, "#ffffff"], [0.15, "#ffd8a8"], [0.5, "#f76707"], [1.0, "#5c0a0a"]]


def heatmap_panel(values: np.ndarray, title: str, colorscale: str | list = DIFF_SCALE, zmin: float | None = None,
                  zmax: float | None = None, colorbar_title: str = "", height: int | None = None) -> go.Figure:
    """A heat map of ``values (H, W)`` drawn like an image (row 0 at the top, square pixels, colour bar)."""
    v = np.asarray(values, dtype=np.float64)
    h, w = v.shape
    xr, yr = view_range((h, w), np.zeros((0, 2)), margin=0.01)
    height = auto_height(xr, yr, plot_width=400, lo=220, hi=460, chrome=60) if height is None else height
    axis = dict(showgrid=False, zeroline=False, showticklabels=False, ticks="", constrain="domain")
    trace = go.Heatmap(z=v, zmin=zmin, zmax=zmax, colorscale=colorscale, zsmooth=False,
                       colorbar=dict(title=dict(text=colorbar_title), thickness=14, len=0.9),
                       hovertemplate="row %{y}, column %{x}: %{z:.3g}<extra></extra>")
    layout = go.Layout(**_plain_layout(title, height, showlegend=False, dragmode="pan"),
                       xaxis=dict(range=list(xr), **axis), yaxis=dict(range=[yr[1], yr[0]], scaleanchor="x", **axis))
    return go.Figure(data=[trace], layout=layout)


def gradient_pair_figure(gx: np.ndarray, gy: np.ndarray, title: str, height: int = 430) -> go.Figure:
    """∂V/∂x^s and ∂V/∂y^s side by side as heat maps with one symmetric colour scale (red +, blue −)."""
    from plotly.subplots import make_subplots

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
    ``curves``: :func:`stn_core.sampler_lab.kernel_curves`. Filled dots: the value the formula
    takes at a jump; hollow: the other side."""
    from plotly.subplots import make_subplots

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
    """The zoom onto one output pixel (``stn_core.sampler_lab.Zoom``): the input pixels around its
    source point (values written in), the 4 pixels bilinear reads (blue, with weights), the one
    nearest reads (orange), the source point (×) and those of the 8 neighbouring output pixels (dots).
    Axes in input pixel indices (m: column, n: row)."""
    size = z.patch.shape[0]
    uri, k = display_uri(z.patch)
    traces: list = [go.Image(source=uri, x0=z.m0 - 0.5 + 0.5 / k, y0=z.n0 - 0.5 + 0.5 / k, dx=1.0 / k, dy=1.0 / k,
                             hoverinfo="skip", name="U")]
    grey = z.patch.mean(-1)
    xs, ys, texts, colours = [], [], [], []
    for a in range(size):
        for b in range(size):
            xs.append(z.m0 + b)
            ys.append(z.n0 + a + 0.27)
            texts.append(f"{grey[a, b]:.2f}")
            colours.append("black" if grey[a, b] > 0.55 else "white")
    traces.append(go.Scatter(x=xs, y=ys, mode="text", text=texts, textfont=dict(size=FONT_SIZE - 3, color=colours),
                             hoverinfo="skip", showlegend=False))

    def square(m: int, n: int, inset: float) -> tuple[list[float], list[float]]:
        lo, hi = -0.5 + inset, 0.5 - inset
        return [m + lo, m + hi, m + hi, m + lo, m + lo, None], [n + lo, n + lo, n + hi, n + hi, n + lo, None]

    bx, by = [], []
    for r in z.bilinear:
        sx, sy = square(r.m, r.n, 0.06)
        bx += sx
        by += sy
    traces.append(go.Scatter(x=bx, y=by, mode="lines", name="bilinear reads (weight)",
                             line=dict(color=BILINEAR_COLOUR, width=5), hoverinfo="skip"))
    # weight labels (boxed, readable on any pixel) on the side of each pixel away from the source point
    labels = [dict(x=r.m + 0.1 * (1.0 if r.m >= z.x else -1.0), y=r.n - 0.2 if r.n <= z.y else r.n - 0.02,
                   text=f"<b>{r.weight:.2f}</b>", showarrow=False, bgcolor="rgba(255,255,255,0.9)",
                   bordercolor=BILINEAR_COLOUR, borderwidth=1.5, borderpad=2,
                   font=dict(size=FONT_SIZE, color=BILINEAR_COLOUR)) for r in z.bilinear]
    nx, ny = square(z.nearest.m, z.nearest.n, 0.16)
    traces.append(go.Scatter(x=nx, y=ny, mode="lines", name="nearest reads (weight 1)",
                             line=dict(color=NEAREST_COLOUR, width=4, dash="dot"), hoverinfo="skip"))
    nb = z.sources.reshape(-1, 2)
    traces.append(go.Scatter(x=nb[:, 0], y=nb[:, 1], mode="markers", name="source points of the 3×3 output pixels",
                             marker=dict(size=9, color="#00d8ff", line=dict(color="black", width=1)), hoverinfo="skip"))
    traces.append(go.Scatter(x=[z.x], y=[z.y], mode="markers", name=f"(x<sup>s</sup>, y<sup>s</sup>) of pixel "
                             f"({z.i}, {z.j})", hoverinfo="skip", opacity=0.9,
                             marker=dict(size=15, symbol="x", color=CORNER_COLOUR, line=dict(color="black", width=1.5))))
    axis = dict(showgrid=False, zeroline=False, dtick=1, ticks="outside", constrain="domain")
    lo_x, lo_y = z.m0 - 0.5, z.n0 - 0.5
    layout = go.Layout(**_plain_layout(title or f"Output pixel (row {z.i}, column {z.j}) reads from the input",
                                       height, showlegend=True, dragmode=False),
                       legend=dict(orientation="v", yanchor="top", y=-0.1, x=0.0, font=dict(size=FONT_SIZE - 2)),
                       xaxis=dict(range=[lo_x, lo_x + size], title=dict(text="column m"), **axis),
                       yaxis=dict(range=[lo_y + size, lo_y], scaleanchor="x", title=dict(text="row n"), **axis))
    layout.margin = dict(l=60, r=10, t=50, b=10)
    layout.annotations = labels
    return go.Figure(data=traces, layout=layout)


def loss_figure(runs: dict, height: int = 360) -> go.Figure:
    """Loss per step for each run (``{mode: AlignRun}``), log scale."""
    traces = []
    for mode, run in runs.items():
        colour = BILINEAR_COLOUR if mode == "bilinear" else NEAREST_COLOUR
        traces.append(go.Scatter(x=np.arange(len(run.losses)), y=np.maximum(run.losses, 1e-12), mode="lines",
                                 name=mode, line=dict(color=colour, width=4, dash="solid" if mode == "bilinear" else "dash")))
    layout = go.Layout(**_plain_layout("Loss (MSE to the template)", height, showlegend=True),
                       xaxis=dict(title=dict(text="step")),
                       yaxis=dict(type="log", dtick=1, exponentformat="power", title=dict(text="loss")),
                       legend=dict(orientation="v", yanchor="top", y=0.98, x=0.98, xanchor="right",
                                   bgcolor="rgba(255,255,255,0.8)"))
    return go.Figure(data=traces, layout=layout)


def theta_figure(runs: dict, target: np.ndarray, height: int = 420) -> go.Figure:
    """θ11 … θ23 per step for each run, with the θ that undoes the motion dotted."""
    from plotly.subplots import make_subplots

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
    traces: list = [_image_trace(image, name="input")]
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
        traces.append(go.Scatter(x=c[:, 0], y=c[:, 1], mode="markers", name="control points", hoverinfo="skip",
                                 marker=dict(color=LATTICE_COLOUR, size=9, line=dict(color="black", width=1))))
    xr, yr = view_range((h, w), np.concatenate(pts, 0), max_extra=0.35, margin=0.01)
    height = auto_height(xr, yr, plot_width=330, lo=220, hi=420, chrome=60) if height is None else height
    axis = dict(showgrid=False, zeroline=False, showticklabels=False, ticks="", constrain="domain")
    layout = go.Layout(**_plain_layout(title, height, showlegend=False, dragmode="pan"),
                       xaxis=dict(range=list(xr), **axis), yaxis=dict(range=[yr[1], yr[0]], scaleanchor="x", **axis))
    return go.Figure(data=traces, layout=layout)


def probability_figure(series: list[tuple[str, np.ndarray]], classes: list[str] | None = None,
                       true_label: int | None = None, title: str = "Class probabilities",
                       height: int = 360) -> go.Figure:
    """Grouped bars of class probabilities: ``series`` = [(name, probs (C,)), ...]; the first is
    drawn in blue, the others in grey. Each series' top class is labelled with its percentage;
    the true class (if known) is marked under the axis."""
    n = len(series[0][1]) if series else 10
    classes = [str(i) for i in range(n)] if classes is None else list(classes)
    traces = []
    for i, (name, probs) in enumerate(series):
        p = np.asarray(probs, dtype=np.float64)
        top = int(p.argmax())
        text = [f"{100 * v:.0f}%" if j == top else "" for j, v in enumerate(p)]
        traces.append(go.Bar(x=classes, y=p, name=name, text=text, textposition="outside", cliponaxis=False,
                             constraintext="none",
                             textfont=dict(size=FONT_SIZE, color="#222"),
                             marker=dict(color=MODEL_COLOUR if i == 0 else CONTRAST_COLOUR),
                             hovertemplate=f"{name}<br>class %{{x}}: %{{y:.3f}}<extra></extra>"))
    ticks = [f"<b>{c}</b>" if true_label is not None and j == true_label else c for j, c in enumerate(classes)]
    layout = go.Layout(**_plain_layout(title, height, showlegend=len(series) > 1, barmode="group", bargap=0.25),
                       xaxis=dict(type="category", tickmode="array", tickvals=classes, ticktext=ticks,
                                  tickfont=dict(size=FONT_SIZE + 2), title=dict(text="class")),
                       yaxis=dict(range=[0, 1.12], tickformat=".0%", dtick=0.25, title=dict(text="probability")),
                       legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0,
                                   font=dict(size=FONT_SIZE - 1)))
    layout.plot_bgcolor = "#ffffff"
    if true_label is not None:
        layout.annotations = [dict(x=classes[true_label], y=-0.02, yref="paper", yanchor="top", yshift=-30,
                                   text="true", showarrow=False, font=dict(size=FONT_SIZE - 2, color=CORRECT_COLOUR))]
    return go.Figure(data=traces, layout=layout)


def figure1_gallery_svg(inputs: list[np.ndarray], preds: list[int], confidences: list[float],
                        labels: list[int | None], regions: list[np.ndarray | None] | None = None,
                        outputs: list[np.ndarray | None] | None = None, grids: list[np.ndarray | None] | None = None,
                        captions: list[str] | None = None, cell: float = 118.0) -> str:
    """The paper's Figure 1 for a batch of digits as one SVG: one column per digit, rows
    (a) input, (b) the sampled region drawn on the input, (c) the transformer's output, (d) the
    prediction (green if right, red if wrong, with its probability and the true class).
    ``regions``/``outputs`` None (no transformer): rows (a) and (d) only. Images are grey ``(S, S)``
    in [0, 1]; regions ``(M, 2)`` and grids ``(S, S, 2)`` normalised (grids: TPS warped lines)."""
    n = len(inputs)
    with_st = regions is not None and outputs is not None
    row_names = (["(a) input", "(b) region", "(c) output", "(d) prediction"] if with_st
                 else ["(a) input", "(d) prediction"])
    gap, left, top = 10.0, 128.0, 30.0 if captions else 8.0
    pitch = cell + gap
    width = left + n * pitch + gap
    height = top + len(row_names) * pitch + 4
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
             f'height="{height:.0f}" font-family="Source Sans Pro, Helvetica, Arial, sans-serif">',
             f'<rect width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>']
    for r, name in enumerate(row_names):
        y = top + r * pitch + cell / 2
        label, part = name.split(" ", 1)
        parts.append(f'<text x="{left - 12}" y="{y - 4}" text-anchor="end" font-size="22" font-weight="bold" '
                     f'fill="#222">{label}</text><text x="{left - 12}" y="{y + 20}" text-anchor="end" font-size="18" '
                     f'fill="#444">{html.escape(part)}</text>')
    for i in range(n):
        x0 = left + i * pitch
        img = np.asarray(inputs[i])
        hh, ww = img.shape[:2]
        if captions:
            parts.append(f'<text x="{x0 + cell / 2}" y="{top - 9}" text-anchor="middle" font-size="19" '
                         f'fill="#555">{html.escape(captions[i])}</text>')
        rows = [("img", img)]
        if with_st:
            rows += [("region", img), ("img", outputs[i])]
        for r, (what, im) in enumerate(rows):
            y0 = top + r * pitch
            if im is None:
                continue
            parts.append(_svg_thumb(im, x0, y0, cell))
            if what == "region":
                def to_cell(points: np.ndarray) -> np.ndarray:
                    p = norm_to_pixel(points, (hh, ww))
                    return np.stack([x0 + (p[:, 0] + 0.5) * cell / ww, y0 + (p[:, 1] + 0.5) * cell / hh], 1)
                parts.append(f'<clipPath id="clip{i}"><rect x="{x0}" y="{y0}" width="{cell}" height="{cell}"/>'
                             f'</clipPath><g clip-path="url(#clip{i})">')
                if grids is not None and grids[i] is not None:
                    parts.append(_svg_polyline(to_cell(grid_polylines(grids[i], None, 5)), GRID_COLOUR, 1.2))
                if regions[i] is not None:
                    parts.append(_svg_polyline(to_cell(regions[i]), OUTLINE_COLOUR, 3.0))
                parts.append("</g>")
        y0 = top + (len(row_names) - 1) * pitch
        lab = labels[i]
        ok = lab is None or int(lab) == int(preds[i])
        colour = CORRECT_COLOUR if lab is not None and ok else (WRONG_COLOUR if not ok else "#222")
        parts.append(f'<rect x="{x0}" y="{y0}" width="{cell}" height="{cell}" rx="8" fill="'
                     f'{"#ebfbee" if lab is not None and ok else ("#fff5f5" if not ok else "#f8f9fa")}" '
                     f'stroke="{colour}" stroke-width="2"/>'
                     f'<text x="{x0 + cell / 2}" y="{y0 + 0.5 * cell}" text-anchor="middle" font-size="52" '
                     f'font-weight="bold" fill="{colour}">{int(preds[i])}</text>'
                     f'<text x="{x0 + cell / 2}" y="{y0 + 0.5 * cell + 27}" text-anchor="middle" font-size="21" '
                     f'fill="#333">{100 * float(confidences[i]):.0f} %</text>')
        if lab is not None:
            parts.append(f'<text x="{x0 + cell / 2}" y="{y0 + 0.5 * cell + 50}" text-anchor="middle" font-size="19" '
                         f'fill="#555">true {int(lab)}</text>')
    parts.append("</svg>")
    return "".join(parts)
