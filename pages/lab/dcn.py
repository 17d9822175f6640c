"""Figures of the "STN vs deformable convolution" page and the tour's step 8 (plotly, no Streamlit): a
deformable layer's taps over the image, its receptive field traced back to pixels, and its offset field.
The computation is :mod:`stn_core.analysis.deformable`; the comparison :mod:`stn_core.analysis.stn_vs_dcn`.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import plotly.graph_objects as go

from pages.lab import figures as viz
from stn_core.analysis.deformable import (DcnView, chain_locations, image_points, layer_names, offset_magnitude_map,
                                          output_centres, receptive_points)

# --------------------------------------------------------------------------- figures

LAYER_COLOURS = ("#ff4b2b", "#ffd400", "#38d9a9", "#845ef7")
REGULAR_COLOUR = "#adb5bd"
FIELD_COLOUR = "#ff922b"
CLICK_TRACE = "output locations (click one)"


def sampling_figure(image: np.ndarray, view: DcnView, out_yx: tuple[int, int], title: str,
                    height: int = 460) -> "go.Figure":
    """The input with, for output location ``out_yx`` of the last deformable layer: each layer's
    k×k taps (:func:`chain_locations`), deformed (filled, coloured) against regular (hollow grey),
    and clickable markers at every output location of the last layer (trace named
    :data:`CLICK_TRACE`; a point's index is ``row·W' + col``)."""


    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape[:2]
    names = layer_names(view)
    traces: list = [viz.image_trace(img, name="input")]
    pts = [np.zeros((0, 2))]
    centres = output_centres(view, len(view.deform_stages) - 1).reshape(-1, 2)
    wo = view.stages[view.deform_stages[-1]].out_hw[1]
    traces.append(go.Scatter(x=centres[:, 0], y=centres[:, 1], mode="markers", name=CLICK_TRACE,
                             customdata=[[i // wo, i % wo] for i in range(len(centres))],
                             marker=dict(color="rgba(255,255,255,0.25)", size=14, symbol="square",
                                         line=dict(color="#ffffff", width=1)),
                             hovertemplate="output row %{customdata[0]}, column %{customdata[1]}<extra></extra>"))
    for n, loc in enumerate(chain_locations(view, out_yx)):
        deformed, regular = image_points(view, n, loc)
        colour = LAYER_COLOURS[n % len(LAYER_COLOURS)]
        links = np.full((3 * len(regular), 2), np.nan)
        links[0::3], links[1::3] = regular, deformed
        traces.append(go.Scatter(x=links[:, 0], y=links[:, 1], mode="lines", name=f"{names[n]} offsets",
                                 line=dict(color=colour, width=1), opacity=0.6, hoverinfo="skip", showlegend=False))
        traces.append(go.Scatter(x=regular[:, 0], y=regular[:, 1], mode="markers", name=f"{names[n]} regular grid",
                                 marker=dict(color="rgba(0,0,0,0)", size=7, line=dict(color=REGULAR_COLOUR, width=1.5)),
                                 hoverinfo="skip"))
        traces.append(go.Scatter(x=deformed[:, 0], y=deformed[:, 1], mode="markers",
                                 name=f"{names[n]} taps at row {loc[0]}, col {loc[1]}",
                                 marker=dict(color=colour, size=8 if n else 6, line=dict(color="black", width=1)),
                                 hovertemplate=f"{names[n]}: x %{{x:.2f}}, y %{{y:.2f}}<extra></extra>"))
        pts += [deformed, regular]
    xr, yr = viz.view_range((h, w), np.concatenate(pts, 0), max_extra=0.3, margin=0.01)
    return viz.plot_figure(traces, title, xr, yr, height)


def receptive_figure(image: np.ndarray, view: DcnView, out_yx: tuple[int, int], title: str,
                     height: int = 460) -> "go.Figure":
    """The input with the stacked receptive field of ``out_yx`` (:func:`receptive_points`):
    deformed (orange) against the plain CNN's (grey, all offsets zero)."""


    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape[:2]
    reg = receptive_points(view, None, out_yx, deformed=False)
    dfm = receptive_points(view, None, out_yx)
    traces = [viz.image_trace(img, name="input"),
              go.Scatter(x=reg[:, 0], y=reg[:, 1], mode="markers", name=f"regular ({len(reg):,} taps)",
                         marker=dict(color=REGULAR_COLOUR, size=3), opacity=0.5, hoverinfo="skip"),
              go.Scatter(x=dfm[:, 0], y=dfm[:, 1], mode="markers", name=f"deformed ({len(dfm):,} taps)",
                         marker=dict(color=FIELD_COLOUR, size=3), opacity=0.55, hoverinfo="skip")]
    xr, yr = viz.view_range((h, w), np.concatenate([reg, dfm], 0), max_extra=0.3, margin=0.01)
    return viz.plot_figure(traces, title, xr, yr, height)


def offset_figure(view: DcnView, layer: int, title: str, height: int = 360) -> "go.Figure":
    """Heat map of :func:`offset_magnitude_map` of ``layer`` (pixels of the layer's input)."""

    return viz.heatmap_panel(offset_magnitude_map(view, None, layer), title, colorscale="Viridis", zmin=0.0,
                             colorbar_title="px", height=height)


def clicked_location(selection, view: DcnView) -> tuple[int, int] | None:
    """The (row, col) of the last-layer output marker picked in a plotly selection event
    (``st.plotly_chart(on_select=...)``'s value, or its ``selection`` dict); None if none."""
    if isinstance(selection, Mapping):
        sel = selection.get("selection", selection)
    else:
        sel = getattr(selection, "selection", None)
    points = (sel or {}).get("points", []) if isinstance(sel, Mapping) else []
    ho, wo = view.stages[view.deform_stages[-1]].out_hw
    for pt in reversed(list(points)):
        cd = pt.get("customdata") if isinstance(pt, Mapping) else None
        if isinstance(cd, (list, tuple)) and len(cd) == 2:
            r, c = int(cd[0]), int(cd[1])
            if 0 <= r < ho and 0 <= c < wo:
                return r, c
    return None
