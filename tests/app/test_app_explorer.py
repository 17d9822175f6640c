"""Streamlit AppTest of the Trained model explorer page (pages/explorer.py).

The page reads its checkpoints from $STN_LAB_CHECKPOINTS: an empty folder (the friendly "train one"
message), and a folder of tiny untrained checkpoints saved by the tests (no training)."""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tiny_checkpoints import make_tiny_checkpoint
from apptest_util import downloads, record_downloads
from pages.lab import figures as viz
from stn_core import registry as reg

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
PAGE = "pages/explorer.py"
TIMEOUT = 60


@pytest.fixture(scope="module")
def ckdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("explorer_checkpoints")
    make_tiny_checkpoint(d, "rts", "st-cnn-aff", test_error=0.61)
    make_tiny_checkpoint(d, "rts", "cnn", test_error=1.02)
    make_tiny_checkpoint(d, "e", "st-fcn-tps", test_error=2.2)
    return d


def _open(monkeypatch, folder: Path) -> AppTest:
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(folder))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page(PAGE).run()
    _ok(at)
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _figure1(at: AppTest) -> str:
    """The SVG document of "Figure 1 for this digit" (the page's first st.html picture)."""
    body = at.html[0].proto.body
    assert 'alt="Figure 1 for this digit' in body, body[:200]
    return base64.b64decode(re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', body).group(1)).decode()


def _texts(svg: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


def _input_picture(at: AppTest) -> str:
    """The data URI of panel (a), the input digit (the figure's first image)."""
    return re.search(r'<image [^>]*href="([^"]+)"', _figure1(at)).group(1)


def _markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_no_checkpoints_says_how_to_train(monkeypatch, tmp_path):
    at = _open(monkeypatch, tmp_path)
    assert at.title[0].value == "Trained model explorer"
    info = " ".join(i.value for i in at.info)
    assert "No trained checkpoints" in info and "python -m stn_core.train --task mnist-rts --model st-cnn" in info
    assert not at.error and not at.html
    md = _markdown(at)
    assert md.count("not trained yet") == 40 and "| | paper | 0.7 | 0.5 | 0.8 | 1.2 | 1.7 |" in md




def test_figure1_with_tiny_checkpoints(monkeypatch, ckdir):
    seen = record_downloads(monkeypatch)
    at = _open(monkeypatch, ckdir)
    assert at.radio(key="ex_dist").value == "rts" and at.selectbox(key="ex_model").value == "st-cnn-aff"
    assert not at.error and not at.warning
    md = _markdown(at)
    assert "**ST-CNN Aff** on RTS" in md and "test error **0.61 %** on 10,000 fixed test digits" in md
    assert "paper: 0.5 %" in md and "the plain CNN:" in md and "true class" in md
    assert not at.get("plotly_chart")  # Figure 1 is one SVG picture: no plotly.js for this page
    texts = _texts(_figure1(at))
    assert texts[:4] == ["(a) input 42×42", "(b) sampled region", "(c) transformer output", "(d) prediction"]
    assert "ST-CNN Aff" in texts and "CNN" in texts  # the legend of the two series
    assert _figure1(at).count("<image ") == 3  # (a), (b) and (c) show pictures
    assert len(at.html) == 3  # Figure 1, the gallery and the mistakes gallery (SVG images)
    assert all("data:image/svg+xml;base64," in h.proto.body for h in at.html)
    pngs, svgs = downloads(at, seen, "Download PNG"), downloads(at, seen, "Download SVG")
    assert len(pngs) == len(svgs) == 3  # one of each per picture
    assert all(d.startswith(b"\x89PNG\r\n\x1a\n") for d in pngs) and all(d.startswith(b"<svg") for d in svgs)
    assert "mistakes in the first 500 test digits" in md and "| ST-CNN Aff | ours | not trained yet | **0.61** |" in md
    # the goals, checked from the same numbers, and no longer-schedule section without checkpoints/long
    assert ("| RTS | 0.61 (ST-CNN Aff) | 0.5 | +0.11 | yes | so far; not trained: ST-CNN Proj, ST-CNN TPS | "
            "not all trained |") in md
    assert "Longer schedule" not in md


#: a longer run than the tiny table cells (50 × 32)
LONG = {"steps": 200, "train_args": {"steps": 200, "batch": 32, "lr": 0.01, "momentum": 0.9, "loc_lr_mult": 1.0}}


def test_longer_schedule_runs_are_listed_beside_the_table(monkeypatch, tmp_path):
    make_tiny_checkpoint(tmp_path, "rts", "st-cnn-aff", test_error=2.6)
    make_tiny_checkpoint(tmp_path / reg.LONG_SUBDIR, "rts", "st-cnn-aff", test_error=1.1, samples_per_s=30000.0,
                         **LONG)
    at = _open(monkeypatch, tmp_path)
    md = _markdown(at)
    assert "**Longer schedule**" in md and "| RTS | ST-CNN Aff | 200 × 32 | **1.10** | 2.60 | 0.5 |" in md
    assert "the best RTS ST-CNN reaches 1.10 % (ST-CNN Aff)" in md
    # and they can be explored: after the Table 1 models, with the plain CNN of the same schedule for contrast
    make_tiny_checkpoint(tmp_path, "rts", "cnn", test_error=7.0)
    make_tiny_checkpoint(tmp_path / reg.LONG_SUBDIR, "rts", "cnn", test_error=3.0, **LONG)
    at = _open(monkeypatch, tmp_path)
    assert at.selectbox(key="ex_model").options == ["CNN: 7.00 %", "ST-CNN Aff: 2.60 %",
                                                    "CNN, 200 steps: 3.00 %", "ST-CNN Aff, 200 steps: 1.10 %"]
    at.selectbox(key="ex_model").set_value("long:st-cnn-aff").run()
    _ok(at)
    md = _markdown(at)
    assert "**ST-CNN Aff, 200 steps** on RTS" in md and "test error **1.10 %**" in md and "paper: 0.5 %" in md
    texts = _texts(_figure1(at))
    assert "ST-CNN Aff, 200 steps" in texts and "CNN, 200 steps" in texts
    assert "the plain CNN (CNN, 200 steps)" in md


def test_controls_change_the_input(monkeypatch, ckdir):
    at = _open(monkeypatch, ckdir)
    before = _input_picture(at)
    at.slider(key="ex_rot").set_value(30.0).run()
    _ok(at)
    assert _input_picture(at) != before
    at.button(key="ex_reset").click().run()
    _ok(at)
    assert at.slider(key="ex_rot").value == 0.0 and _input_picture(at) == before
    at.button(key="ex_next").click().run()
    _ok(at)
    assert at.number_input(key="ex_index").value == 1 and _input_picture(at) != before


def test_switch_distortion_and_model(monkeypatch, ckdir):
    at = _open(monkeypatch, ckdir)
    at.radio(key="ex_dist").set_value("e").run()
    _ok(at)
    assert at.selectbox(key="ex_model").value == "st-fcn-tps"
    svg = _figure1(at)
    assert _texts(svg)[0] == "(a) input 28×28"
    assert viz.GRID_COLOUR in svg  # TPS: the warped sampling grid
    assert len(re.findall(f'width="9" height="9" rx="4.5" fill="{viz.LATTICE_COLOUR}"', svg)) == 16  # its 16 control points
    assert "no plain CNN trained on E yet" in _markdown(at)
    at.radio(key="ex_dist").set_value("r").run()
    _ok(at)
    assert any("No model has been trained on R" in i.value for i in at.info)
    at.radio(key="ex_dist").set_value("rts").run()
    at.selectbox(key="ex_model").set_value("cnn").run()
    _ok(at)
    assert _texts(_figure1(at))[:2] == ["(a) input 42×42", "(d) prediction"]  # no (b), (c) without a transformer
    assert _figure1(at).count("<image ") == 1 and any("no spatial transformer" in i.value for i in at.info)


def test_open_a_mistake(monkeypatch, ckdir):
    at = _open(monkeypatch, ckdir)
    first = at.selectbox(key="ex_open").options[0]
    at.button(key="ex_open_btn").click().run()
    _ok(at)
    index = int(first.split(":")[0].lstrip("#"))
    assert at.number_input(key="ex_index").value == index and at.radio(key="ex_src").value == "test"


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_and_draw(monkeypatch, ckdir):
    at = _open(monkeypatch, ckdir)
    at.radio(key="ex_src").set_value("upload").run()
    _ok(at)
    assert any("Upload a picture" in i.value for i in at.info)
    img = np.full((60, 40), 255, np.uint8)
    img[10:50, 18:24] = 0  # a dark "1" on white paper
    at.file_uploader(key="ex_upload").upload("one.png", _png(img), "image/png").run()
    _ok(at)
    assert any("inverted" in i.value for i in at.info) and not at.error
    assert "true class" not in _markdown(at)  # an upload has no label
    at.file_uploader(key="ex_upload").clear().upload("bad.png", b"not a png", "image/png").run()
    _ok(at)
    assert at.error and "bad.png" in at.error[0].value
    at.radio(key="ex_src").set_value("draw").run()
    _ok(at)
    assert "Draw a digit on the black pad" in _markdown(at)


def test_corrupt_checkpoint_gives_an_error_not_a_traceback(monkeypatch, tmp_path, ckdir):
    for f in ckdir.glob("mnist_rts_st-cnn-aff.*"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    weights = tmp_path / "mnist_rts_st-cnn-aff.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])  # truncated
    at = _open(monkeypatch, tmp_path)
    assert at.error and "cannot be loaded" in at.error[0].value and "python -m stn_core.train" in at.error[0].value
    assert "| ST-CNN Aff | ours |" in _markdown(at)  # Table 1 still shows
    (tmp_path / "mnist_rts_st-cnn-aff.json").write_text("{broken")
    at = _open(monkeypatch, tmp_path)
    assert at.error and "cannot be used" in at.error[0].value and "not valid JSON" in at.error[0].value


def test_without_full_mnist_the_shipped_digits_are_used(monkeypatch, ckdir):
    import streamlit as st

    from stn_core.data import tasks as ds
    from stn_core.data.common import DataError

    def missing(*a, **k):
        raise DataError("MNIST test files not found in /nowhere")

    monkeypatch.setattr(ds, "fixed_test_set", missing)
    st.cache_resource.clear()  # the page caches the test digits per task
    st.cache_data.clear()
    try:
        at = _open(monkeypatch, ckdir)
        assert "Test digit (0–499)" in at.number_input(key="ex_index").label
        assert any("500 shipped test digits" in c.value for c in at.caption)
        assert at.selectbox(key="ex_scan").options == ["500 (all)"]
        assert not at.error
    finally:
        st.cache_resource.clear()
        st.cache_data.clear()


def test_export_of_the_learned_theta_and_link(monkeypatch, ckdir):
    at = _open(monkeypatch, ckdir)
    assert at.query_params["dist"] in reg.DISTORTIONS and "model" in at.query_params
    at.slider(key="ex_exp_frames").set_value(3).run()
    at.button(key="ex_exp_make").click().run()
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    assert any("learned-warp.gif" in str(b.proto) for b in at.get("download_button"))


def test_shared_link_reopens_model_and_digit(monkeypatch, ckdir):
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(ckdir))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.query_params["dist"], at.query_params["model"], at.query_params["digit"] = "rts", "cnn", "7"
    at.switch_page(PAGE).run()
    _ok(at)
    assert at.radio(key="ex_dist").value == "rts" and at.selectbox(key="ex_model").value == "cnn"
    assert at.number_input(key="ex_index").value == 7


def test_tc_column_shows_a_cluttered_model_and_its_paper_number(monkeypatch, tmp_path):
    # TC (translated + cluttered, 60×60): a tiny ST-FCN trained "on TC", its 60×60 test digits with clutter,
    # and the paper's text number beside it in Table 1
    make_tiny_checkpoint(tmp_path, "tc", "st-fcn-aff", test_error=2.4)
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.query_params = {"dist": "tc", "model": "st-fcn-aff"}
    at.switch_page(PAGE).run()
    _ok(at)
    assert at.radio(key="ex_dist").value == "tc"
    assert _figure1(at).count("<image ") == 3, "the digit, the sampled region and the output are drawn"
    md = _markdown(at)
    assert "| ST-FCN Aff | ours |" in md and "**2.40** |" in md
    assert "| | paper | 1.2 | 0.8 | 1.5 | 2.7 | 2 |" in md  # ST-FCN Aff: R, RTS, P, E and TC (the text's 2.0 %)
