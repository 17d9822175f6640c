"""Guided-tour logic (pages.lab.tour): step parsing, the rotation sweep, model choice, helpers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pages.lab import tour
from stn_core.models import build_model
from stn_core import registry as reg

CKPT = Path(__file__).resolve().parents[2] / "checkpoints"


# --------------------------------------------------------------------------- steps

@pytest.mark.parametrize("value, expected", [("1", 1), ("3", 3), (" 8 ", 8), (["2", "5"], 5), ("grid", 3),
                                             ("DCN", 9), ("features", 7)])
def test_parse_step_valid(value, expected):
    assert tour.parse_step(value) == (expected, None)


@pytest.mark.parametrize("value", [None, ""])
def test_parse_step_missing_is_step_one_without_warning(value):
    assert tour.parse_step(value) == (1, None)


@pytest.mark.parametrize("value, words", [("0", "no step 0"), ("10", "no step 10"), ("-2", "no step -2"),
                                          ("abc", "not a step number"), ("2.5", "not a step number")])
def test_parse_step_invalid_falls_back_with_warning(value, words):
    step, warn = tour.parse_step(value)
    assert step == 1 and warn is not None and words in warn and "step 1" in warn


def test_steps_and_progress():
    assert tour.N_STEPS == len(tour.STEPS) == 9
    assert len({s.slug for s in tour.STEPS}) == 9
    assert tour.progress(1) == pytest.approx(1 / 9) and tour.progress(9) == 1.0
    assert tour.clamp_step(0) == 1 and tour.clamp_step(99) == 9


# --------------------------------------------------------------------------- rotation sweep

def _digit() -> np.ndarray:
    d = np.zeros((28, 28), np.float32)
    d[4:8, 12:16] = 1.0  # a blob at the top centre
    return d


def test_rotate_digits_shapes_and_direction():
    x = tour.rotate_digits(_digit(), [0.0, 90.0, -90.0])
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.float32
    assert torch.allclose(x[0, 0], torch.from_numpy(_digit()), atol=1e-6)  # 0° is the identity
    cols = [float((x[i, 0].sum(0) * torch.arange(28)).sum() / x[i, 0].sum()) for i in (1, 2)]
    assert cols[0] < 10 < 18 < cols[1]  # +90° (counter-clockwise) moves the top to the left, −90° to the right
    with pytest.raises(ValueError, match="square grey digit"):
        tour.rotate_digits(np.zeros((28, 20)), [0.0])


def test_confidence_curve_shape_and_range():
    torch.manual_seed(0)
    model = build_model("cnn", None, 28, 10).eval()
    angles = tour.SWEEP_ANGLES
    assert angles[0] == -90 and angles[-1] == 90 and len(angles) == 37
    c = tour.confidence_curve(model, _digit(), 3, angles)
    assert c.shape == (37,) and np.isfinite(c).all() and (c >= 0).all() and (c <= 1).all()
    with pytest.raises(ValueError, match="not a class"):
        tour.confidence_curve(model, _digit(), 12, [0.0])


@pytest.mark.skipif(not (CKPT / "mnist_r_fcn.json").is_file(), reason="shipped R-task checkpoint missing")
def test_confidence_curve_of_a_shipped_model_is_high_upright():
    from stn_core.checkpoints import load_model
    from stn_core.data.samples import load_mnist_sample

    model, _ = load_model(CKPT / "mnist_r_fcn")
    x, y = load_mnist_sample()
    c = tour.confidence_curve(model, x[0] / 255.0, int(y[0]), [0.0])
    assert c[0] > 0.5


# --------------------------------------------------------------------------- model choice

def _copy(names: list[str], tmp: Path, final: bool = True) -> None:
    for n in names:
        shutil.copy(CKPT / f"{n}.safetensors", tmp / f"{n}.safetensors")
        meta = json.loads((CKPT / f"{n}.json").read_text())
        meta["final"] = final
        (tmp / f"{n}.json").write_text(json.dumps(meta))


needs_r = pytest.mark.skipif(not (CKPT / "mnist_r_st-fcn-aff.json").is_file(), reason="shipped checkpoints missing")


@needs_r
def test_choose_pair_falls_back_and_says_so(tmp_path):
    _copy(["mnist_r_fcn", "mnist_r_st-fcn-aff"], tmp_path)
    pair = tour.choose_pair(directory=tmp_path)
    assert pair is not None and not pair.preferred and pair.input_size == 28
    assert (pair.plain.key, pair.st.key) == ("fcn", "st-fcn-aff")
    assert "not trained yet" in pair.note and "FCN" in pair.note


@needs_r
def test_choose_pair_prefers_finished_checkpoints(tmp_path):
    _copy(["mnist_r_fcn", "mnist_r_st-fcn-aff"], tmp_path, final=False)
    pair = tour.choose_pair(directory=tmp_path)
    assert pair is not None and "not finished" in pair.note
    assert tour.choose_pair(directory=tmp_path / "nothing") is None


def test_history_and_identity_view():
    meta = {"history": [{"step": 2000, "test_error": 2.7, "train_loss": 0.4},
                        {"step": 1000, "test_error": 3.9}, {"bad": 1}]}
    h = tour.history(meta)
    assert h.steps.tolist() == [1000, 2000] and h.test_error.tolist() == [3.9, 2.7]
    assert np.isnan(h.train_loss[0]) and h.train_loss[1] == 0.4
    assert tour.history({}).steps.size == 0
    d = _digit()
    assert np.allclose(tour.identity_view(None, d), d, atol=1e-6)


def test_grid_view_identity_and_rotation():
    img = _digit()
    params, res, outline = tour.grid_view(img)
    assert np.allclose(params, (1, 0, 0, 0, 1, 0)) and np.allclose(res.output[:, :, 0], img, atol=1e-6)
    params, res, outline = tour.grid_view(img, 90.0, 0.5, (0.1, 0.0))
    assert abs(params[0]) < 1e-9 and outline.shape[1] == 2


def test_taps_regular_and_through_the_identity_grid():
    reg = tour.regular_taps((10, 12), 3)
    assert reg.shape == (9, 2) and reg[0].tolist() == [11, 9] and reg[-1].tolist() == [13, 11]
    ys, xs = (np.arange(28) + 0.5) / 28 * 2 - 1, (np.arange(28) + 0.5) / 28 * 2 - 1
    grid = np.stack(np.meshgrid(xs, ys), -1)  # identity grid: taps land where they are
    assert np.allclose(tour.st_taps(grid, (10, 12), 3), reg)
    edge = tour.st_taps(grid, (0, 0), 3)
    assert np.isnan(edge[0]).all() and np.isfinite(edge[4]).all()
    assert np.allclose(tour.pixel_to_norm(np.array([[-0.5, -0.5], [27.5, 27.5]]), (28, 28)), [[-1, -1], [1, 1]])


def test_best_st_entry_and_figures(tmp_path):
    assert tour.best_st_entry({}) is None
    fig = tour.confidence_figure(tour.SWEEP_ANGLES, {"a": np.zeros(37), "b": np.ones(37)}, 30.0)
    assert len(fig.data) == 2 and fig.layout.shapes[0].x0 == 30.0
    h = tour.history({"history": [{"step": 1, "test_error": 5.0, "train_loss": 1.0}]})
    assert len(tour.history_figure(h).data) == 2
    assert len(tour.taps_figure(_digit(), tour.regular_taps((5, 5), 3), None, "", "t").data) == 2
    assert not reg.ready(reg.stem("no_such_checkpoint", tmp_path)) and reg.version(reg.stem("x", tmp_path)) == (0, 0)


@pytest.mark.skipif(not (CKPT / "mnist_rts_st-cnn-aff.json").is_file(), reason="shipped RTS ST-CNN missing")
def test_figure1_row_svg():
    from stn_core.checkpoints import load_model

    model, _ = load_model(CKPT / "mnist_rts_st-cnn-aff")
    x = torch.zeros(2, 1, 42, 42)
    x[:, :, 15:27, 18:24] = 1.0
    svg = tour.figure1_row_svg(model, x, [1, 1], ["#0", "#1"])
    assert svg.startswith("<svg") and ">(c)<" in svg and svg.count("<image") == 6


def test_mean_confidence_curve():
    torch.manual_seed(0)
    model = build_model("fcn", None, 28, 10).eval()
    digits = np.stack([_digit(), _digit()[::-1].copy()])
    c = tour.mean_confidence_curve(model, digits, [1, 2], [0.0, 45.0])
    single = [tour.confidence_curve(model, digits[i], lab, [0.0, 45.0]) for i, lab in enumerate([1, 2])]
    assert c.shape == (2,) and np.allclose(c, (single[0] + single[1]) / 2)
    with pytest.raises(ValueError, match="N labels"):
        tour.mean_confidence_curve(model, digits, [1], [0.0])


def test_image_rows():
    rows = [("a", [np.zeros((28, 28)), np.ones((42, 42))]), ("b", [np.ones((28, 28, 3), np.float32)])]
    pic = tour.image_rows(rows, cell=50, gap=5)
    assert pic.dtype == np.uint8 and pic.shape == (2 * 50 + 3 * 5, 2 * 50 + 3 * 5, 3)
    assert pic[5:55, 5:55].max() == 0 and pic[5:55, 60:110].min() == 255
    with pytest.raises(ValueError):
        tour.image_rows([])


def test_nearest_output():
    ys, xs = np.mgrid[0:5, 0:5].astype(float)
    centres = np.stack([xs * 4 + 4, ys * 4 + 4], -1)  # output (r, c) sits at image (x = 4c + 4, y = 4r + 4)
    assert tour.nearest_output(centres, (12.0, 9.0)) == (2, 1)
    assert tour.nearest_output(centres, (-50.0, 99.0)) == (0, 4)


def test_best_st_entry_by_distortion(tmp_path):
    from tiny_checkpoints import make_tiny_checkpoint

    make_tiny_checkpoint(tmp_path, "r", "st-fcn-aff")
    make_tiny_checkpoint(tmp_path, "rts", "cnn")
    found = reg.discover(tmp_path)
    assert tour.best_st_entry(found).key == "st-fcn-aff"
    assert tour.best_st_entry(found, ("rts",)) is None


def test_upright_cnn_is_used_only_when_finished_and_its_size_fits(tmp_path):
    from stn_core.checkpoints import save_checkpoint
    from stn_core.models import build_model

    assert reg.upright_cnn(28, tmp_path) is None                       # missing
    model = build_model("cnn", None, 28, target_params=30_000)
    stem = tmp_path / reg.UPRIGHT_CNN
    save_checkpoint(stem, model, {"task": "mnist", "final": False})
    assert reg.upright_cnn(28, tmp_path) is None                       # still training
    save_checkpoint(stem, model, {"task": "mnist", "final": True})
    assert reg.upright_cnn(28, tmp_path) == stem
    assert reg.upright_cnn(42, tmp_path) is None                       # the RTS pair's input size
    save_checkpoint(stem, model, {"task": "mnist-r", "final": True})
    assert reg.upright_cnn(28, tmp_path) is None                       # not trained on upright digits
    stem.with_suffix(".json").write_text("{not json")
    assert reg.upright_cnn(28, tmp_path) is None
    assert reg.UPRIGHT_CNN in reg.UPRIGHT_COMMAND and "--task mnist " in reg.UPRIGHT_COMMAND


def test_confidence_figure_styles_a_third_curve():
    fig = tour.confidence_figure(tour.SWEEP_ANGLES, {"a": np.zeros(37), "b": np.ones(37), "c": np.ones(37)})
    assert [t.line.dash for t in fig.data] == ["dash", "solid", "dot"]
    assert fig.data[2].line.color == tour.UPRIGHT_COLOUR
