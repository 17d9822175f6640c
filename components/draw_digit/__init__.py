"""Draw digit: a small Streamlit component to draw a digit with the mouse, a finger or a pen.

Built like :mod:`components.point_drag` on Streamlit's custom components v2
(``st.components.v2.component``, Streamlit ≥ 1.51): plain ES module + CSS, passed inline; no
build step, nothing from a CDN. The front end keeps the drawing on a black canvas (light ink)
and, when a stroke ends or "Clear" is pressed, sends it averaged down to 28×28 (MNIST's size).

Usage in a page::

    from components.draw_digit import draw_digit, read_drawing

    def on_drawn():
        pixels = read_drawing("pad")     # float32 (28, 28) in [0, 1], or None
        ...

    draw_digit(key="pad", on_drawn=on_drawn)

This module does not depend on the rest of STN Lab. AppTest cannot drive the browser side;
:func:`parse_drawing` is a plain function (unit-tested) and drawing is tested in a real browser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from components import BundledComponent, event_value

COMPONENT_NAME = "stn_lab.draw_digit"
#: Name of the trigger the component sends after a stroke or a clear.
EVENT = "drawn"
SIDE = 28

_COMPONENT = BundledComponent(COMPONENT_NAME, Path(__file__).resolve().parent, "draw_digit")
#: The component's JavaScript and CSS source (read from the bundled files).
assets = _COMPONENT.assets


def parse_drawing(value: Any) -> np.ndarray | None:
    """The pixels of a "drawn" event as float32 ``(28, 28)`` in [0, 1], or None when the value
    is missing or malformed (never raises)."""
    if not isinstance(value, dict):
        return None
    raw = value.get("pixels")
    if not isinstance(raw, (list, tuple)) or len(raw) != SIDE * SIDE:
        return None
    try:
        a = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(a).all():
        return None
    return (np.clip(a, 0.0, 255.0) / 255.0).astype(np.float32).reshape(SIDE, SIDE)


def read_drawing(key: str, session_state: Any = None) -> np.ndarray | None:
    """Inside an ``on_drawn`` callback: the drawing of component ``key`` (or None)."""
    return parse_drawing(event_value(key, EVENT, session_state))


def draw_digit(*, key: str, on_drawn: Callable[[], None] | None = None, size: int = 280,
               stroke: float = 0.075, clear_token: Any = 0) -> np.ndarray | None:
    """Mount the drawing pad (``size`` CSS px square, strokes ``stroke`` × the side wide); a new
    ``clear_token`` wipes it. Returns the drawing sent just before this run, if any."""
    data = {"size": int(size), "stroke": float(stroke), "clear_token": clear_token}
    result = _COMPONENT.mount()(key=key, data=data, on_drawn_change=on_drawn or (lambda: None))
    getter = getattr(result, "get", None)
    return parse_drawing(getter(EVENT) if getter else None)
