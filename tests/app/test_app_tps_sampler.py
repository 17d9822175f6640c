"""Streamlit AppTest for the Thin-plate spline and Nearest vs bilinear pages: they run, the
controls change the output, degenerate input gives warnings (never exceptions or NaN), and the
sampler page shares its URL parameters with the playground. Dragging is tested in a real browser
(tests/test_browser.py): AppTest cannot drive custom components."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from apptest_util import assert_no_exception, downloads, open_page, record_downloads
from pages.lab import tps_editor as te

TPS = "pages/tps.py"
SAMPLER = "pages/sampler.py"


def _metric(at: AppTest, label_start: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label_start))


def _figure(at: AppTest, key: str) -> dict:
    return json.loads(at.get("plotly_chart")[_chart_index(at, key)].proto.spec)


def _chart_index(at: AppTest, key: str) -> int:
    for i, c in enumerate(at.get("plotly_chart")):
        if c.proto.id and key in c.proto.id:
            return i
    raise AssertionError(f"no chart with key {key}")


def _image_source(at: AppTest, key: str) -> str:
    """The PNG data URI of the first image trace of a chart (changes when the picture changes)."""
    return next(t["source"] for t in _figure(at, key)["data"] if t.get("type") == "image")


# --------------------------------------------------------------------------- thin-plate spline

def _table(at, head: str) -> list[str]:
    """The body rows of the markdown table whose header starts with ``head``."""
    table = next(m.value for m in at.markdown if m.value.startswith(head))
    return table.splitlines()[2:]


def test_tps_page_starts_at_the_identity() -> None:
    at = open_page(TPS)
    assert at.title[0].value == "Thin-plate spline"
    assert not at.error and not at.warning
    assert _metric(at, "Bending energy") == "0" and _metric(at, "Affine fit error") == "0"
    assert not at.dataframe and len(_table(at, "| term |")) == 3 and len(_table(at, "| point |")) == 16  # W: K rows
    assert at.button(key="tps_undo").disabled
    assert len(at.get("plotly_chart")) == 3


def test_tps_preset_undo_reset() -> None:
    at = open_page(TPS)
    before = _image_source(at, "tps_fig_output")
    at.button(key="tps_preset_twist").click().run()
    assert_no_exception(at)
    assert float(_metric(at, "Bending energy")) > 0.01
    assert _image_source(at, "tps_fig_output") != before
    assert not at.button(key="tps_undo").disabled
    at.button(key="tps_undo").click().run()
    assert_no_exception(at)
    assert _metric(at, "Bending energy") == "0" and _image_source(at, "tps_fig_output") == before
    at.button(key="tps_preset_random").click().run()
    at.button(key="tps_reset").click().run()
    assert_no_exception(at)
    assert _metric(at, "Bending energy") == "0"
    assert at.session_state["tps_state"].points == te.lattice_points(4)


def test_tps_lattice_size_and_undo_across_sizes() -> None:
    at = open_page(TPS)
    at.button(key="tps_preset_bend").click().run()
    at.radio(key="tps_side").set_value(5).run()
    assert_no_exception(at)
    assert len(_table(at, "| point |")) == 25 and _metric(at, "Bending energy") == "0"
    at.button(key="tps_undo").click().run()
    assert_no_exception(at)
    assert at.radio(key="tps_side").value == 4 and len(_table(at, "| point |")) == 16
    assert float(_metric(at, "Bending energy")) > 0


def test_tps_move_a_point_by_numbers_and_fold_warning() -> None:
    at = open_page(TPS)
    at.selectbox(key="tps_pick").set_value(6).run()
    assert at.number_input(key="tps_px").value == pytest.approx(-1 / 3)
    at.number_input(key="tps_px").set_value(0.2).run()
    at.button(key="tps_move").click().run()
    assert_no_exception(at)
    assert at.session_state["tps_state"].points[5] == pytest.approx((0.2, -1 / 3))
    assert float(_metric(at, "Bending energy")) > 0
    # past its neighbour (point 7 at x = 1/3): the grid folds
    at.number_input(key="tps_px").set_value(0.9).run()
    at.button(key="tps_move").click().run()
    assert_no_exception(at)
    assert any("folds over itself" in w.value for w in at.warning)


def test_tps_regularisation_and_affine_marks() -> None:
    at = open_page(TPS)
    at.button(key="tps_preset_twist").click().run()
    exact = float(_metric(at, "Bending energy"))
    at.select_slider(key="tps_reg").set_value(0.1).run()
    at.checkbox(key="tps_show_affine").check().run()
    assert_no_exception(at)
    assert float(_metric(at, "Bending energy")) < exact
    assert "white dots" in " ".join(c.value for c in at.caption)


def test_tps_state_survives_a_visit_to_home() -> None:
    at = open_page(TPS)
    at.button(key="tps_preset_pinch").click().run()
    at.select_slider(key="tps_reg").set_value(0.01).run()
    at.selectbox(key="tps_out").set_value("64").run()
    energy = _metric(at, "Bending energy")
    at.switch_page("pages/home.py").run()
    assert_no_exception(at)
    at.switch_page(TPS).run()
    assert_no_exception(at)
    assert at.select_slider(key="tps_reg").value == 0.01 and at.selectbox(key="tps_out").value == "64"
    assert _metric(at, "Bending energy") == energy


@pytest.mark.parametrize("points", [
    [(0.0, 0.0)] * 16,                                      # all at one spot
    [(x, x) for x, _ in te.lattice_points(4)],              # on a line
])
def test_tps_degenerate_placements_warn_not_crash(points) -> None:
    at = open_page(TPS)
    at.session_state["tps_state"] = te.EditorState(points=tuple(points))
    at.run()
    assert_no_exception(at)
    assert at.warning and not at.error
    assert len(at.get("plotly_chart")) == 3


def _png(h: int = 30, w: int = 50) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_tps_bird_and_upload() -> None:
    at = open_page(TPS)
    at.radio(key="tps_src").set_value("bird").run()
    assert_no_exception(at)
    assert "CUB" in " ".join(c.value for c in at.caption)
    at.radio(key="tps_src").set_value("upload").run()
    at.file_uploader(key="tps_upload").upload("photo.png", _png(), "image/png").run()
    assert_no_exception(at)
    assert "30×50" in _figure(at, "tps_fig_output")["layout"]["title"]["text"]
    at.file_uploader(key="tps_upload").clear().upload("bad.png", b"not a png", "image/png").run()
    assert_no_exception(at)
    assert at.error and "bad.png" in at.error[0].value


# --------------------------------------------------------------------------- nearest vs bilinear

def test_sampler_page_runs_with_its_default_view() -> None:
    at = open_page(SAMPLER)
    assert at.title[0].value == "Nearest vs bilinear sampling"
    assert not at.error and not at.warning
    q = at.query_params
    assert q["rot"] == "20" and q["sx"] == "0.6" and q["out"] == "128" and q["kind"] == "affine"
    assert q["theta"] != "1,0,0,0,1,0"  # θ follows the sliders
    assert float(_metric(at, "max |autograd")) < 1e-10
    assert _metric(at, "max |∂V/∂x^s| with nearest") == "0"
    titles = [_figure(at, k)["layout"]["title"]["text"] for k in ("sp_fig_nearest", "sp_fig_bilinear")]
    assert titles == ["Nearest (128×128)", "Bilinear (128×128)"]
    # the zoom starts on the pixel where the kernels differ most
    assert (at.slider(key="sp_zi").value, at.slider(key="sp_zj").value) == tuple(at.session_state["sp_maxdiff"])


def test_sampler_slider_changes_outputs_and_url() -> None:
    at = open_page(SAMPLER)
    before = _image_source(at, "sp_fig_bilinear")
    at.slider(key="sp_rot").set_value(45.0).run()
    assert_no_exception(at)
    assert at.query_params["rot"] == "45"
    assert _image_source(at, "sp_fig_bilinear") != before
    at.slider(key="sp_zi").set_value(3).run()
    at.button(key="sp_zmax").click().run()
    assert_no_exception(at)
    assert at.slider(key="sp_zi").value == at.session_state["sp_maxdiff"][0]


def test_sampler_opens_playground_links() -> None:
    at = open_page(SAMPLER, {"image": "mnist-3", "kind": "attention", "sx": "0.5", "tx": "0.2", "out": "64"})
    assert at.radio(key="sp_kind").value == "attention"
    assert at.slider(key="sp_sx").value == 0.5 and at.number_input(key="sp_digit").value == 3
    assert "64×64" in _figure(at, "sp_fig_bilinear")["layout"]["title"]["text"]
    assert not at.warning
    raw = open_page(SAMPLER, {"mode": "raw", "theta": "0.5,0,0.1,0,0.5,0"})
    assert any("from the link" in i.value for i in raw.info)
    assert raw.query_params["theta"] == "0.5,0,0.1,0,0.5,0" and raw.query_params["mode"] == "raw"
    raw.button(key="sp_use_sliders").click().run()
    assert_no_exception(raw)
    assert raw.query_params["mode"] == "intuitive"


@pytest.mark.parametrize("query", [
    {"rot": "abc", "kind": "nope", "image": "mnist-99999"},
    {"mode": "raw", "theta": "0,0,0,0,0,0"},
])
def test_sampler_bad_links_warn_not_crash(query) -> None:
    at = open_page(SAMPLER, query)
    assert at.warning or at.error
    assert len(at.get("plotly_chart")) >= 6


def test_sampler_experiment_and_aliasing() -> None:
    at = open_page(SAMPLER)
    assert any("Run the experiment" in i.value for i in at.info)
    assert len(at.get("image")) == 4  # the aliasing demo (zone plate)
    at.button(key="sp_ex_run").click().run()
    assert_no_exception(at)
    ex = at.session_state["sp_ex_result"]
    assert ex.runs["bilinear"].losses[-1] < 0.5 * ex.runs["bilinear"].losses[0]
    assert (ex.runs["nearest"].thetas == ex.runs["nearest"].thetas[0]).all()
    text = " ".join(c.value for c in at.caption)
    assert "every gradient is zero" in text
    _figure(at, "sp_fig_loss")
    _figure(at, "sp_fig_theta")
    at.radio(key="sp_alias").set_value("image").run()
    assert_no_exception(at)
    captions = [im.proto.imgs[0].caption for im in at.get("image")]
    assert "input (28×28)" in captions and "nearest ↓4 (7×7)" in captions


def test_sampler_bird_photo() -> None:
    at = open_page(SAMPLER, {"image": "bird-2"})
    assert at.radio(key="sp_src").value == "bird" and not at.error
    assert at.query_params["image"] == "bird-2"


def test_tps_link_reopens_the_points() -> None:
    pts = [(-0.67, -0.67), (0.0, -0.9), (0.67, -0.67), (-0.67, 0.0), (0.2, 0.1), (0.67, 0.0),
           (-0.67, 0.67), (0.0, 0.67), (0.67, 0.67)]
    q = {"image": "mnist-3", "pts": ",".join(f"{v:g}" for p in pts for v in p), "reg": "0.01", "out": "64"}
    at = open_page(TPS, q)
    assert not at.warning and not at.error
    assert at.session_state["tps_state"].points == tuple(tuple(p) for p in pts)
    assert at.query_params["pts"] == q["pts"] and at.query_params["reg"] == "0.01"
    bad = open_page(TPS, {"pts": "1,2,3"})
    assert any("pts=" in w.value for w in bad.warning)


def test_sampler_downloads_are_made_on_click_each_its_own_picture(monkeypatch) -> None:
    seen = record_downloads(monkeypatch)
    at = open_page(SAMPLER)
    assert_no_exception(at)
    buttons = [b for b in at.get("download_button") if "sp_alias_png_" in b.proto.id]
    assert len(buttons) == 4 and all(b.proto.deferred_file_id and not b.proto.url for b in buttons)  # nothing encoded
    pngs = [seen[b.proto.deferred_file_id]() for b in buttons]  # what four clicks would get
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    assert len(set(pngs)) == 4  # the input and three different down-scalings, not one picture four times
    assert downloads(at, seen, "Download PNG") == pngs  # the helper makes deferred data as a click would
