"""Point drag: a small bidirectional Streamlit component for dragging points on an image.

Built on Streamlit's custom components v2 (``st.components.v2.component``, Streamlit ≥ 1.51):
the JavaScript (``point_drag.js``, a plain ES module) and CSS (``point_drag.css``) are bundled
here and passed inline; no build step, no npm, nothing from a CDN. The component draws the
image (a PNG data URI) in an SVG with the points as draggable circles, optional polylines
underneath (e.g. a warped sampling grid) and small marks; on mouse release it sends every
point's position back to Python.

Coordinates are normalised: x, y in [-1, 1] from the left/top edge to the right/bottom edge of
the image (``align_corners=False``), so a point at (x, y) sits at pixel
``((x + 1)·W/2, (y + 1)·H/2)`` measured from the image's top-left corner.

This module does not depend on the rest of STN Lab (no ``stn_core`` import).

Usage in a page::

    from components.point_drag import point_drag, read_drop

    def on_drop():
        pts = read_drop("editor", k=16)   # list of (x, y) or None
        ...                              # store them; the page then redraws

    point_drag(uri, (h, w), points, key="editor", on_drop=on_drop, lines=grid_lines)

AppTest cannot drive the browser side; ``payload`` and ``parse_drop`` are plain functions
(unit-tested) and dragging is tested in a real browser (tests/test_browser.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from components import BundledComponent, event_value

COMPONENT_NAME = "stn_lab.point_drag"
#: Name of the trigger the component sends on release.
EVENT = "drop"
MARK_KINDS = ("landed", "affine")

Point = tuple[float, float]

_COMPONENT = BundledComponent(COMPONENT_NAME, Path(__file__).resolve().parent, "point_drag")
#: The component's JavaScript and CSS source (read from the bundled files).
assets = _COMPONENT.assets


def _finite_pair(p: Sequence[float], what: str, digits: int | None = None) -> list[float]:
    if len(p) != 2:
        raise ValueError(f"{what} must be (x, y) pairs, got {p!r}")
    x, y = float(p[0]), float(p[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"{what} must be finite numbers, got ({x}, {y})")
    return [x, y] if digits is None else [round(x, digits), round(y, digits)]


def _finite_polyline(line: Iterable[Sequence[float]], digits: int) -> list[list[float]]:
    """A polyline's points as ``[[x, y], ...]`` rounded to ``digits`` (vectorised: grids have
    hundreds of points and are redrawn on every move)."""
    a = np.asarray(line if isinstance(line, np.ndarray) else list(line), dtype=np.float64)
    if a.size == 0:
        return []
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"lines must be (x, y) pairs, got an array of shape {a.shape}")
    if not np.isfinite(a).all():
        x, y = a[~np.isfinite(a).all(1)][0]
        raise ValueError(f"lines must be finite numbers, got ({x}, {y})")
    return np.round(a, digits).tolist()


def payload(image_uri: str, image_size: Sequence[int], points: Iterable[Sequence[float]], *,
            side: int = 0, lines: Iterable[Iterable[Sequence[float]]] = (),
            marks: Iterable[Mapping[str, Any]] = (), view: float = 1.3, version: Any = 0,
            max_width: int = 640, radius_px: float = 13.0, labels: bool = True) -> dict[str, Any]:
    """The JSON data the front end draws (validated; raises ValueError with a sentence).

    image_uri: ``data:image/...`` URI; image_size: (H, W) of the image in pixels; points: the
    draggable points (normalised); side: lattice side for the dashed links between neighbours
    (0: no links); lines: polylines of (x, y); marks: ``{"kind": "landed"|"affine", "points": [...]}``;
    view: half-extent of the square view (≥ 1 shows the whole image); version: echoed by the
    front end in ``data-version`` once drawn; radius_px: handle radius on screen (CSS pixels).
    """
    if not isinstance(image_uri, str) or not image_uri.startswith("data:image/"):
        raise ValueError("image_uri must be a data:image/... URI")
    if len(image_size) != 2 or int(image_size[0]) < 1 or int(image_size[1]) < 1:
        raise ValueError(f"image_size must be (H, W) with positive entries, got {tuple(image_size)}")
    pts = [_finite_pair(p, "points") for p in points]
    if side and side * side != len(pts):
        raise ValueError(f"side {side} needs {side * side} points, got {len(pts)}")
    if not (math.isfinite(view) and view >= 1.0):
        raise ValueError(f"view must be a finite number ≥ 1, got {view}")
    if not (math.isfinite(radius_px) and 2.0 <= radius_px <= 60.0):
        raise ValueError(f"radius_px must be between 2 and 60, got {radius_px}")
    # Points go at full precision (unmoved points come back bit-identical); drawings at 4 decimals.
    clean_lines = [_finite_polyline(line, 4) for line in lines]
    clean_marks = []
    for m in marks:
        kind = m.get("kind", "landed")
        if kind not in MARK_KINDS:
            raise ValueError(f"mark kind must be one of {MARK_KINDS}, got {kind!r}")
        clean_marks.append({"kind": kind, "points": [_finite_pair(p, "marks", 4) for p in m.get("points", ())]})
    return {
        "image": image_uri, "height": int(image_size[0]), "width": int(image_size[1]),
        "points": pts, "side": int(side), "lines": clean_lines, "marks": clean_marks,
        "view": float(view), "version": version, "max_width": int(max_width), "radius_px": float(radius_px),
        "labels": bool(labels),
    }


def parse_drop(value: Any, k: int) -> list[Point] | None:
    """The points of a "drop" event: ``k`` finite (x, y) pairs, or None when the value is
    missing or malformed (never raises)."""
    if not isinstance(value, Mapping):
        return None
    raw = value.get("points")
    if not isinstance(raw, (list, tuple)) or len(raw) != k:
        return None
    out: list[Point] = []
    for p in raw:
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            return None
        try:
            x, y = float(p[0]), float(p[1])
        except (TypeError, ValueError):
            return None
        if not (math.isfinite(x) and math.isfinite(y)):
            return None
        out.append((x, y))
    return out


def read_drop(key: str, k: int, session_state: Any = None) -> list[Point] | None:
    """Inside an ``on_drop`` callback: the dropped points of component ``key`` (or None)."""
    return parse_drop(event_value(key, EVENT, session_state), k)


def point_drag(image_uri: str, image_size: Sequence[int], points: Iterable[Sequence[float]], *, key: str,
               on_drop: Callable[[], None] | None = None, **kwargs: Any) -> list[Point] | None:
    """Mount the component; returns the points of a drop that happened just before this run
    (usually handled in ``on_drop`` instead, which runs before the page script). ``kwargs`` go
    to :func:`payload`."""
    pts = list(points)
    data = payload(image_uri, image_size, pts, **kwargs)
    result = _COMPONENT.mount()(key=key, data=data, on_drop_change=on_drop or (lambda: None))
    getter = getattr(result, "get", None)
    return parse_drop(getter(EVENT) if getter else None, len(pts))
