"""Figures built from plain specs without plotly's validation (``figures._figure``) are valid: plotly,
validating the same spec, builds exactly the same figure. Every builder that skips validation is here."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from pages.lab import colocalisation as cl
from pages.lab import figures as viz
from pages.lab import sampler as sl
from stn_core.transforms import affine_grid, compose_affine


def _image(h: int = 20, w: int = 24) -> np.ndarray:
    return np.random.default_rng(0).random((h, w, 3)).astype(np.float32)


def _grid(out=(16, 18)) -> np.ndarray:
    theta = compose_affine(rotation_deg=17.0, scale=(0.8, 0.8), translation=(0.05, -0.1))
    return affine_grid(theta[None], out)[0].numpy()


LATTICE = np.stack(np.meshgrid(np.linspace(-0.6, 0.6, 3), np.linspace(-0.6, 0.6, 3)), -1).reshape(9, 2)
REGION = np.array([[-0.5, -0.5], [0.5, -0.4], [0.6, 0.5], [-0.4, 0.5], [-0.5, -0.5]])
BUILDERS = {
    "input_figure": lambda: viz.input_figure(_image(), _grid(), REGION, np.ones((16, 18), bool)),
    "output_figure": lambda: viz.output_figure(_image(16, 18), np.eye(16, 18, dtype=bool)),
    "lattice_output_figure": lambda: viz.lattice_output_figure(_image(16, 18), LATTICE),
    "affine_fit_figure": lambda: viz.affine_fit_figure(_image(), _grid(), LATTICE * 0.9, LATTICE),
    "image_panel": lambda: viz.image_panel(_image(), "V"),
    "heatmap_panel": lambda: viz.heatmap_panel(np.random.default_rng(1).random((8, 9)), "diff", colorbar_title="|d|"),
    "zoom_figure": lambda: viz.zoom_figure(sl.zoom(_image(), _grid(), 3, 4)),
    "region_figure": lambda: viz.region_figure(_image(28, 28), REGION, _grid((28, 28)), LATTICE),
    "colocalisation loss_figure": lambda: cl.loss_figure([3.0, 2.0, 1.5], [0.4, 0.8]),
    "colocalisation sgd_figure": lambda: cl.sgd_figure(cl.C.CoLocRun(losses=[2.0, 1.0], history_steps=[0, 2]), [0.1, 0.2]),
    "colocalisation basin_figure": lambda: cl.basin_figure([25, 50], [1.0, 0.5], [0.2, 0.6]),
    "colocalisation tiled_figure": lambda: cl.tiled_figure([10, 20, 30], [2.0, 1.0, 0.5], [0.3, 0.5, 0.7],
                                                           ((16, 10), (4, 20), (1, 30))),
    "loss_figure": lambda: viz.loss_figure(sl.align_experiment(np.eye(28, dtype=np.float32), steps=2).runs),
    "probability_figure": lambda: viz.probability_figure(
        [("model", np.full(10, 0.1)), ("CNN", np.eye(10)[3])], true_label=3),
}


def _spec(fig: go.Figure) -> dict:
    """The figure as sent, without ``layout.template``: the builders set none ({}), which validation
    fills with an empty entry per trace type (still no styling; tests/app/test_viz.py checks it)."""
    spec = json.loads(pio.to_json(fig, validate=False))
    spec["layout"].pop("template", None)
    return spec


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_validating_the_spec_changes_nothing(name):
    fig = BUILDERS[name]()
    validated = go.Figure(fig.to_dict())  # raises on any invalid property or value
    assert _spec(validated) == _spec(fig)


def test_an_invalid_property_in_a_spec_is_caught_by_that_check():
    bad = viz._figure([viz._trace("scatter", x=[0, 1], y=[0, 1], colour="red")], {"height": 100})
    with pytest.raises(ValueError):
        go.Figure(bad.to_dict())
