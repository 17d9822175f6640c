"""Streamlit AppTest for every page: the pages run, controls change θ, the URL holds the view,
and bad input gives warnings/errors instead of exceptions."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from apptest_util import app, assert_no_exception, downloads, open_page, record_downloads

PLAYGROUND = "pages/playground.py"


def _playground(query: dict[str, str] | None = None) -> AppTest:
    """The playground page, opened (like a shared link) with ``query``."""
    return open_page(PLAYGROUND, query)


def _fig_title(at: AppTest, i: int) -> str:
    """Title of the i-th plotly figure of the page (0: input, 1: output)."""
    return json.loads(at.get("plotly_chart")[i].proto.spec)["layout"]["title"]["text"]


def _theta(at: AppTest) -> str:
    """The θ matrix as shown (first LaTeX element of the page)."""
    return at.latex[0].value


def test_home_page_runs() -> None:
    at = app().run()
    assert_no_exception(at)
    assert at.title[0].value == "STN Lab"
    assert any("data:image/svg+xml;base64," in h.proto.body for h in at.html)  # the pipeline picture
    formulas = " ".join(x.value for x in at.latex)
    assert r"f_{\mathrm{loc}}" in formulas and "A_\\theta" in formulas and "k(x_i^s - m)" in formulas
    assert not at.error and not at.warning




def test_home_page_offers_the_picture_as_png_and_svg(monkeypatch) -> None:
    seen = record_downloads(monkeypatch)
    at = app().run()
    assert_no_exception(at)
    assert downloads(at, seen, "Download PNG")[0].startswith(b"\x89PNG\r\n\x1a\n")
    assert downloads(at, seen, "Download SVG")[0].startswith(b"<svg")


def test_playground_runs_and_writes_the_url() -> None:
    at = _playground()
    assert at.title[0].value == "Transform playground"
    assert r"\begin{bmatrix} 1.000 & 0.000 & 0.000 \\ 0.000 & 1.000 & 0.000 \end{bmatrix}" in _theta(at)
    q = at.query_params
    assert q["kind"] == "affine" and q["mode"] == "intuitive" and q["theta"] == "1,0,0,0,1,0"
    assert q["image"] == "mnist-0" and q["sampling"] == "bilinear" and q["out"] == "same"
    assert len(at.get("plotly_chart")) == 2
    assert not at.error


def test_preset_changes_theta() -> None:
    at = _playground()
    before = _theta(at)
    at.button(key="preset_rotate45").click().run()
    assert_no_exception(at)
    assert _theta(at) != before and "0.707" in _theta(at)
    assert at.slider(key="pg_rot").value == 45.0
    assert at.query_params["rot"] == "45"
    at.button(key="reset").click().run()
    assert_no_exception(at)
    assert _theta(at) == before


def test_slider_changes_theta_and_url() -> None:
    at = _playground()
    before = _theta(at)
    at.slider(key="pg_sx").set_value(0.5).run()
    assert_no_exception(at)
    assert _theta(at) != before and "0.500" in _theta(at)
    assert at.query_params["sx"] == "0.5" and at.query_params["theta"].startswith("0.5,")
    assert at.number_input(key="pg_raw_0").value == pytest.approx(0.5)  # raw follows intuitive


def test_editing_raw_switches_to_raw_mode() -> None:
    at = _playground()
    at.number_input(key="pg_raw_2").set_value(0.25).run()
    assert_no_exception(at)
    assert at.radio(key="pg_mode").value == "raw"
    assert "0.250" in _theta(at)
    assert at.query_params["mode"] == "raw" and at.query_params["theta"] == "1,0,0.25,0,1,0"
    # moving a slider goes back to intuitive mode and recomputes θ from the sliders
    at.slider(key="pg_rot").set_value(10.0).run()
    assert_no_exception(at)
    assert at.radio(key="pg_mode").value == "intuitive" and "0.250" not in _theta(at)


def test_query_params_load_the_stated_view() -> None:
    at = _playground({"image": "mnist-7", "kind": "projective", "mode": "raw",
                      "theta": "0.5,0,0.1,0,0.5,-0.2,0.1,0.2", "sampling": "nearest", "out": "64"})
    assert at.radio(key="pg_kind").value == "projective"
    assert at.radio(key="pg_mode").value == "raw"
    assert at.number_input(key="pg_digit").value == 7
    assert at.number_input(key="pg_raw_7").value == pytest.approx(0.2)
    assert at.radio(key="pg_sampling").value == "nearest" and at.selectbox(key="pg_out").value == "64"
    assert "H_\\theta" in _theta(at) and "0.100 & 0.200 & 1.000" in _theta(at)
    q = at.query_params
    assert q["theta"] == "0.5,0,0.1,0,0.5,-0.2,0.1,0.2" and q["image"] == "mnist-7" and q["out"] == "64"
    assert not at.warning and not at.error


def test_query_params_intuitive_view() -> None:
    at = _playground({"kind": "attention", "sx": "0.5", "ty": "-0.35"})
    assert at.slider(key="pg_sx").value == 0.5 and at.slider(key="pg_ty").value == -0.35
    assert "(0.500,\\ 0.000,\\ -0.350)" in _theta(at)


@pytest.mark.parametrize("query", [
    {"rot": "abc", "sx": "nan", "tx": "1e400", "kind": "nope", "image": "mnist-99999"},
    {"mode": "raw", "theta": "nan,1,0,0,1,0"},
    {"mode": "raw", "kind": "projective", "theta": "garbage"},
    {"image": "<script>", "out": "-1", "sampling": "bicubic"},
])
def test_invalid_query_params_warn_not_crash(query: dict[str, str]) -> None:
    at = _playground(query)
    assert at.warning, "a bad link must say what was ignored"
    assert len(at.get("plotly_chart")) == 2  # the page still draws
    assert "nan" not in _theta(at).lower()


def test_singular_theta_gives_an_error_and_keeps_drawing() -> None:
    at = _playground({"mode": "raw", "theta": "0,0,0,0,0,0"})
    assert at.error and "singular" in at.error[0].value
    assert len(at.get("plotly_chart")) == 2
    # typing a singular value after a good one keeps the last good output
    at = _playground({"mode": "raw", "theta": "0.5,0,0,0,0.5,0"})
    at.number_input(key="pg_raw_0").set_value(0.0).run()
    at.number_input(key="pg_raw_4").set_value(0.0).run()
    assert_no_exception(at)
    assert "last valid" in at.error[0].value


def test_projective_points_at_infinity_warn() -> None:
    at = _playground({"kind": "projective", "px": "0.5", "py": "1"})
    assert any("infinity" in w.value for w in at.warning)
    assert not at.error


def test_kind_change_in_raw_mode_converts_parameters() -> None:
    at = _playground({"mode": "raw", "theta": "0.5,0.1,0.2,-0.1,0.5,0.3"})
    at.radio(key="pg_kind").set_value("projective").run()
    assert_no_exception(at)
    assert at.radio(key="pg_mode").value == "raw"
    assert at.query_params["theta"] == "0.5,0.1,0.2,-0.1,0.5,0.3,0,0"
    at.radio(key="pg_kind").set_value("attention").run()
    assert_no_exception(at)
    assert at.query_params["theta"].split(",")[1:] == ["0.2", "0.3"]


def test_bird_image_and_output_size() -> None:
    at = _playground({"image": "bird-1", "out": "128"})
    assert at.radio(key="pg_src").value == "bird"
    assert "128×128" in _fig_title(at, 1)
    assert "(28×28)" not in _fig_title(at, 0)  # a photo, not a digit


def test_state_survives_a_visit_to_home() -> None:
    at = _playground()
    at.slider(key="pg_rot").set_value(20.0).run()
    at.switch_page("pages/home.py").run()
    assert_no_exception(at)
    at.switch_page(PLAYGROUND).run()
    assert_no_exception(at)
    assert at.slider(key="pg_rot").value == 20.0


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_good_then_bad_file() -> None:
    at = _playground()
    at.radio(key="pg_src").set_value("upload").run()
    assert_no_exception(at)
    assert any("Upload a picture" in i.value for i in at.info)
    at.file_uploader(key="pg_upload").upload("photo.png", _png_bytes(), "image/png").run()
    assert_no_exception(at)
    assert "(40×60)" in _fig_title(at, 0) and not at.error
    assert at.query_params["image"] == "upload"
    at.file_uploader(key="pg_upload").clear().upload("broken.png", b"this is not a png", "image/png").run()
    assert_no_exception(at)
    assert at.error and "broken.png" in at.error[0].value and "photo.png" in at.error[0].value
    assert "(40×60)" in _fig_title(at, 0)  # still the previous good upload


# --------------------------------------------------------------------------- export (issue 8)

def test_playground_exports_a_gif_of_the_current_theta() -> None:
    at = _playground({"image": "mnist-0", "kind": "affine", "rot": "30"})
    at.slider(key="pg_exp_frames").set_value(4).run()
    at.button(key="pg_exp_make").click().run()
    assert_no_exception(at)
    assert not at.error, [e.value for e in at.error]
    buttons = at.get("download_button")
    assert any("playground-warp.gif" in str(b.proto) for b in buttons), [str(b.proto)[:200] for b in buttons]
    popovers = [b for b in at.sidebar if getattr(b, "type", None) == "popover"]
    assert any("Link to this view" in b.proto.popover.label for b in popovers)
