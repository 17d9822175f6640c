"""Pure logic of the Transform playground (pages.lab.playground): state <-> URL, presets,
θ validation, parameter conversions and the warp call."""

from __future__ import annotations

import io
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from stn_core import make_grid
from pages.lab import playground as pg


def _digit() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((28, 28, 3)).astype(np.float32)


# --------------------------------------------------------------------------- query string

def test_state_roundtrips_through_query() -> None:
    s = pg.PlaygroundState(image="bird-3", kind="projective", mode="raw", rot=12.5, sx=0.75, sy=-1.0, shear=0.1,
                           tx=0.2, ty=-0.3, px=0.05, py=-0.4, raw=(1.0, 0.1, 0.2, -0.1, 0.9, 0.0, 0.01, 0.3),
                           sampling="nearest", out="128")
    q = pg.state_to_query(s)
    assert all(isinstance(v, str) for v in q.values())
    assert q["theta"] == "1,0.1,0.2,-0.1,0.9,0,0.01,0.3"
    back, msgs = pg.state_from_query(q)
    assert msgs == []
    assert back == s


def test_empty_query_gives_defaults() -> None:
    s, msgs = pg.state_from_query({})
    assert s == pg.PlaygroundState() and msgs == []


@pytest.mark.parametrize("query", [
    {"rot": "abc"}, {"sx": "nan"}, {"tx": "inf"}, {"kind": "tps"}, {"mode": "banana"}, {"image": "../etc/passwd"},
    {"sampling": "cubic"}, {"out": "7"}, {"mode": "raw", "theta": "1,2"}, {"mode": "raw", "theta": "nan,0,0,0,1,0"},
    {"mode": "raw"}, {"rot": "1e9"}, {"theta": ",,,"},
])
def test_bad_query_values_warn_and_fall_back(query: dict) -> None:
    s, msgs = pg.state_from_query(query)
    if query == {"theta": ",,,"}:  # ignored in intuitive mode
        assert msgs == []
    else:
        assert msgs and all(m.level == "warning" for m in msgs)
    for name, spec in pg.SLIDERS.items():
        v = getattr(s, name)
        assert math.isfinite(v) and spec.lo <= v <= spec.hi
    assert all(math.isfinite(v) for v in s.raw)
    assert len(s.raw) == pg.n_params(s.kind)
    assert s.kind in pg.KINDS and s.mode in pg.MODES and pg.parse_image_key(s.image) is not None


def test_raw_theta_with_nan_switches_to_intuitive() -> None:
    s, msgs = pg.state_from_query({"mode": "raw", "theta": "nan,0,0,0,1,0"})
    assert s.mode == "intuitive"
    assert "not a finite number" in msgs[0].text


def test_out_of_range_values_are_clamped() -> None:
    s, msgs = pg.state_from_query({"rot": "720", "mode": "raw", "theta": "1000,0,0,0,1,0"})
    assert s.rot == 180.0 and s.raw[0] == pg.RAW_LIMIT
    assert len(msgs) == 2


def test_repeated_query_keys_take_the_last() -> None:
    s, _ = pg.state_from_query({"kind": ["affine", "projective"]})
    assert s.kind == "projective"


def test_parse_image_key() -> None:
    assert pg.parse_image_key("mnist-12") == ("mnist", 12)
    assert pg.parse_image_key("bird-0") == ("bird", 0)
    assert pg.parse_image_key("upload") == ("upload", 0)
    for bad in ("mnist", "mnist-", "cat-1", "mnist--1", "", "bird-1x"):
        assert pg.parse_image_key(bad) is None
    assert pg.image_key("mnist", 3) == "mnist-3" and pg.image_key("upload") == "upload"


# --------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("kind", pg.KINDS)
def test_identity_controls_give_identity_params(kind: str) -> None:
    s = pg.PlaygroundState(kind=kind)
    assert np.allclose(pg.intuitive_to_params(s, (28, 28)), pg.IDENTITY[kind])
    assert np.allclose(pg.intuitive_to_params(s, (120, 160)), pg.IDENTITY[kind])


def test_rotation_and_perspective_controls() -> None:
    p = pg.intuitive_to_params(pg.PlaygroundState(kind="projective", rot=90, px=0.2, py=-0.3), (28, 28))
    assert np.allclose(p, [0, 1, 0, -1, 0, 0, 0.2, -0.3], atol=1e-12)
    att = pg.intuitive_to_params(pg.PlaygroundState(kind="attention", sx=0.5, tx=0.1, ty=-0.2, rot=30))
    assert att == (0.5, 0.1, -0.2)  # attention ignores rotation


def test_current_params_follows_mode() -> None:
    s = pg.PlaygroundState(rot=30, raw=(2.0, 0, 0, 0, 2.0, 0))
    assert pg.current_params(replace(s, mode="raw")) == (2.0, 0, 0, 0, 2.0, 0)
    assert pg.current_params(s) != (2.0, 0, 0, 0, 2.0, 0)


def test_convert_raw_between_kinds() -> None:
    aff = (0.5, 0.1, 0.2, -0.1, 0.5, 0.3)
    proj = pg.convert_raw(aff, "affine", "projective")
    assert proj == aff + (0.0, 0.0)
    assert pg.convert_raw(proj, "projective", "affine") == aff
    s, tx, ty = pg.convert_raw(aff, "affine", "attention")
    assert math.isclose(s, math.sqrt(0.5 * 0.5 + 0.1 * 0.1)) and (tx, ty) == (0.2, 0.3)
    assert pg.convert_raw((0.5, 0.1, 0.2), "attention", "affine") == (0.5, 0.0, 0.1, 0.0, 0.5, 0.2)
    assert pg.convert_raw((0, 0, 0, 0, 0, 0), "affine", "attention")[0] == 1.0  # singular: s falls back to 1
    assert pg.convert_raw((1, 2), "affine", "projective") == pg.IDENTITY["projective"]


def test_check_params() -> None:
    assert pg.check_params("affine", pg.IDENTITY["affine"]) == []
    assert "non-finite" in pg.check_params("affine", (math.nan, 0, 0, 0, 1, 0))[0].text
    assert "singular" in pg.check_params("affine", (1, 2, 0, 2, 4, 0))[0].text
    assert "singular" in pg.check_params("attention", (0.0, 0.3, 0.3))[0].text
    assert "det H" in pg.check_params("projective", (1, 0, 0, 2, 0, 0, 1, 0))[0].text  # a zero column
    assert "needs 3" in pg.check_params("attention", (1, 0))[0].text
    assert all(m.level == "error" for m in pg.check_params("affine", (0,) * 6))


def test_resolve_params_falls_back() -> None:
    good = (0.5, 0, 0, 0, 0.5, 0)
    p, msgs, ok = pg.resolve_params("affine", good)
    assert ok and p == good and msgs == []
    p, msgs, ok = pg.resolve_params("affine", (0,) * 6, ("affine", good))
    assert not ok and p == good and "last valid" in msgs[0].text
    p, msgs, ok = pg.resolve_params("affine", (0,) * 6, ("projective", pg.IDENTITY["projective"]))
    assert not ok and p == pg.IDENTITY["affine"] and "identity" in msgs[0].text


def test_presets() -> None:
    att = pg.PlaygroundState(kind="attention", rot=10, tx=0.4)
    rot = pg.apply_preset(att, "rotate45", (28, 28))
    assert rot.kind == "affine" and rot.rot == 45 and rot.tx == 0 and rot.mode == "intuitive"
    assert np.allclose(rot.raw, pg.intuitive_to_params(rot, (28, 28)))
    zoom = pg.apply_preset(att, "zoom")
    assert zoom.kind == "attention" and zoom.raw == (0.5, 0.0, -0.35)
    tilt = pg.apply_preset(pg.PlaygroundState(), "tilt")
    assert tilt.kind == "projective" and tilt.py == 0.5 and len(tilt.raw) == 8
    mirror = pg.apply_preset(pg.PlaygroundState(kind="projective", mode="raw"), "mirror")
    assert mirror.kind == "projective" and mirror.raw[0] == -1.0
    for name in pg.PRESETS:
        s = pg.apply_preset(pg.PlaygroundState(), name, (120, 160))
        assert pg.check_params(s.kind, s.raw) == []
    ident = pg.identity_state(rot)
    assert ident.raw == pg.IDENTITY["affine"] and ident.rot == 0 and ident.kind == "affine"


def test_output_size() -> None:
    assert pg.output_size("same", (151, 160)) == (151, 160)
    assert pg.output_size("64", (151, 160)) == (64, 64)


# --------------------------------------------------------------------------- warp

@pytest.mark.parametrize("kind", pg.KINDS)
@pytest.mark.parametrize("sampling", pg.SAMPLINGS)
def test_identity_warp_reproduces_input(kind: str, sampling: str) -> None:
    u = _digit()
    res = pg.warp(u, kind, pg.IDENTITY[kind], (28, 28), sampling)
    assert res.output.shape == (28, 28, 3) and res.grid.shape == (28, 28, 2)
    assert np.abs(res.output - u).max() < 1e-5
    assert res.valid.all() and res.messages == []


def test_warp_accepts_gray_and_uint8() -> None:
    gray = (np.arange(28 * 28).reshape(28, 28) % 255).astype(np.uint8)
    res = pg.warp(gray, "affine", pg.IDENTITY["affine"], (28, 28))
    assert np.allclose(res.output[..., 0], gray / 255.0, atol=1e-5)


def test_projective_horizon_is_masked_and_warned() -> None:
    params = (1, 0, 0, 0, 1, 0, 0.0, 1.5)  # w = 1.5·y + 1 ≤ 0 for y ≤ -2/3
    res = pg.warp(_digit(), "projective", params, (30, 30))
    ys = (np.arange(30) + 0.5) / 30 * 2 - 1
    expected_bad_rows = int((1.5 * ys + 1 <= pg.HORIZON_EPS).sum())
    assert (~res.valid).sum() == expected_bad_rows * 30
    assert np.isfinite(res.output).all() and np.isfinite(res.grid).all()
    assert (res.output[~res.valid] == 0).all()
    assert any(m.level == "warning" and "infinity" in m.text for m in res.messages)


def test_window_outside_input_is_reported() -> None:
    res = pg.warp(_digit(), "attention", (0.2, 5.0, 5.0), (16, 16))
    assert (res.output == 0).all()
    assert any(m.level == "info" for m in res.messages)


@pytest.mark.parametrize("kind,params", [
    ("affine", (0.7, -0.3, 0.1, 0.4, 0.9, -0.2)),
    ("attention", (0.6, 0.2, -0.1)),
    ("projective", (0.9, 0.1, 0.05, -0.1, 1.1, 0.0, 0.2, -0.3)),
])
def test_map_points_agrees_with_the_grid_generator(kind: str, params: tuple) -> None:
    grid = make_grid(kind, torch.tensor([params], dtype=torch.float64), (7, 9))[0].numpy()
    xs = (np.arange(9) + 0.5) / 9 * 2 - 1
    ys = (np.arange(7) + 0.5) / 7 * 2 - 1
    pts = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    assert np.allclose(pg.map_points(kind, params, pts).reshape(7, 9, 2), grid, atol=1e-9)


def test_outline_of_identity_is_the_square() -> None:
    ol = pg.outline("affine", pg.IDENTITY["affine"], per_edge=4)
    assert ol.shape == (17, 2)
    for corner in ([-1, -1], [1, -1], [1, 1], [-1, 1]):
        assert np.isclose(ol, corner).all(1).any()
    assert np.allclose(ol[0], ol[-1])  # closed
    ol_p = pg.outline("projective", (1, 0, 0, 0, 1, 0, 0, 2.0))
    assert np.isnan(ol_p).any() and np.isfinite(ol_p).any()


def test_invert_affine_and_pipeline_example() -> None:
    p = (0.7, -0.3, 0.1, 0.4, 0.9, -0.2)
    inv = pg.invert_affine(p)
    m = np.vstack([pg.params_matrix("affine", p), [0, 0, 1]]) @ np.vstack([pg.params_matrix("affine", inv), [0, 0, 1]])
    assert np.allclose(m, np.eye(3))
    digit = pg.fallback_digit()
    ex = pg.pipeline_example(digit)
    assert ex.u.shape == ex.v.shape == digit.shape and ex.grid.shape == (28, 28, 2)
    # V (the straightened digit) is closer to the original than the distorted U.
    assert np.abs(ex.v - digit).mean() < np.abs(ex.u - digit).mean()


# --------------------------------------------------------------------------- text, images, upload

def test_theta_latex() -> None:
    tex = pg.theta_latex("affine", (1, -0.0, 0.25, 0, 1, -0.5))
    assert r"\begin{bmatrix}" in tex and "0.250" in tex and "-0.500" in tex and "-0.000" not in tex
    assert tex.count(r"\\") == 1
    assert pg.theta_latex("projective", pg.IDENTITY["projective"]).count(r"\\") == 2
    assert "t_x" in pg.theta_latex("attention", (0.5, 0.1, 0.2))


def test_determinant() -> None:
    assert pg.determinant("affine", (2, 0, 5, 0, 3, 5)) == 6
    assert pg.determinant("attention", (0.5, 1, 1)) == 0.25
    assert math.isclose(pg.determinant("projective", (1, 0, 0, 0, 1, 0, 0.5, 0)), 1.0)


def test_as_rgb_and_fallbacks() -> None:
    assert pg.as_rgb(np.zeros((5, 6), np.uint8)).shape == (5, 6, 3)
    assert pg.as_rgb(np.ones((5, 6, 4), np.float32)).shape == (5, 6, 3)
    with pytest.raises(ValueError):
        pg.as_rgb(np.zeros((5,)))
    for img in (pg.fallback_digit(), pg.fallback_photo()):
        assert img.dtype == np.float32 and img.ndim == 3 and 0 <= img.min() and img.max() <= 1


def _png(w: int = 20, h: int = 10) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.arange(w * h * 3).reshape(h, w, 3) % 256).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_decode_upload_good_and_bad() -> None:
    ok = pg.decode_upload(_png(), "a.png")
    assert ok.error is None and ok.image is not None and ok.image.shape == (10, 20, 3)
    for data in (b"", b"not an image at all", _png()[:40]):
        bad = pg.decode_upload(data, "bad.png")
        assert bad.image is None and bad.error and "bad.png" in bad.error
    big = pg.decode_upload(_png(1200, 300), "big.png")
    assert big.image.shape[1] == 512 and any("downscaled" in w for w in big.warnings)
