"""The home page's pipeline picture (U → localisation net → grid generator → sampler → V), rendered
with the library from a shipped MNIST test digit. ``python scripts/make_home_figure.py`` writes it to
``pages/shell/assets/`` so that the home page shows it without importing torch (``pages.shell.home``);
``tests/app/test_home_figure.py`` renders it again and compares."""

from __future__ import annotations

import json

from pages.lab import figures as viz
from pages.lab import playground as pg
from pages.shell.home import META, PNG, SVG, HomeFigure
from stn_core.data.samples import load_mnist_sample
from stn_core.fileio import atomic_write_bytes

#: The digit shown: the first shipped test digit with this label.
DIGIT = 4


def render() -> HomeFigure:
    """The picture as SVG and PNG (the same layout) and the words naming the digit used."""
    try:
        images, labels = load_mnist_sample()
    except Exception:  # noqa: BLE001 - no shipped sample: a generated stand-in digit
        images, labels = None, None
    if images is None:
        digit, what = pg.fallback_digit(), "a generated stand-in digit"
    else:
        hits = [i for i, v in enumerate(labels.tolist()) if int(v) == DIGIT]
        index = hits[0] if hits else 0
        digit, what = pg.as_rgb(images[index]), f"MNIST test digit #{index}"
    ex = pg.pipeline_example(digit)
    scene = viz.pipeline_scene(ex.u, ex.grid, ex.v, ex.outline)
    return HomeFigure(viz.scene_svg(scene), viz.scene_png(scene), what)


def write(fig: HomeFigure) -> None:
    """Write the picture's three files (``pages.shell.home``) atomically."""
    SVG.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(SVG, fig.svg.encode("utf-8"))
    atomic_write_bytes(PNG, fig.png)
    meta = {"digit": fig.what, "made_by": "python scripts/make_home_figure.py"}
    atomic_write_bytes(META, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
