"""Streamlit AppTest of the MNIST addition page (pages/addition.py).

Checkpoints come from $STN_LAB_CHECKPOINTS: an empty folder (the "train them" message, no crash)
and a folder of tiny untrained checkpoints saved here (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from apptest_util import assert_no_exception, open_page
from stn_core import registry as reg
from tiny_checkpoints import make_tiny_addition_checkpoint

PAGE = "pages/addition.py"
@pytest.fixture(scope="module")
def ckdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("addition_checkpoints")
    make_tiny_addition_checkpoint(d, "2st-fcn", test_error=5.5)
    make_tiny_addition_checkpoint(d, "fcn", test_error=60.0, final=False, steps=5)
    return d


def _figs(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_no_checkpoints_gives_the_training_command(monkeypatch, tmp_path):
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(tmp_path))
    at = open_page(PAGE)
    infos = " ".join(i.value for i in at.info)
    assert "scripts/train_addition.py" in infos
    assert at.get("plotly_chart"), "the input pair is shown even without a model"
    assert at.query_params["model"] in ("2st-fcn", ["2st-fcn"])


def test_two_transformers_boxes_outputs_and_prediction(monkeypatch, ckdir):
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(ckdir))
    at = open_page(PAGE, {"a": "3", "b": "7", "seed": "42", "model": "2st-fcn"})
    assert at.number_input(key="add_a").value == 3 and at.number_input(key="add_seed").value == 42
    figs = _figs(at)
    pair = figs[0]
    boxes = [t for t in pair["data"] if t.get("type") == "scatter" and t.get("mode") == "lines"]
    assert {t["name"] for t in boxes} == {"transformer 1", "transformer 2"}
    assert len(boxes) == 4  # each box over both channels
    marks = [t["name"] for t in pair["data"] if t.get("mode") == "markers"]
    assert sorted(marks) == ["centre of box 1"] * 2 + ["centre of box 2"] * 2 + ["digit centre"] * 2
    assert any("Probability of each sum" in json.dumps(f["layout"].get("title", "")) for f in figs)
    outputs = figs[-1]
    assert sum(t.get("type") == "heatmap" for t in outputs["data"]) == 4  # 2 transformers × 2 channels
    md = " ".join(m.value for m in at.markdown)
    assert "Predicted sum" in md and "transformer 1" in md
    assert "box centre is" in md and "px from digit 1's centre" in md and "within 4.2 px" in md
    # each model's test error with the samples it saw (train_args 10 × 8), beside the paper's
    assert "2×ST-FCN: 5.5 % after 80 samples · paper 5.8 % after 38.4 M" in md
    # the comparison table lists all four models; the missing ones get their command
    table = at.dataframe[0].value
    assert list(table["model"]) == [reg.ADDITION_LABELS[k] for k in reg.ADDITION_KEYS]
    infos = " ".join(i.value for i in at.info)
    assert "--models cnn" in infos and "--models st-fcn" in infos


def test_controls_random_pair_and_missing_model(monkeypatch, ckdir):
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(ckdir))
    at = open_page(PAGE, {"a": "0", "b": "1", "seed": "0"})
    at.number_input(key="add_seed").set_value(5).run()
    assert_no_exception(at)
    assert at.query_params["seed"] in ("5", ["5"])
    at.button(key="add_random").click().run()
    assert_no_exception(at)
    at.radio(key="add_model").set_value("cnn").run()
    assert_no_exception(at)
    assert "--models cnn" in " ".join(i.value for i in at.info)
    at.radio(key="add_model").set_value("fcn").run()
    assert_no_exception(at)
    assert "has no spatial transformer" in " ".join(c.value for c in at.caption)


def test_bad_query_values_warn(monkeypatch, ckdir):
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(ckdir))
    at = open_page(PAGE, {"a": "99999", "seed": "x", "model": "nope"})
    warns = " ".join(w.value for w in at.warning)
    assert "a='99999'" in warns and "seed='x'" in warns and "model='nope'" in warns
    assert at.number_input(key="add_a").value == 0


def test_drawn_digits_get_a_pad_and_no_true_sum(monkeypatch, ckdir):
    """Digit 2 drawn (from the link): a pad for it, the pair without a true sum; the drawing
    itself arrives through the pad's callback, here put straight into the session state."""
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(ckdir))
    at = open_page(PAGE, {"a": "3", "src_b": "draw", "model": "2st-fcn"})
    assert_no_exception(at)
    assert at.radio(key="add_src_b").value == "draw" and at.radio(key="add_src_a").value == "test"
    md = " ".join(m.value for m in at.markdown)
    assert "Draw digit 2" in md and "Draw digit 1" not in md
    assert "Digit 2 is empty until you draw it." in " ".join(i.value for i in at.info)
    assert at.query_params["src_b"] in ("draw", ["draw"]) and "src_a" not in at.query_params
    pad = np.zeros((28, 28), np.float32)
    pad[6:22, 12:16] = 1.0                                         # a drawn "1"
    at.session_state["add_drawing_b"] = pad
    at.run()
    assert_no_exception(at)
    assert "Digit 2 is empty" not in " ".join(i.value for i in at.info)
    title = json.dumps(_figs(at)[0]["layout"]["title"])
    assert "+ drawn" in title
    assert "true sum" not in md  # no label for a drawn digit: no ✓ / ✗
    at.radio(key="add_src_a").set_value("draw").run()
    assert_no_exception(at)
    assert "Draw digit 1" in " ".join(m.value for m in at.markdown)
