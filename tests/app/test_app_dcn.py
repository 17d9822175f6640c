"""Streamlit AppTest of the STN vs deformable convolution page (pages/dcn.py).

Checkpoints come from $STN_LAB_CHECKPOINTS: an empty folder (the page explains what to train) and a
folder of tiny untrained checkpoints saved by the tests (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tiny_checkpoints import make_tiny
from stn_core import registry as reg
from stn_core.analysis import stn_vs_dcn as svd

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
PAGE = "pages/dcn.py"
TIMEOUT = 90


@pytest.fixture(scope="module")
def ckdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dcn_checkpoints")
    make_tiny(d, "r", "dcn", test_error=1.11)
    make_tiny(d, "r", "st-cnn-aff", test_error=0.77)
    make_tiny(d, "rts", "st-cnn-aff", test_error=0.66)
    return d


def _open(monkeypatch, folder: Path, query: dict | None = None) -> AppTest:
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(folder))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if query:
        at.query_params = dict(query)
    at.switch_page(PAGE).run()
    _ok(at)
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _text(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [m.value for m in at.info] + [c.value for c in at.caption])


def _figs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _trace(fig: dict, prefix: str) -> dict:
    return next(t for t in fig["data"] if str(t.get("name", "")).startswith(prefix))


def test_no_checkpoints_explains_what_to_train(monkeypatch, tmp_path):
    at = _open(monkeypatch, tmp_path)
    text = _text(at)
    assert "python -m stn_core.train --task mnist-rts --model dcn --out checkpoints/mnist_rts_dcn" in text
    assert "--model st-cnn --transform affine" in text
    assert not at.error
    # the comparison table is still there, with "not trained yet"
    table = at.table[0].value
    assert list(table.index) == ["CNN", "ST-CNN Aff", "ST-CNN TPS", "DCN"]
    assert set(table["test error"]) == {"not trained yet"}
    assert table["numbers per image"].iloc[-1] == f"{2 * 81 * 34 * 34 + 2 * 49 * 11 * 11:,}"


def test_opens_on_the_distortion_that_has_a_dcn(monkeypatch, ckdir, tmp_path):
    at = _open(monkeypatch, ckdir)
    assert at.radio(key="dcn_dist").value == "r"  # only R has a DCN here
    assert "No DCN trained" not in _text(at)
    assert svd.default_distortion(tmp_path) == "rts"  # nothing trained: RTS, the paper's headline task
    make_tiny(tmp_path, "e", "dcn", final=False)
    assert svd.default_distortion(tmp_path) == "e"
    make_tiny(tmp_path, "p", "dcn")
    assert svd.default_distortion(tmp_path) == "p"  # a finished one first


def test_only_the_st_cnn_on_rts(monkeypatch, ckdir):
    at = _open(monkeypatch, ckdir, {"dist": "rts"})
    assert at.radio(key="dcn_dist").value == "rts"
    text = _text(at)
    assert "No DCN trained on RTS yet" in text and "mnist_rts_dcn" in text
    names = {t.get("name") for f in _figs(at) for t in f["data"]}
    assert "sampled region" in names and "output locations (click one)" not in names
    assert "0.66 %" in list(at.table[-1].value["test error"])


def test_both_models_and_the_location_sliders(monkeypatch, ckdir):
    at = _open(monkeypatch, ckdir, {"dist": "r", "index": "3"})
    assert at.radio(key="dcn_dist").value == "r" and at.number_input(key="dcn_index").value == 3
    assert not at.info or all("trained" not in i.value or "TPS" in i.value for i in at.info)
    figs = _figs(at)
    taps = next(f for f in figs if any(t.get("name") == "output locations (click one)" for t in f["data"]))
    assert at.slider(key="dcn_row").max == 3 and at.slider(key="dcn_col").max == 3  # conv 2 output 4×4
    before = _trace(taps, "conv 2 (7×7) taps at row")
    assert before["name"].endswith(f"row {at.slider(key='dcn_row').value}, col {at.slider(key='dcn_col').value}")
    at.slider(key="dcn_row").set_value(0).run()
    at.slider(key="dcn_col").set_value(3).run()
    _ok(at)
    figs = _figs(at)
    after = _trace(next(f for f in figs if any(t.get("name") == "output locations (click one)" for t in f["data"])),
                   "conv 2 (7×7) taps at row")
    assert after["name"] == "conv 2 (7×7) taps at row 0, col 3"
    assert at.query_params["row"] in ("0", ["0"]) and at.query_params["col"] in ("3", ["3"])
    field = next(f for f in figs if any(str(t.get("name", "")).startswith("deformed (") for t in f["data"]))
    assert len(field["data"]) == 3
    assert sum(1 for f in figs for t in f["data"] if t.get("type") == "heatmap") == 2  # offsets of both layers
    md = "\n".join(m.value for m in at.markdown)
    assert "DCN: **" in md and "ST-CNN Aff: **" in md
    rows = at.table[-1].value
    assert list(rows["test error"])[1] == "0.77 %" and list(rows["test error"])[3] == "1.11 %"
    # TPS is not trained on R: an info with its command, the DCN side still works
    at.radio(key="dcn_st").set_value("tps").run()
    _ok(at)
    assert "--model st-cnn --transform tps --out checkpoints/mnist_r_st-cnn-tps" in _text(at)
    # the digit changes with the sidebar controls
    at.slider(key="dcn_rot").set_value(30.0).run()
    _ok(at)
    assert "distorted further" in _text(at)
