"""The home page's pipeline picture, read from ``pages/shell/assets/`` (rendered with the library by
``python scripts/make_home_figure.py``, see ``pages.lab.home_figure``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

ASSETS = Path(__file__).resolve().parent / "assets"
SVG, PNG, META = ASSETS / "pipeline.svg", ASSETS / "pipeline.png", ASSETS / "pipeline.json"


class HomeFigure(NamedTuple):
    svg: str
    png: bytes
    what: str  # the digit shown, e.g. "MNIST test digit #4"


def load() -> HomeFigure | None:
    """The shipped picture, or None when a file is missing or unreadable (the page then says so)."""
    try:
        meta = json.loads(META.read_text(encoding="utf-8"))
        return HomeFigure(SVG.read_text(encoding="utf-8"), PNG.read_bytes(), str(meta["digit"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None

