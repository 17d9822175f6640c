"""Trained model explorer logic (pages.lab.explorer): checkpoint discovery, test digits, own digits,
inference with the transformer's view, mistakes, Table 1; its figures; the drawing pad's parser.

Checkpoints are tiny models (build_model with a small parameter budget) saved into tmp_path with
save_checkpoint: nothing is trained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from components.draw_digit import parse_drawing, read_drawing
from stn_core.data import tasks as ds
from pages.lab import explorer as ex
from pages.lab import figures as viz
from stn_core.checkpoints import load_model
from stn_core.paper import PAPER_TABLE1
from stn_core.train.loop import lr_at
from stn_core import registry as reg
from stn_core import regions
from stn_core.data import test_digits as td
from stn_core.analysis import table1 as t1
from stn_core.analysis import inspect as insp
from tiny_checkpoints import make_tiny_checkpoint

@pytest.fixture(scope="module")
def ckdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("checkpoints")
    make_tiny_checkpoint(d, "rts", "st-cnn-aff", test_error=1.23)
    make_tiny_checkpoint(d, "rts", "cnn", test_error=4.56)
    make_tiny_checkpoint(d, "e", "st-fcn-tps")
    make_tiny_checkpoint(d, "p", "st-cnn-proj", final=False, steps=20, test_error=7.5,
                         history=[{"step": 10, "test_error": 7.5, "test_loss": 1.0, "train_loss": 1.0}])
    (d / "notes.json").write_text("{}")  # not of the naming scheme: ignored
    (d / "mnist_x_cnn.json").write_text("{}")
    return d


# --------------------------------------------------------------------------- names

def test_stem_names_round_trip_and_paper_numbers():
    stems = {reg.stem_name(d, k) for d in reg.DISTORTIONS for k in reg.MODEL_KEYS}
    assert len(stems) == 40 and "mnist_rts_st-cnn-aff" in stems and "mnist_tc_st-fcn-tps" in stems
    for d in reg.DISTORTIONS:
        for k in reg.MODEL_KEYS:
            assert reg.parse_stem(reg.stem_name(d, k)) == (d, k)
            assert reg.model_key(*reg.model_spec(k)) == k
            if d in reg.TABLE1_DISTORTIONS:
                assert reg.paper_error(d, k) == PAPER_TABLE1[reg.model_spec(k)][reg.DIST_TASK[d]]
    # TC: the paper's text gives FCN, CNN, ST-FCN and ST-CNN (read as the affine ones); no number for the others
    assert [reg.paper_error("tc", k) for k in reg.MODEL_KEYS] == [13.2, 3.5, 2.0, None, None, 1.7, None, None]
    assert reg.model_spec("st-fcn-proj") == ("st-fcn", "projective") and reg.model_spec("fcn") == ("fcn", None)
    assert reg.parse_stem("mnist_rts_st-cnn-aff.train") is None and reg.parse_stem("rts-st-cnn-aff") is None
    with pytest.raises(ValueError, match="unknown model key"):
        reg.stem_name("r", "st-cnn-affine")
    assert reg.train_command("rts", "st-cnn-aff") == ("python -m stn_core.train --task mnist-rts --model st-cnn "
                                                     "--transform affine --out checkpoints/mnist_rts_st-cnn-aff")


def test_checkpoint_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(tmp_path))
    assert reg.checkpoint_dir() == tmp_path
    monkeypatch.delenv(reg.ENV_CHECKPOINTS)
    assert reg.checkpoint_dir() == Path(reg.__file__).resolve().parents[1] / "checkpoints"


# --------------------------------------------------------------------------- discovery

def test_discover_finds_the_naming_scheme_only(ckdir, tmp_path):
    found = reg.discover(ckdir)
    assert list(found) == [("rts", "cnn"), ("rts", "st-cnn-aff"), ("p", "st-cnn-proj"), ("e", "st-fcn-tps")]
    assert all(e.usable for e in found.values())
    e = found[("rts", "st-cnn-aff")]
    assert e.label == "ST-CNN Aff" and e.task == "mnist-rts" and e.meta["test_error"] == 1.23
    assert e.version[0] > 0 and e.version[1] > 0
    assert reg.discover(tmp_path / "nope") == {} and reg.discover(tmp_path) == {}


def test_default_choice_prefers_st_cnn_of_the_fullest_distortion(ckdir):
    assert ex.default_choice(reg.discover(ckdir)) == ("rts", "st-cnn-aff")
    assert ex.default_choice({}) is None


def test_broken_checkpoints_are_listed_with_a_reason(tmp_path, ckdir):
    (tmp_path / "mnist_r_fcn.json").write_text("{not json")
    (tmp_path / "mnist_r_fcn.safetensors").write_bytes(b"x")
    (tmp_path / "mnist_r_cnn.safetensors").write_bytes(b"x")  # weights without JSON
    make_tiny_checkpoint(tmp_path, "p", "cnn")
    (tmp_path / "mnist_p_cnn.safetensors").unlink()  # JSON without weights
    meta = json.loads((ckdir / "mnist_rts_cnn.json").read_text())
    (tmp_path / "mnist_r_st-cnn-aff.json").write_text(json.dumps(meta))  # a RTS CNN under another name
    (tmp_path / "mnist_r_st-cnn-aff.safetensors").write_bytes((ckdir / "mnist_rts_cnn.safetensors").read_bytes())
    found = reg.discover(tmp_path)
    assert not any(e.usable for e in found.values())
    assert "not valid JSON" in found[("r", "fcn")].error
    assert "metadata missing" in found[("r", "cnn")].error
    assert "weights missing" in found[("p", "cnn")].error
    assert "file name says mnist-r / ST-CNN Aff" in found[("r", "st-cnn-aff")].error
    cells = t1.table1_cells(found=found)
    assert cells[0][0].status == "broken" and cells[0][0].ours_text() == "unreadable checkpoint"


def test_a_validation_run_is_listed_as_unusable_not_as_a_test_error(tmp_path, ckdir):
    """A run trained with --val-digits records its validation error as test_error: Table 1 and the explorer
    must not show it as one."""
    meta = json.loads((ckdir / "mnist_rts_cnn.json").read_text())
    meta["test_set"] = {"split": "VALIDATION: 10000 training digits held out (seed 20151207); test_error is the "
                                 "validation error", "size": 10000}
    (tmp_path / "mnist_rts_cnn.json").write_text(json.dumps(meta))
    (tmp_path / "mnist_rts_cnn.safetensors").write_bytes((ckdir / "mnist_rts_cnn.safetensors").read_bytes())
    e = reg.discover(tmp_path)[("rts", "cnn")]
    assert not e.usable and "validation error, not a test error" in e.error


def test_training_status():
    assert reg.training_status({"test_error": 0.61, "final": True}) == (0.61, "")
    assert reg.training_status({"test_error": 0.61}) == (0.61, "")  # older JSON without "final"
    err, note = reg.training_status({"test_error": None, "final": False, "steps": 2000,
                                    "train_args": {"steps": 20000}})
    assert err is None and note == "training, step 2,000 of 20,000, no test error yet"
    err, note = reg.training_status({"test_error": 14.5, "final": False, "steps": 9000, "train_args": {"steps": 20000},
                                    "history": [{"step": 5000, "test_error": 14.5}]})
    assert err == 14.5 and note == "measured at step 5,000; still training, step 9,000 of 20,000"


# --------------------------------------------------------------------------- test digits

def test_sample_stand_in_equals_the_first_digits_of_the_fixed_test_set():
    try:
        x_full, y_full = ds.fixed_test_set("mnist-rts", limit=500)
    except Exception as e:  # full MNIST absent: nothing to compare against
        pytest.skip(f"full MNIST not available: {e}")
    x, y = td.sample_test_set("mnist-rts")
    assert x.shape == (500, 1, 42, 42) and torch.equal(y, y_full)
    assert torch.allclose(x, x_full, atol=1e-6)


def test_test_digits_fall_back_to_the_shipped_sample(tmp_path):
    digits = td.test_digits("mnist-e", root=tmp_path)  # no MNIST files there
    assert digits.source == "sample" and digits.x.shape == (500, 1, 28, 28) and digits.y.shape == (500,)
    assert "500 shipped test digits" in digits.caption and "same seeded parameters" in digits.caption
    assert 0.0 <= float(digits.x.min()) and float(digits.x.max()) <= 1.0


# --------------------------------------------------------------------------- own digits

def test_prepare_digit_inverts_crops_and_centres():
    img = np.ones((90, 60, 3), np.float32)  # white paper
    img[10:70, 5:15] = 0.0  # a dark vertical bar near the left edge
    d, notes = ex.prepare_digit(img)
    assert d.shape == (28, 28) and d.dtype == np.float32 and 0.0 <= d.min() and d.max() <= 1.0
    assert any("inverted" in n for n in notes)
    rows, cols = np.nonzero(d > 0.5)
    assert rows.max() - rows.min() + 1 in (19, 20, 21)  # longer side scaled to 20 px
    yy, xx = np.mgrid[0:28, 0:28]
    assert abs((yy * d).sum() / d.sum() - 13.5) < 1.0 and abs((xx * d).sum() / d.sum() - 13.5) < 1.0
    blank, notes = ex.prepare_digit(np.zeros((28, 28), np.float32))
    assert not blank.any() and any("blank" in n for n in notes)
    light, notes = ex.prepare_digit(np.pad(np.ones((10, 4)), 9))  # light on black: not inverted
    assert not notes and light.max() == pytest.approx(1.0)


def test_to_canvas_centres_or_shrinks():
    a = np.ones((28, 28), np.float32)
    c = ex.to_canvas(a, 42)
    assert c.shape == (42, 42) and c[7:35, 7:35].all() and c.sum() == 28 * 28
    assert ex.to_canvas(np.ones((84, 84), np.float32), 42).shape == (42, 42)
    assert ex.to_canvas(a, 28) is not a and np.array_equal(ex.to_canvas(a, 28), a)


def test_distort_with_the_playground_controls():
    rng = np.random.default_rng(0)
    a = rng.random((28, 28)).astype(np.float32)
    same, msgs = ex.distort(a, ex.controls_identity())
    assert np.array_equal(same, a) and not msgs
    turned, msgs = ex.distort(a, {"rot": 90.0})
    assert not msgs and np.allclose(turned, np.rot90(a, -1), atol=1e-4)  # window turns left, content right
    flat, msgs = ex.distort(a, {"sx": 0.0})
    assert np.array_equal(flat, a) and msgs[0].level == "error" and "singular" in msgs[0].text
    shifted, _ = ex.distort(a, {"tx": 1.0})  # the window moves right by half the width
    assert np.allclose(shifted[:, :14], a[:, 14:], atol=1e-5) and not shifted[:, 15:].any()


# --------------------------------------------------------------------------- inference

@pytest.mark.parametrize("dist,key", [("rts", "st-cnn-aff"), ("p", "st-cnn-proj"), ("e", "st-fcn-tps"),
                                      ("rts", "cnn")])
def test_predict_gives_the_transformers_view(ckdir, dist, key):
    model, meta = load_model(ckdir / reg.stem_name(dist, key))
    size = meta["input_size"]
    x = torch.rand(3, 1, size, size, generator=torch.Generator().manual_seed(0))
    preds = insp.predict(model, x)
    with torch.no_grad():
        grids = model.views(x).grid
    with torch.no_grad():
        probs = torch.softmax(model(x), 1).numpy()
    assert np.allclose(np.stack([p.probs for p in preds]), probs, atol=1e-6)
    assert [p.pred for p in preds] == list(probs.argmax(1))
    assert np.allclose(insp.predict_probs(model, x, chunk=2), probs, atol=1e-6)
    if model.transformer is None:
        assert preds[0].output is None and preds[0].region is None
        return
    p = preds[2]
    assert p.kind == meta["transform"] and p.output.shape == (size, size) and p.grid.shape == (size, size, 2)
    assert np.array_equal(p.grid, grids[2].numpy())  # the transformer's own grid
    assert p.region.shape == (129, 2) and np.isfinite(p.region).all()
    # the region's corners are where the output's corners (±1) are read from: beyond the outermost
    # pixel centres of the grid (±(1 - 1/S)) by half a pixel
    g = p.grid.astype(np.float64)
    corner_centre = g[0, 0]
    direction = corner_centre - g[1, 1]
    assert np.linalg.norm(p.region[0] - corner_centre) < 1.5 * np.linalg.norm(direction)
    if p.kind == "tps":
        # the TPS evaluated at the grid's pixel centres reproduces the transformer's grid
        s = (np.arange(size) + 0.5) / size * 2 - 1
        pts = np.stack(np.meshgrid(s, s), -1).reshape(-1, 2)
        assert np.allclose(regions.tps_map_points(p.ctrl, pts), g.reshape(-1, 2), atol=1e-4)


def test_predict_one_digit_and_wrong_size(ckdir):
    model, _ = load_model(ckdir / "mnist_e_st-fcn-tps")
    one = insp.predict(model, np.zeros((28, 28), np.float32))
    assert len(one) == 1 and one[0].probs.sum() == pytest.approx(1.0, abs=1e-5) and one[0].ctrl.shape == (16, 2)
    with pytest.raises(ValueError, match="takes 28×28"):
        insp.predict(model, np.zeros((42, 42), np.float32))


def test_region_outline_of_known_transforms():
    ident = regions.region_outline("affine", np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    assert np.allclose(ident[0], [-1, -1]) and np.abs(ident).max() == pytest.approx(1.0)
    half = regions.region_outline("projective", 2.0 * np.array([[0.5, 0, 0.2], [0, 0.5, 0], [0, 0, 1]]))
    assert np.allclose(half[0], [-0.3, -0.5])  # h33 normalised to 1
    from stn_core.transforms import tps_lattice
    lat = tps_lattice(16, torch.float64).numpy()
    assert np.allclose(regions.region_outline("tps", lat * 0.5), ident * 0.5, atol=1e-9)


def test_find_mistakes_most_confident_first():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
    mk = insp.find_mistakes(probs, np.array([0, 0, 0, 1]))
    assert list(mk.indices) == [1, 3, 2] and mk.count == 3 and mk.n == 4 and mk.error == 75.0


# --------------------------------------------------------------------------- Table 1

def test_table1_uses_only_json_numbers(ckdir):
    cells = t1.table1_cells(ckdir)
    assert len(cells) == 8 and all(len(r) == 5 for r in cells)  # R, RTS, P, E and TC
    by = {(c.dist, c.key): c for row in cells for c in row}
    assert by[("rts", "st-cnn-aff")].ours == 1.23 and by[("rts", "st-cnn-aff")].status == "done"
    assert by[("p", "st-cnn-proj")].status == "training"
    assert by[("p", "st-cnn-proj")].ours_text() == "7.50 (step 10/50)"
    assert by[("r", "fcn")].ours is None and by[("r", "fcn")].ours_text() == "not trained yet"
    md = t1.table1_markdown(cells)
    assert md.count("not trained yet") == 40 - 4
    assert "| ST-CNN Aff | ours | not trained yet | **1.23** | not trained yet | not trained yet | not trained yet |" in md
    assert "| | paper | 0.7 | 0.5 | 0.8 | 1.2 | 1.7 |" in md
    assert md.count("| ours |") == 8 and md.count("| paper |") == 8


def test_table1_report_details_and_schedule(ckdir):
    text = t1.table1_report(ckdir, command="python scripts/make_table1.py --x")
    assert text.startswith("# Table 1") and "Generated by `python scripts/make_table1.py --x`" in text
    assert "3 of 40 cells trained, 1 still training" in text
    assert "`python -m stn_core.train --task mnist-rts --model st-cnn --steps 50`" in text
    assert "| mnist_rts_st-cnn-aff | 1.23 | 0.5 | 50 / 50 × 32 | 10,000 | 0 min (cpu) |" in text
    assert "150,000 steps of batch 256" in text
    assert "50 steps × batch 32 = 1,600 digits (0.0042 % of the paper's), lr 0.01 ÷10 at steps 17 and 34" in text
    assert "batch 32 (paper: 256)" in text
    empty = t1.table1_report(ckdir / "none")
    assert "0 of 40 cells trained" in empty and empty.count("not trained yet") >= 40
    assert "nothing to compare" in empty


@pytest.mark.parametrize("steps", [3, 50, 20_000, 150_000])
def test_lr_drop_steps_match_the_trainer(steps):
    drops = t1.lr_drop_steps(steps)
    changes = [s for s in range(1, steps) if lr_at(s, steps, 1.0) < lr_at(s - 1, steps, 1.0)]
    assert drops == changes


# --------------------------------------------------------------------------- figures, drawing pad

def test_figures(ckdir):
    model, _ = load_model(ckdir / "mnist_e_st-fcn-tps")
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    preds = insp.predict(model, x)
    imgs = [x[i, 0].numpy() for i in range(4)]
    svg = viz.figure1_gallery_svg(imgs, [p.pred for p in preds], [p.confidence for p in preds], [1, 2, None, 4],
                                  regions=[p.region for p in preds], outputs=[p.output for p in preds],
                                  grids=[p.grid for p in preds], captions=["#0", "#1", "#2", "#3"])
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<image") == 12 and "(b)" in svg and "true 4" in svg and "#3" in svg
    plain = viz.figure1_gallery_svg(imgs, [0, 0, 0, 0], [0.5] * 4, [0, 1, 2, 3])
    assert plain.count("<image") == 4 and "(b)" not in plain
    fig = viz.region_figure(imgs[0], preds[0].region, preds[0].grid, preds[0].ctrl)
    assert [t.name for t in fig.data][1:] == ["sampling grid", "sampled region", "output's top-left corner",
                                              "control points"]
    bars = viz.probability_figure([("ST", preds[0].probs), ("CNN", preds[1].probs)], true_label=3)
    assert len(bars.data) == 2 and bars.layout.annotations[0].text == "true"
    # the axis title moves below the "true" mark (30 px under the axis) instead of overlapping it
    assert bars.layout.xaxis.title.standoff >= 30 > viz.probability_figure([("ST", preds[0].probs)]).layout.xaxis.title.standoff


def test_probability_bars_label_each_top_class_once():
    agree = viz.probability_figure([("ST", np.array([0.1, 0.9])), ("CNN", np.array([0.2, 0.8]))])
    assert list(agree.data[0].text) == ["", "90%"] and list(agree.data[1].text) == ["", ""]
    differ = viz.probability_figure([("ST", np.array([0.1, 0.9])), ("CNN", np.array([0.7, 0.3]))])
    assert list(differ.data[1].text) == ["70%", ""]


def test_parse_drawing():
    px = [0] * 784
    px[28 * 14 + 14] = 255
    a = parse_drawing({"pixels": px, "strokes": 1})
    assert a.shape == (28, 28) and a.dtype == np.float32 and a[14, 14] == 1.0 and a.sum() == 1.0
    for bad in (None, {}, {"pixels": [0] * 10}, {"pixels": ["x"] * 784}, {"pixels": [float("nan")] * 784}, [1, 2]):
        assert parse_drawing(bad) is None
    assert read_drawing("pad", {"pad": {"drawn": {"pixels": px}}})[14, 14] == 1.0
    assert read_drawing("pad", {}) is None


def test_longer_schedule_runs_are_found_beside_the_table_models(tmp_path):
    make_tiny_checkpoint(tmp_path, "r", "cnn", test_error=4.0)
    make_tiny_checkpoint(tmp_path / reg.LONG_SUBDIR, "rts", "st-cnn-tps", test_error=1.3,
                         train_args={"steps": 12000, "batch": 256, "lr": 0.01, "momentum": 0.9, "loc_lr_mult": 1.0})
    make_tiny_checkpoint(tmp_path / reg.LONG_SUBDIR, "rts", "cnn", test_error=3.1)
    long = reg.discover_long(tmp_path)
    assert list(long) == [("rts", "long:cnn"), ("rts", "long:st-cnn-tps")]
    e = long[("rts", "long:st-cnn-tps")]
    assert e.usable and e.label == "ST-CNN TPS, 12,000 steps" and reg.base_key(e.key) == "st-cnn-tps"
    assert reg.paper_error("rts", e.key) == 0.5  # the same model as the paper's, on another schedule
    assert reg.train_command("rts", e.key).endswith("--out checkpoints/long/mnist_rts_st-cnn-tps")
    found = {**reg.discover(tmp_path), **long}
    assert ex.model_options(found, "rts") == ["long:cnn", "long:st-cnn-tps"]
    # the page opens on the distortion with the most Table 1 models, not the one with the most extra runs
    assert ex.default_choice(found) == ("r", "cnn")
    assert t1.table1_cells(tmp_path)[1][1].status == "missing"  # Table 1's RTS CNN: not the long run


def test_with_full_columns_everywhere_the_page_opens_on_the_best_trained_one(tmp_path):
    for d in ("r", "rts", "p", "e"):  # every column complete; RTS trained on 5× the samples (the v2 retrain)
        for k in reg.MODEL_KEYS:
            steps = 250 if d == "rts" else 50
            make_tiny_checkpoint(tmp_path, d, k, steps=steps,
                                 train_args={"steps": steps, "batch": 32, "lr": 0.01, "momentum": 0.9,
                                             "loc_lr_mult": 1.0})
    assert ex.default_choice(reg.discover(tmp_path)) == ("rts", "st-cnn-aff")
