"""Streamlit AppTest of the 3-D transformer page (pages/volume.py) and its logic (pages/lab/volume.py).

Checkpoints come from $STN_LAB_CHECKPOINTS: an empty folder (the "train them" message, the volume and
the hand θ still shown) and a folder of untrained volume models saved here (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from apptest_util import assert_no_exception, open_page

from pages.lab import volume as vl
from stn_core import registry as reg
from stn_core.checkpoints import save_checkpoint
from stn_core.data import volumes as V
from stn_core.models.volume import build_volume_model

PAGE = "pages/volume.py"


@pytest.fixture(scope="module")
def ckdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("volume_checkpoints")
    torch.manual_seed(0)
    for key, err in (("vol-st-cnn", 4.5), ("vol-cnn", 20.0)):
        model = build_volume_model(key)
        meta = {"task": "mnist-volume", "model": key, "transform": model.config["transform"], "input_size": 60,
                "num_classes": 10, "test_error": err, "steps": 3, "final": True,
                "command": reg.volume_train_command(key)}
        save_checkpoint(d / reg.volume_stem_name(key), model, meta)
    return d


def _figs(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_no_checkpoints_shows_the_volume_and_the_training_commands(monkeypatch, tmp_path):
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(tmp_path))
    at = open_page(PAGE)
    infos = " ".join(i.value for i in at.info)
    assert "python -m stn_core.train.volume --model vol-st-cnn" in infos
    fig = _figs(at)[0]
    assert fig["data"][0]["type"] == "scatter3d" and fig["data"][1]["name"] == "hand θ"
    assert len(at.get("image")) == 2  # the camera's view and the transformer's output, flattened


def test_learned_theta_box_projections_and_probabilities(monkeypatch, ckdir):
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(ckdir))
    at = open_page(PAGE, {"index": "3", "seed": "11"})
    assert_no_exception(at)
    assert at.number_input(key="vol_index").value == 3 and at.number_input(key="vol_seed").value == 11
    figs = _figs(at)
    assert {t["name"] for t in figs[0]["data"]} == {"the digit's voxels", "learned θ"}
    names = [t["name"] for t in figs[1]["data"]]
    assert names == [reg.VOLUME_LABELS["vol-st-cnn"], reg.VOLUME_LABELS["vol-cnn"]]
    table = at.dataframe[0].value
    assert list(table["test error (%)"]) == [4.5, 20.0]
    intro = " ".join(m.value for m in at.markdown)
    assert "trained for 3 steps on a CPU: 4.5 % test error, below the plain CNN's 20 %" in intro


def test_trained_summary_gives_both_errors_and_stays_silent_without_a_final_pair():
    st_m = {"final": True, "steps": 8000, "test_error": 16.0}
    cnn_m = {"final": True, "steps": 8000, "test_error": 12.5}
    assert "8,000 steps on a CPU: 16 % test error, not below the plain CNN's 12.5 %" in vl.trained_summary(
        {"vol-st-cnn": st_m, "vol-cnn": cnn_m})
    assert "9 % test error, below" in vl.trained_summary({"vol-st-cnn": {**st_m, "test_error": 9.0}, "vol-cnn": cnn_m})
    assert vl.trained_summary({"vol-st-cnn": st_m}) == ""
    assert vl.trained_summary({"vol-st-cnn": {**st_m, "final": False}, "vol-cnn": cnn_m}) == ""
    assert vl.trained_summary({"vol-st-cnn": {**st_m, "test_error": None}, "vol-cnn": cnn_m}) == ""


def test_hand_mode_undo_button_sets_the_inverse_pose(monkeypatch, ckdir):
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(ckdir))
    at = open_page(PAGE, {"seed": "5", "mode": "hand"})
    at.button(key="vol_undo").click().run()
    assert_no_exception(at)
    pose = vl.page_pose(5)
    want = vl.undo_state(vl.PageState(seed=5), pose)
    assert at.slider(key="vol_scale").value == pytest.approx(want.scale)
    assert at.slider(key="vol_rx").value == pytest.approx(want.rx)
    assert at.query_params["mode"] in ("hand", ["hand"])
    assert "(hand θ)" in _figs(at)[1]["data"][0]["name"]


def test_a_bad_link_warns_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(tmp_path))
    at = open_page(PAGE, {"seed": "-4", "mode": "sideways", "index": "1e309"})
    warns = " ".join(w.value for w in at.warning)
    assert "seed" in warns and "mode" in warns and "index" in warns
    assert at.number_input(key="vol_seed").value == 0


def test_undo_theta_reads_the_digit_block_exactly_for_an_unrotated_pose():
    d = np.zeros((28, 28), np.float32)
    d[6:22, 12:16] = 1.0
    pose = {"angles": torch.zeros(1, 3, dtype=torch.float64), "shift": torch.tensor([[3.0, -2.0, 5.0]], dtype=torch.float64)}
    vol = V.make_volumes(torch.as_tensor(d)[None], pose)
    proj = vl.output_projection(vol, vl.hand_theta(vl.undo_state(vl.PageState(), pose)))
    expect = torch.as_tensor(d)[None, None]  # the slab facing the viewer projects to the digit itself
    torch.testing.assert_close(proj, expect, atol=1e-5, rtol=0)


def test_volume_figure_spec_is_valid_plotly():
    vol, _ = vl.make_volume(np.eye(28, dtype=np.float32), 3)
    pts, vals = vl.volume_points(vol, max_points=50)
    assert pts.shape == (50, 3) and vals.min() > 0.25
    fig = vl.volume_figure(pts, vals, [(vl.box_lines(vl.hand_theta(vl.PageState())), "hand θ", "#000")])
    go.Figure(fig.to_dict())  # raises on an invalid property
    lines = vl.box_lines(vl.hand_theta(vl.PageState()))
    assert np.nanmin(lines) == 0 and np.nanmax(lines) == 60  # the identity reads the whole volume


def test_the_3d_view_widens_to_show_a_box_that_leaves_the_volume():
    vol, _ = vl.make_volume(np.eye(28, dtype=np.float32), 3)
    pts, vals = vl.volume_points(vol, max_points=20)
    outside = vl.box_lines(vl.hand_theta(vl.PageState(mode="hand", tx=0.5, ty=-0.5)))  # 15 voxels past two faces
    scene = vl.volume_figure(pts, vals, [(outside, "hand θ", "#000")]).to_dict()["layout"]["scene"]
    xr, yr, zr = scene["xaxis"]["range"], sorted(scene["yaxis"]["range"]), scene["zaxis"]["range"]
    assert xr[0] <= 0 and xr[1] >= 75 and yr[0] <= -15 and yr[1] >= 60 and zr[0] <= 0 and zr[1] >= 60
    assert scene["yaxis"]["range"][0] > scene["yaxis"]["range"][1]  # y points down, as in the images
    assert xr[1] - xr[0] == pytest.approx(yr[1] - yr[0]) == pytest.approx(zr[1] - zr[0])  # one scale: a cube
