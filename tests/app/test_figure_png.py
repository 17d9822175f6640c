"""PNG versions of the SVG pictures (issue 8): the pipeline picture and the Figure-1 gallery are one
layout (pages.lab.figures.Scene) written as SVG and painted with Pillow; the PNG must show the same
picture: right size, thumbnails and boxes where the layout puts them, lines clipped to their
thumbnail, text drawn."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from pages.lab import playground as pg
from pages.lab import figures as viz

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NS = "{http://www.w3.org/2000/svg}"
RED, GREEN = (0.9, 0.1, 0.1), (0.1, 0.8, 0.2)


def _decode(data: bytes) -> np.ndarray:
    assert data.startswith(PNG_SIGNATURE)
    im = Image.open(io.BytesIO(data))
    assert im.mode == "RGB"
    return np.asarray(im).astype(int)


def _hex(colour: str) -> np.ndarray:
    c = colour.lstrip("#")
    if len(c) == 3:
        c = "".join(ch * 2 for ch in c)
    return np.array([int(c[i:i + 2], 16) for i in (0, 2, 4)])


def _solid(colour: tuple[float, float, float], size: int = 28) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.float32), (size, size, 3)).copy()


def _identity_grid(size: int = 28, zoom: float = 1.0) -> np.ndarray:
    """Normalised sampling grid (size, size, 2) of pixel centres, times ``zoom``."""
    c = (2 * np.arange(size) + 1) / size - 1
    xx, yy = np.meshgrid(c, c)
    return np.stack([xx, yy], -1) * zoom


def _box_pixels(img: np.ndarray, x: float, y: float, w: float, h: float, s: float, inset: float) -> np.ndarray:
    """Pixels of the user-unit box (x, y, w, h) at scale s, ``inset`` user units inside its border."""
    return img[round((y + inset) * s):round((y + h - inset) * s), round((x + inset) * s):round((x + w - inset) * s)]


def _is_colour(pixels: np.ndarray, colour, tol: int = 40) -> np.ndarray:
    return np.abs(pixels - np.asarray(colour)).max(-1) <= tol


# --------------------------------------------------------------------------- pipeline picture

def test_pipeline_png_has_the_svg_size_times_the_scale():
    ex = pg.pipeline_example(pg.fallback_digit())
    data = viz.pipeline_png(ex.u, ex.grid, ex.v, ex.outline)
    assert _decode(data).shape == (370 * viz.PNG_SCALE, 1200 * viz.PNG_SCALE, 3)
    assert _decode(viz.pipeline_png(ex.u, ex.grid, ex.v, ex.outline, scale=1)).shape == (370, 1200, 3)


def test_pipeline_svg_and_png_share_one_layout():
    ex = pg.pipeline_example(pg.fallback_digit())
    scene = viz.pipeline_scene(ex.u, ex.grid, ex.v, ex.outline)
    svg = viz.pipeline_svg(ex.u, ex.grid, ex.v, ex.outline)
    assert viz.scene_svg(scene) == svg
    assert viz.scene_png(scene) == viz.pipeline_png(ex.u, ex.grid, ex.v, ex.outline)
    root = ET.fromstring(svg)
    images = root.findall(f".//{NS}image")
    thumbs = viz.scene_thumbs(scene)
    assert [(float(e.get("x")), float(e.get("y")), float(e.get("width"))) for e in images] == \
        [(t.x, t.y, t.size) for t in thumbs]
    assert root.get("viewBox") == f"0 0 {scene.width:g} {scene.height:g}"
    texts = "".join(root.itertext())
    for words in viz.scene_texts(scene):
        assert words in texts


def test_pipeline_png_shows_u_and_v_at_the_layout_positions():
    u, v = _solid(RED), _solid(GREEN)
    scene = viz.pipeline_scene(u, _identity_grid(), v, None)
    s = 2
    img = _decode(viz.scene_png(scene, scale=s))
    thumb_u, thumb_grid, thumb_v = viz.scene_thumbs(scene)
    for t, colour in ((thumb_u, RED), (thumb_v, GREEN)):
        inside = _box_pixels(img, t.x, t.y, t.size, t.size, s, inset=3)
        assert _is_colour(inside, np.array(colour) * 255, tol=3).all()
        frame = img[round((t.y + t.size / 2) * s), round(t.x * s)]  # the thin frame on the left edge
        assert np.abs(frame - _hex(viz.FRAME_COLOUR)).max() < 60
        assert (img[round((t.y - 6) * s), round((t.x + t.size / 2) * s)] >= 240).all()  # white above it
    # the grid generator's thumbnail: U under the cyan grid
    inside = _box_pixels(img, thumb_grid.x, thumb_grid.y, thumb_grid.size, thumb_grid.size, s, inset=3)
    assert _is_colour(inside, _hex(viz.GRID_COLOUR)).mean() > 0.05
    assert _is_colour(inside, np.array(RED) * 255).mean() > 0.5


def test_pipeline_png_clips_the_grid_to_its_thumbnail():
    u = _solid(RED)
    scene = viz.pipeline_scene(u, _identity_grid(zoom=3.0), u, None)  # grid three times larger than U
    s = 2
    img = _decode(viz.scene_png(scene, scale=s))
    t = viz.scene_thumbs(scene)[1]
    inside = _box_pixels(img, t.x, t.y, t.size, t.size, s, inset=3)
    assert _is_colour(inside, _hex(viz.GRID_COLOUR)).any()
    ring = _box_pixels(img, t.x - 25, t.y - 25, t.size + 50, t.size + 50, s, inset=0).copy()
    ring[round(22 * s):-round(22 * s), round(22 * s):-round(22 * s)] = 0  # keep a 22-unit band outside
    assert not _is_colour(ring, _hex(viz.GRID_COLOUR)).any()


def test_pipeline_png_draws_the_texts_and_the_boxes():
    u = _solid(RED)
    scene = viz.pipeline_scene(u, _identity_grid(), u, None)
    s = 2
    img = _decode(viz.scene_png(scene, scale=s))
    title = next(it for it in scene.items if isinstance(it, viz.Label) and it.text == "Spatial transformer")
    band = img[round((title.y - 18) * s):round(title.y * s), round((title.x - 100) * s):round((title.x + 100) * s)]
    assert _is_colour(band, _hex(title.fill), tol=60).mean() > 0.05  # blue bold letters
    box = scene.items[0]  # the spatial transformer's dashed rounded box, light blue inside
    assert isinstance(box, viz.Rect) and box.dash
    assert _is_colour(img[round((box.y + 60) * s), round((box.x + 8) * s)], _hex(box.fill), tol=4)
    top_edge = img[round(box.y * s), round((box.x + 30) * s):round((box.x + box.w - 30) * s)]
    on = _is_colour(top_edge, _hex(box.stroke), tol=80)
    assert 0.3 < on.mean() < 0.8  # dashed: partly stroke, partly background


# --------------------------------------------------------------------------- Figure-1 gallery

def _gallery_args(n: int = 3) -> dict:
    inputs = [np.full((28, 28), 0.25 * (i + 1), np.float32) for i in range(n)]
    region = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5]])
    return dict(inputs=inputs, preds=[1, 2, 3][:n], confidences=[0.9, 0.6, 0.3][:n], labels=[1, 5, None][:n],
                regions=[region] * n, outputs=[np.zeros((28, 28), np.float32)] * n, grids=[None] * n,
                captions=[f"#{i}" for i in range(n)])


def test_figure1_gallery_svg_and_png_share_one_layout():
    args = _gallery_args()
    scene = viz.figure1_gallery_scene(**args)
    assert viz.figure1_gallery_svg(**args) == viz.scene_svg(scene)
    img = _decode(viz.figure1_gallery_png(**args))
    assert img.shape == (round(scene.height * viz.PNG_SCALE), round(scene.width * viz.PNG_SCALE), 3)
    assert len(viz.scene_thumbs(scene)) == 9  # (a), (b), (c) for three digits
    assert {"(a)", "(b)", "(c)", "(d)", "90 %", "true 1", "true 5", "#2"} <= set(viz.scene_texts(scene))


def test_figure1_gallery_png_shows_each_digit_and_prediction_where_the_layout_puts_them():
    args = _gallery_args()
    scene = viz.figure1_gallery_scene(**args)
    s = 2
    img = _decode(viz.scene_png(scene, scale=s))
    thumbs = viz.scene_thumbs(scene)
    for i in range(3):
        grey = round(255 * 0.25 * (i + 1))
        a, b, c = thumbs[3 * i:3 * i + 3]  # input, input with region, output
        assert _is_colour(_box_pixels(img, a.x, a.y, a.size, a.size, s, 3), (grey,) * 3, tol=2).all()
        assert _is_colour(_box_pixels(img, c.x, c.y, c.size, c.size, s, 3), (0, 0, 0), tol=2).all()
        # (b): the red region outline at a quarter of the cell, the digit in the middle
        mid = (b.y + b.size / 2) * s
        assert _is_colour(img[round(mid), round((b.x + b.size / 4) * s)], _hex(viz.OUTLINE_COLOUR), tol=50)
        assert _is_colour(img[round(mid), round((b.x + b.size / 2) * s)], (grey,) * 3, tol=2)
    boxes = [it for it in scene.items if isinstance(it, viz.Rect)]
    assert [r.fill for r in boxes] == ["#ebfbee", "#fff5f5", "#f8f9fa"]  # right, wrong, no label
    for r in boxes:
        assert _is_colour(img[round((r.y + 12) * s), round((r.x + 12) * s)], _hex(r.fill), tol=3)
        assert _is_colour(img[round((r.y + r.h / 2) * s), round(r.x * s)], _hex(r.stroke), tol=60)
        assert (img[round((r.y + 25) * s):round((r.y + r.h / 2) * s),
                    round((r.x + r.w / 3) * s):round((r.x + 2 * r.w / 3) * s)].min() < 120)  # the big digit


def test_figure1_gallery_without_transformer_has_two_rows():
    args = _gallery_args()
    plain = {k: args[k] for k in ("inputs", "preds", "confidences", "labels")}
    scene = viz.figure1_gallery_scene(**plain)
    assert len(viz.scene_thumbs(scene)) == 3 and "(b)" not in viz.scene_texts(scene)
    assert _decode(viz.scene_png(scene, scale=1)).shape == (round(scene.height), round(scene.width), 3)


# --------------------------------------------------------------------------- Figure 1 for one digit (explorer)

TITLES = ("(a) input 28×28", "(b) sampled region", "(c) transformer output", "(d) prediction")


def _digit_args(region_scale: float = 0.5) -> dict:
    region = region_scale * np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0]])
    probs = np.array([0.05, 0.6, 0.05, 0.3, 0, 0, 0, 0, 0, 0])
    return dict(image=np.full((28, 28), 0.5, np.float32), series=[("ST", probs), ("CNN", probs[::-1].copy())],
                titles=TITLES, region=region, output=np.zeros((28, 28), np.float32), true_label=3)


def _bars(scene, colour: str) -> list:
    return [it for it in viz._walk(scene.items) if isinstance(it, viz.Rect) and it.fill == colour and not it.stroke]


def test_figure1_digit_bars_are_the_probabilities_on_one_scale():
    scene = viz.figure1_digit_scene(**_digit_args())
    blue, grey = _bars(scene, viz.MODEL_COLOUR), _bars(scene, viz.CONTRAST_COLOUR)
    legend = [r for r in blue + grey if r.w == r.h == 14]  # the legend's two squares
    blue, grey = [r for r in blue if r not in legend], [r for r in grey if r not in legend]
    assert len(blue) == 4 and len(grey) == 4  # zero probabilities draw no bar
    # heights proportional to the probabilities, both series on one axis; each sums to the axis' 100 %
    hb, hg = sorted(r.h for r in blue), sorted(r.h for r in grey)
    assert hb == pytest.approx(hg) and hb[-1] / hb[0] == pytest.approx(0.6 / 0.05)
    ticks = {it.text: it.y for it in viz._walk(scene.items) if isinstance(it, viz.Label)}
    axis = ticks["0%"] - ticks["100%"]  # the height of 100 % on the probability axis
    assert sum(hb) == pytest.approx(axis) and sum(hg) == pytest.approx(axis)  # each series sums to 1
    assert {round(r.y + r.h, 6) for r in blue + grey} == {round(ticks["0%"] - 5, 6)}  # one baseline: the 0 % line
    texts = viz.scene_texts(scene)
    assert texts[:4] == list(TITLES) and {"60%", "true", "ST", "CNN", "100%", "0%"} <= set(texts)
    assert len(viz.scene_thumbs(scene)) == 3


def test_figure1_digit_view_grows_past_the_input_for_a_large_region():
    small = viz.scene_thumbs(viz.figure1_digit_scene(**_digit_args(0.5)))[1]
    large = viz.scene_thumbs(viz.figure1_digit_scene(**_digit_args(1.3)))[1]
    assert small.size == pytest.approx(270.0)  # the region lies inside: the input fills panel (b)
    assert large.size == pytest.approx(270.0 / 1.3, rel=0.02)  # the view covers the region, the input shrinks


def test_figure1_digit_without_transformer_and_its_png():
    args = _digit_args()
    plain = dict(image=args["image"], series=args["series"][:1], titles=(TITLES[0], TITLES[3]))
    scene = viz.figure1_digit_scene(**plain)
    assert len(viz.scene_thumbs(scene)) == 1 and viz.scene_texts(scene)[:2] == [TITLES[0], TITLES[3]]
    assert "CNN" not in viz.scene_texts(scene)  # one series: no legend
    img = _decode(viz.scene_png(scene, scale=1))
    assert img.shape == (round(scene.height), round(scene.width), 3)
    t = viz.scene_thumbs(scene)[0]
    assert _is_colour(_box_pixels(img, t.x, t.y, t.size, t.size, 1, 3), (128,) * 3, tol=2).all()
    ET.fromstring(viz.scene_svg(scene))


# --------------------------------------------------------------------------- painter details

def test_svg_escapes_text_and_declares_the_arrow_marker_only_when_used():
    args = _gallery_args(1)
    args["captions"] = ["<b>&"]
    svg = viz.figure1_gallery_svg(**args)
    assert "&lt;b&gt;&amp;" in svg and "<b>" not in svg and "marker" not in svg
    ET.fromstring(svg)
    u = _solid(RED)
    assert 'marker-end="url(#stnarrow)"' in viz.pipeline_svg(u, _identity_grid(), u)


def test_dashes_follow_the_svg_dash_array():
    line = np.array([[0.0, 0.0], [20.0, 0.0], [20.0, 6.0]])  # 26 units long, one corner
    runs = viz._dash_runs(line, (8, 5))
    lengths = [float(np.sum(np.hypot(*np.diff(r, axis=0).T))) for r in runs]
    assert lengths == pytest.approx([8.0, 8.0])  # 0–8 on, 8–13 off, 13–21 on (round the corner), 21–26 off
    assert np.allclose(runs[1][0], [13.0, 0.0]) and np.allclose(runs[1][-1], [20.0, 1.0])


def test_bad_scale_is_a_clear_error():
    u = _solid(RED)
    with pytest.raises(ValueError, match="scale"):
        viz.scene_png(viz.pipeline_scene(u, _identity_grid(), u), scale=0)


def test_tour_figure1_row_scene_is_the_svg_and_paints(tmp_path):
    import torch

    from pages.lab import tour
    from stn_core.checkpoints import load_model
    from tiny_checkpoints import make_tiny_checkpoint

    make_tiny_checkpoint(tmp_path, "rts", "st-cnn-aff")
    model, _ = load_model(tmp_path / "mnist_rts_st-cnn-aff")
    x = torch.zeros(2, 1, 42, 42)
    x[:, :, 15:27, 18:24] = 1.0
    scene = tour.figure1_row_scene(model, x, [1, 1], ["#0", "#1"])
    assert tour.figure1_row_svg(model, x, [1, 1], ["#0", "#1"]) == viz.scene_svg(scene)
    assert len(viz.scene_thumbs(scene)) == 6
    assert _decode(viz.scene_png(scene, scale=1)).shape == (round(scene.height), round(scene.width), 3)
