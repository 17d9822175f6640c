"""Pure logic of the Thin-plate spline page (pages.lab.tps_editor) and the Python side of the
point-drag component (components/point_drag). Dragging itself is tested in tests/test_browser.py."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from components import point_drag as pd
from stn_core import affine_grid, compose_affine, tps_lattice
from pages.lab import tps_editor as te


def _image(h: int = 32, w: int = 40) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((h, w, 3)).astype(np.float32)


def _affine_points(theta: np.ndarray, side: int = 4) -> list[tuple[float, float]]:
    lat = np.asarray(te.lattice_points(side))
    mapped = np.concatenate([lat, np.ones((len(lat), 1))], 1) @ theta.T
    return [tuple(p) for p in mapped.tolist()]


# --------------------------------------------------------------------------- state and undo

def test_lattice_points_match_tps_lattice() -> None:
    for side in te.LATTICE_SIDES:
        pts = np.asarray(te.lattice_points(side))
        assert pts.shape == (side * side, 2)
        np.testing.assert_allclose(pts, tps_lattice(side * side, torch.float64).numpy())
    with pytest.raises(ValueError, match="lattice side"):
        te.lattice_points(6)


def test_default_state_is_the_identity_4x4() -> None:
    s = te.EditorState()
    assert s.side == 4 and s.k == 16 and not s.can_undo()
    assert s.points == te.lattice_points(4)


def test_with_points_undo_and_noop() -> None:
    s0 = te.EditorState()
    assert te.with_points(s0, s0.points) is s0  # nothing to undo for a no-op
    s1 = te.move_point(s0, 5, 0.1, 0.2)
    assert s1.points[5] == (0.1, 0.2) and s1.history == (s0.points,)
    s2 = te.apply_preset(s1, "bend")
    assert te.undo(s2).points == s1.points
    assert te.undo(te.undo(s2)).points == s0.points
    assert te.undo(s0) is s0


def test_history_is_bounded() -> None:
    s = te.EditorState()
    for i in range(te.MAX_HISTORY + 10):
        s = te.move_point(s, 0, -1.0 + 0.001 * (i + 1), -1.0)
    assert len(s.history) == te.MAX_HISTORY


def test_reset_and_lattice_change_are_undoable() -> None:
    s = te.apply_preset(te.EditorState(), "twist")
    r = te.reset(s)
    assert r.points == te.lattice_points(4) and te.undo(r).points == s.points
    small = te.reset(s, side=3)
    assert small.k == 9 and small.side == 3
    back = te.undo(small)
    assert back.k == 16 and back.points == s.points


def test_move_point_validates_and_clamps() -> None:
    s = te.EditorState()
    assert te.move_point(s, 0, 10.0, -10.0).points[0] == (te.POINT_LIMIT, -te.POINT_LIMIT)
    with pytest.raises(ValueError, match="index"):
        te.move_point(s, 16, 0.0, 0.0)
    with pytest.raises(ValueError, match="finite"):
        te.move_point(s, 0, math.nan, 0.0)


def test_sanitize_points() -> None:
    lat = te.lattice_points(3)
    pts, msgs = te.sanitize_points([list(p) for p in lat], 9)
    assert pts == lat and msgs == []
    assert te.sanitize_points(lat[:5], 9)[0] is None
    assert te.sanitize_points("garbage", 9)[0] is None
    assert te.sanitize_points([[0, 0]] * 8 + [[math.inf, 0]], 9)[0] is None
    assert te.sanitize_points([[0, 0]] * 8 + [["a", 0]], 9)[1][0].level == "error"
    far, msgs = te.sanitize_points([[0, 0]] * 8 + [[50.0, -50.0]], 9)
    assert far[-1] == (te.POINT_LIMIT, -te.POINT_LIMIT) and msgs[0].level == "warning"


# --------------------------------------------------------------------------- presets

@pytest.mark.parametrize("side", te.LATTICE_SIDES)
@pytest.mark.parametrize("name", list(te.PRESETS))
def test_presets_move_points_without_folding(name: str, side: int) -> None:
    pts = te.preset_points(name, side, seed=1)
    assert len(pts) == side * side and pts != te.lattice_points(side)
    res = te.compute(_image(), pts, (24, 24))
    assert res.ok and not res.folds.folded and res.bending_energy > 0
    assert not [m for m in res.messages if m.level in ("warning", "error")]


def test_random_preset_draws_new_points_each_time() -> None:
    s1 = te.apply_preset(te.EditorState(), "random")
    s2 = te.apply_preset(s1, "random")
    assert s1.points != s2.points and s2.random_count == 2
    assert te.preset_points("random", 4, 7) == te.preset_points("random", 4, 7)
    with pytest.raises(ValueError, match="unknown preset"):
        te.preset_points("melt", 4)


# --------------------------------------------------------------------------- the update

def test_identity_reproduces_the_input() -> None:
    img = _image()
    res = te.compute(img, te.lattice_points(4), img.shape[:2])
    assert res.ok and res.messages == []
    np.testing.assert_allclose(res.output, img, atol=1e-5)
    np.testing.assert_allclose(res.affine_output, img, atol=1e-5)
    assert abs(res.bending_energy) < 1e-12 and res.affine.rms < 1e-12
    np.testing.assert_allclose(res.w, 0.0, atol=1e-12)
    np.testing.assert_allclose(res.a, [[0, 0], [1, 0], [0, 1]], atol=1e-12)


def test_affine_placement_has_zero_bending_and_an_exact_fit() -> None:
    theta = compose_affine(rotation_deg=25, scale=(0.8, 0.9), translation=(0.1, -0.2)).numpy()
    pts = _affine_points(theta)
    res = te.compute(_image(), pts, (20, 20))
    assert abs(res.bending_energy) < 1e-10 and res.affine.rms < 1e-10
    np.testing.assert_allclose(res.affine.theta, theta, atol=1e-10)
    np.testing.assert_allclose(res.a.T, theta[:, [2, 0, 1]], atol=1e-10)  # A rows: 1, x, y
    np.testing.assert_allclose(res.grid, res.affine_grid, atol=1e-5)


def test_weights_satisfy_the_side_conditions() -> None:
    res = te.compute(_image(), te.preset_points("random", 5, 3), (16, 16))
    lat = np.asarray(te.lattice_points(5))
    p = np.concatenate([np.ones((25, 1)), lat], 1)
    np.testing.assert_allclose(p.T @ res.w, 0.0, atol=1e-10)  # Pᵀ W = 0: W adds no affine part
    np.testing.assert_allclose(res.landed, te.preset_points("random", 5, 3), atol=1e-10)


def test_regularisation_moves_towards_the_affine_fit() -> None:
    pts = te.preset_points("twist", 4)
    exact = te.compute(_image(), pts, (16, 16), reg=0.0)
    smooth = te.compute(_image(), pts, (16, 16), reg=0.1)
    stiff = te.compute(_image(), pts, (16, 16), reg=1e4)
    assert smooth.bending_energy < exact.bending_energy
    assert np.abs(smooth.landed - np.asarray(pts)).max() > 1e-3  # no longer interpolates
    np.testing.assert_allclose(stiff.landed, stiff.affine.mapped, atol=1e-3)


def test_best_affine_fit_is_least_squares() -> None:
    lat = np.asarray(te.lattice_points(4))
    rng = np.random.default_rng(0)
    dst = lat + rng.normal(0, 0.1, lat.shape)
    fit = te.best_affine_fit(lat, dst)
    p = np.concatenate([lat, np.ones((16, 1))], 1)
    for _ in range(5):  # any other affine map has a larger squared error
        other = fit.theta + rng.normal(0, 0.01, (2, 3))
        assert ((p @ other.T - dst) ** 2).sum() > ((fit.mapped - dst) ** 2).sum()
    assert fit.rms == pytest.approx(np.sqrt(((fit.mapped - dst) ** 2).sum(1).mean()))


def test_jacobian_of_an_affine_grid_is_det_a() -> None:
    theta = torch.tensor([[[0.7, 0.2, 0.1], [-0.3, 0.9, 0.0]]], dtype=torch.float64)
    det = te.jacobian_det(affine_grid(theta, (12, 17))[0].numpy())
    np.testing.assert_allclose(det, 0.7 * 0.9 + 0.2 * 0.3, atol=1e-10)
    mirror = torch.tensor([[[-1.0, 0, 0], [0, 1.0, 0]]], dtype=torch.float64)
    rep = te.fold_report(affine_grid(mirror, (8, 8))[0].numpy())
    assert rep.mirrored and not rep.folded


def test_crossed_points_fold_and_warn() -> None:
    pts = list(te.lattice_points(4))
    pts[5], pts[6] = pts[6], pts[5]  # two inner neighbours swap places
    res = te.compute(_image(), pts, (32, 32))
    assert res.ok and res.folds.folded
    assert any("folds" in m.text for m in res.messages if m.level == "warning")
    assert np.isfinite(res.output).all()


def test_coincident_points_warn() -> None:
    pts = list(te.lattice_points(4))
    pts[5] = pts[6]
    res = te.compute(_image(), pts, (16, 16))
    assert te.coincident_pairs(pts) == [(5, 6)]
    assert any("6 and 7 sit on top of each other" in m.text for m in res.messages)
    assert np.isfinite(res.output).all()


@pytest.mark.parametrize("pts", [
    [(0.2, 0.2)] * 16,                                            # everything at one spot
    [(x, 0.5 * x) for x, _ in te.lattice_points(4)],             # all on a line
    [(te.POINT_LIMIT, -te.POINT_LIMIT)] * 8 + [(-te.POINT_LIMIT, te.POINT_LIMIT)] * 8,  # far out, coincident
])
def test_degenerate_placements_never_give_nan(pts) -> None:
    res = te.compute(_image(), pts, (16, 16))
    assert np.isfinite(res.output).all() and np.isfinite(res.affine_output).all()
    assert np.isfinite(res.grid).all() and math.isfinite(res.bending_energy)
    assert any(m.level == "warning" for m in res.messages)


def test_non_finite_points_give_an_error_not_nan() -> None:
    pts = list(te.lattice_points(3))
    pts[0] = (math.nan, 0.0)
    res = te.compute(_image(), pts, (8, 8))
    assert not res.ok and res.messages[0].level == "error"
    assert np.isfinite(res.output).all() and np.isfinite(res.grid).all()


def test_points_outside_the_image_give_an_info() -> None:
    pts = [(x + 5.0, y) for x, y in te.lattice_points(3)]
    res = te.compute(_image(), [(min(x, te.POINT_LIMIT), y) for x, y in pts], (8, 8))
    assert any(m.level == "info" and "outside" in m.text for m in res.messages)


def test_display_helpers() -> None:
    res = te.compute(_image(), te.preset_points("bend", 3), (20, 30))
    a_table, w_table = te.parameter_tables(res.a, res.w)
    assert len(a_table["term"]) == 3 and len(w_table["point"]) == 9
    ident = te.compute(_image(), te.lattice_points(3), (8, 8))
    a0, _ = te.parameter_tables(ident.a - 1e-17, ident.w)
    assert a0["→ x^s"] == [0.0, 1.0, 0.0] and str(a0["→ y^s"][0]) == "0.0"  # rounded, no "-0.0"
    md = te.markdown_table(a0).splitlines()
    assert md[:2] == ["| term | → x\\^s | → y\\^s |", "|:---|---:|---:|"]  # text left, numbers right
    assert md[2] == "| 1 (constant) | 0.0000 | 0.0000 |" and md[3] == "| x^t | 1.0000 | 0.0000 |"
    assert te.handle_radius(5) < te.handle_radius(3)
    lines = te.grid_lines(res.grid, n_lines=5)
    assert len(lines) == 10 and all(len(line) >= 2 for line in lines)
    json.dumps(lines, allow_nan=False)
    assert te.view_extent(te.lattice_points(4)) == pytest.approx(1.3)
    assert te.view_extent([(2.0, 0.0)]) == pytest.approx(2.12)
    assert te.fmt(1e-20) == "0" and te.fmt(0.12345) == "0.1235"
    assert "16 control points, 0 moved" in te.state_summary(te.EditorState())


# --------------------------------------------------------------------------- point-drag component (Python side)

URI = "data:image/png;base64,iVBORw0KGgo="


def test_payload_is_json_and_validated() -> None:
    data = pd.payload(URI, (28, 40), te.lattice_points(3), side=3, lines=[[(0, 0), (0.5, 0.123456)]],
                      marks=[{"kind": "affine", "points": [(0.1, 0.2)]}], view=1.3, version="abc")
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["points"][4] == [0.0, 0.0]
    assert data["height"] == 28 and data["width"] == 40 and data["lines"][0][1] == [0.5, 0.1235]
    assert data["points"] == [list(p) for p in te.lattice_points(3)]  # full precision: round trips exactly
    with pytest.raises(ValueError, match="data:image"):
        pd.payload("http://example.com/x.png", (2, 2), [(0, 0)])
    with pytest.raises(ValueError, match="finite"):
        pd.payload(URI, (2, 2), [(math.nan, 0)])
    with pytest.raises(ValueError, match="side 3"):
        pd.payload(URI, (2, 2), [(0, 0)], side=3)
    with pytest.raises(ValueError, match="mark kind"):
        pd.payload(URI, (2, 2), [(0, 0)], marks=[{"kind": "star", "points": []}])
    with pytest.raises(ValueError, match="view"):
        pd.payload(URI, (2, 2), [(0, 0)], view=0.5)
    with pytest.raises(ValueError, match="radius_px"):
        pd.payload(URI, (2, 2), [(0, 0)], radius_px=math.inf)
    with pytest.raises(ValueError, match="lines must be finite"):
        pd.payload(URI, (2, 2), [(0, 0)], lines=[np.array([[0.0, 0.0], [np.nan, 1.0]])])
    with pytest.raises(ValueError, match="lines must be .x, y. pairs"):
        pd.payload(URI, (2, 2), [(0, 0)], lines=[[(0.0, 0.0, 1.0)]])
    # a numpy polyline and a list of tuples give the same rounded lists; an empty line stays empty
    grid = np.array([[0.123456789, -1.0], [0.5, 0.25]])
    a = pd.payload(URI, (2, 2), [(0, 0)], lines=[grid, [], [tuple(r) for r in grid]])["lines"]
    assert a[0] == a[2] == [[0.1235, -1.0], [0.5, 0.25]] and a[1] == []


def test_parse_drop() -> None:
    assert pd.parse_drop({"points": [[0, 1], [0.5, -0.25]], "moved": 1}, 2) == [(0.0, 1.0), (0.5, -0.25)]
    for bad in (None, "x", {"points": [[0, 1]]}, {"points": [[0, 1], [0]]}, {"points": [[0, 1], ["a", 0]]},
                {"points": [[0, 1], [float("nan"), 0]]}, {"nope": 1}):
        assert pd.parse_drop(bad, 2) is None


def test_read_drop_reads_the_trigger_from_session_state() -> None:
    state = {"editor": {"drop": {"points": [[0.1, 0.2]], "moved": 0}}}
    assert pd.read_drop("editor", 1, state) == [(0.1, 0.2)]
    assert pd.read_drop("missing", 1, state) is None
    assert pd.read_drop("editor", 2, state) is None


def test_assets_are_bundled_and_load_nothing_from_the_network() -> None:
    js, css = pd.assets()
    assert "export default function" in js
    assert '"drop"' in js and ".pd-handle" in css
    urls = set(re.findall(r"https?://[^\s\"')]+", js + css))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls  # the SVG namespace only: no CDN
    assert "import " not in js and "fetch(" not in js


def test_tps_figures_build() -> None:
    from pages.lab import figures as viz

    img = _image()
    res = te.compute(img, te.preset_points("bend", 4), (20, 30))
    out = viz.lattice_output_figure(res.output, res.ctrl_out, title="V")
    fit = viz.affine_fit_figure(img, res.affine_grid, res.affine.mapped, te.preset_points("bend", 4), title="fit")
    labels = [t for tr in out.data if tr.type == "scatter" and tr.text is not None for t in tr.text]
    assert labels == [str(i) for i in range(1, 17)]
    assert out.to_json() and fit.to_json()
