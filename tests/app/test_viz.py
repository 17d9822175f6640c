"""Figure helpers (pages.lab.figures): pixel geometry, display images, plotly figures, the SVG schematic."""

from __future__ import annotations

import base64
import io
import json
import xml.etree.ElementTree as ET

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from pages.lab import figures as viz
from pages.lab import playground as pg


def _decode(uri: str, kind: str = "png") -> np.ndarray:
    assert uri.startswith(f"data:image/{kind};base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def test_to_uint8_and_png_roundtrip() -> None:
    img = np.linspace(0, 1, 5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)
    u8 = viz.to_uint8(img)
    assert u8.dtype == np.uint8 and u8.shape == (5, 4, 3) and u8[0, 0, 0] == 0 and u8[-1, -1, -1] == 255
    assert viz.to_uint8(np.full((2, 2), np.nan)).max() == 0  # NaN never leaks into a picture
    assert viz.to_uint8(np.ones((3, 3, 1))).shape == (3, 3, 3)
    assert np.array_equal(_decode(viz.png_data_uri(u8)), u8)


def test_display_factor_and_upscale() -> None:
    assert viz.display_factor(28, 28) == 16  # capped
    assert viz.display_factor(64, 64) == 7
    assert viz.display_factor(256, 256) == 1  # large images are not upscaled (plotly draws them unsmoothed)
    assert viz.display_factor(512, 400) == 1
    assert viz.display_factor(1000, 1000) == 1
    a = np.arange(4).reshape(2, 2, 1)
    big = viz.upscale_nearest(a, 3)
    assert big.shape == (6, 6, 1) and (big[:3, :3] == 0).all() and (big[3:, 3:] == 3).all()


def test_checker_fill_only_touches_empty_pixels() -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    empty = np.zeros((16, 16), bool)
    empty[:, :8] = True
    out = viz.checker_fill(rgb, empty, cell=4)
    assert (out[:, 8:] == 0).all()
    assert set(np.unique(out[:, :8])) == set(viz.CHECKER)
    assert viz.checker_fill(rgb, np.zeros((16, 16), bool)) is rgb


def test_display_uri_is_memoised() -> None:
    a = np.random.default_rng(1).random((30, 20, 3)).astype(np.float32)
    uri, k = viz.display_uri(a)
    assert viz.display_uri(a.copy()) == (uri, k)
    assert _decode(uri, "jpeg").shape == (30 * k, 20 * k, 3)  # a colour picture travels as JPEG
    empty = np.zeros((30, 20), bool)
    empty[0] = True
    assert viz.display_uri(a, empty)[0] != uri
    b = a.copy()
    b[0, 0] = 1 - b[0, 0]
    assert viz.display_uri(b)[0] != uri


def test_colour_photos_travel_as_jpeg_and_grey_digits_or_exact_pictures_as_png() -> None:
    rng = np.random.default_rng(2)
    photo = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    photo[:32] = 90  # a flat area, as skies are: JPEG keeps it within a few levels
    digit = np.repeat((rng.random((28, 28, 1)) > 0.8).astype(np.uint8) * 255, 3, axis=2)
    assert viz.is_colour(photo) and not viz.is_colour(digit)
    jpeg = _decode(viz.image_data_uri(photo), "jpeg")
    assert jpeg.shape == photo.shape and np.abs(jpeg[:32].astype(int) - 90).max() <= 3
    assert (_decode(viz.image_data_uri(digit)) == digit).all()  # lossless
    assert (_decode(viz.image_data_uri(photo, exact=True)) == photo).all()
    assert viz.display_uri(photo, exact=True)[0].startswith("data:image/png")  # the sampler zoom's pixels


def test_norm_to_pixel_matches_align_corners_false() -> None:
    p = viz.norm_to_pixel(np.array([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]), (10, 20))
    assert np.allclose(p[0], [-0.5, -0.5]) and np.allclose(p[1], [19.5, 9.5]) and np.allclose(p[2], [9.5, 4.5])
    centre_first = viz.norm_to_pixel(np.array([[1 / 20 - 1, 1 / 10 - 1]]), (10, 20))
    assert np.allclose(centre_first, [[0.0, 0.0]])


def test_grid_polylines_subsamples_rows_and_columns() -> None:
    res = pg.warp(np.zeros((28, 28, 3), np.float32), "affine", pg.IDENTITY["affine"], (28, 28))
    pts = viz.grid_polylines(res.grid, res.valid, n_lines=9)
    gaps = np.isnan(pts).all(1)
    assert gaps.sum() == 18  # 9 rows + 9 columns, one separator each
    px = viz.norm_to_pixel(pts[~gaps], (28, 28))
    assert np.allclose(px, np.round(px), atol=1e-4)  # identity: lines run through pixel centres
    assert px.min() >= -1e-4 and px.max() <= 27 + 1e-4
    valid = res.valid.copy()
    valid[:, :14] = False
    pts2 = viz.grid_polylines(res.grid, valid, n_lines=9)
    assert np.isnan(pts2).all(1).sum() > 18


def test_view_range_covers_image_and_clips_far_points() -> None:
    xr, yr = viz.view_range((10, 20), np.array([[1e6, -1e6], [np.nan, np.nan]]))
    assert xr[0] < -0.5 and yr[0] < -10.5 and xr[1] > 19.5
    assert xr[1] < 20 * 2.2 and yr[0] > -10 * 1.3 - 1
    xr2, yr2 = viz.view_range((10, 20), np.zeros((0, 2)))
    assert xr2[0] < -0.5 < 19.5 < xr2[1] and yr2[0] < -0.5 < 9.5 < yr2[1]


def test_input_figure() -> None:
    u = pg.fallback_digit()
    params = pg.intuitive_to_params(pg.PlaygroundState(rot=30, sx=0.7, sy=0.7), (28, 28))
    res = pg.warp(u, "affine", params, (28, 28))
    fig = viz.input_figure(u, res.grid, pg.outline("affine", params), res.valid, title="U")
    assert isinstance(fig, go.Figure)
    kinds = [t.type for t in fig.data]
    assert kinds == ["image", "scatter", "scatter", "scatter"]
    img = fig.data[0]
    # the pixels as they are (plotly draws a source image pixelated with zsmooth=False), one unit each
    assert img.dx == img.dy == 1 and img.x0 == img.y0 == 0 and img.zsmooth is False
    assert _decode(img.source).shape == (28, 28, 3)
    y_range = fig.layout.yaxis.range
    assert y_range[0] > y_range[1]  # image rows go down
    assert fig.layout.yaxis.scaleanchor == "x"
    fig.to_json()  # serialisable as Streamlit will send it
    # no plotly template travels with the figure (Streamlit's theme styles it): what st.plotly_chart sends
    import plotly.io
    import plotly.tools
    sent = json.loads(plotly.io.to_json(plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True)))
    template = sent["layout"].get("template", {})
    assert "layout" not in template and all(t == [{"type": k}] for k, t in template.get("data", {}).items())


def test_input_figure_without_corner_when_undefined() -> None:
    params = (1, 0, 0, 0, 1, 0, 1.5, 1.5)
    res = pg.warp(pg.fallback_digit(), "projective", params, (28, 28))
    fig = viz.input_figure(pg.fallback_digit(), res.grid, pg.outline("projective", params), res.valid)
    assert len(fig.data) == 3  # the top-left corner maps to infinity: no marker


def test_output_figure_shows_empty_pixels_as_checkerboard() -> None:
    v = np.zeros((32, 32, 3), np.float32)
    valid = np.ones((32, 32), bool)
    valid[:4] = False
    fig = viz.output_figure(v, valid)
    shown = _decode(fig.data[0].source)
    assert shown.shape == (32, 32, 3)
    assert shown[:4].min() >= min(viz.CHECKER) and (shown[4:] == 0).all()
    # cells of 2 image pixels, as in the enlarged picture (display_image), not one grey per pixel
    assert shown[0, 0, 0] == shown[0, 1, 0] == viz.CHECKER[0] and shown[0, 2, 0] == viz.CHECKER[1]
    no_grid = viz.output_figure(v, None, show_grid=False)
    assert len(no_grid.data) == len(fig.data) - 1


def test_pipeline_svg_is_valid_and_has_three_thumbnails() -> None:
    ex = pg.pipeline_example(pg.fallback_digit())
    svg = viz.pipeline_svg(ex.u, ex.grid, ex.v, ex.outline)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == ns + "svg"
    assert len(root.findall(f".//{ns}image")) == 3
    assert len(root.findall(f".//{ns}polyline")) >= 10  # grid lines + outline
    text = "".join(root.itertext())
    for word in ("Localisation", "Sampler", "Grid generator", "U (input)", "V (output)"):
        assert word in text
    tag = viz.svg_img_tag(svg, alt='a "quoted" alt')
    assert tag.startswith('<img src="data:image/svg+xml;base64,') and "&quot;quoted&quot;" in tag
    assert base64.b64decode(tag.split("base64,", 1)[1].split('"', 1)[0]).decode() == svg


def test_png_bytes_decodes_to_the_image_enlarged_with_crisp_pixels() -> None:
    img = np.zeros((3, 4), np.float32)
    img[1, 2] = 1.0
    data = viz.png_bytes(img, upscale=5)
    back = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert back.shape == (15, 20, 3)
    assert (back[5:10, 10:15] == 255).all() and back[:5].max() == 0 and back[:, :10].max() == 0
