"""pages.lab.dcn: the DCN's sampling points, receptive field and offsets; the ST side; the comparison."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pages.lab import dcn as L
from stn_core.models import build_model
from stn_core import registry as reg
from stn_core.analysis import stn_vs_dcn as svd
from stn_core.analysis import deformable as dfm
from tiny_checkpoints import TINY, make_tiny
from script_util import load_script

def _dcn(side=28, seed=0, offsets=0.7):
    torch.manual_seed(seed)
    m = build_model("dcn", None, side, target_params=TINY).eval()
    with torch.no_grad():
        for layer in m.deform_layers:
            layer.offset_conv.bias.normal_(0.0, offsets)
    return m


def _x(side=28, seed=1):
    return torch.rand(1, 1, side, side, generator=torch.Generator().manual_seed(seed))


def test_stages_and_sampling_points_match_the_layer():
    m, x = _dcn(), _x()
    v = dfm.dcn_view(m, x)
    assert [s.kind for s in v.stages] == ["deform", "pool", "deform", "pool"]
    assert v.stages[0].out_hw == (20, 20) and v.stages[2].in_hw == (10, 10) and v.stages[2].out_hw == (4, 4)
    assert v.probs.shape == (10,) and v.pred == int(m(x).argmax())
    from stn_core.dcn import sampling_positions
    for layer, (r, c) in ((0, (3, 17)), (1, (2, 1))):
        pts = dfm.sampling_points(m, x, layer, (r, c))
        with torch.no_grad():
            offset = m.views(x).offsets[layer]
        ref = sampling_positions(m.deform_layers[layer], offset)[0, r, c].double().numpy()
        np.testing.assert_allclose(pts, ref, atol=1e-5)
        reg = dfm.regular_points(v, layer, (r, c))
        k = m.deform_layers[layer].kernel_size
        assert reg.shape == (k * k, 2)
        np.testing.assert_array_equal(reg[0], [c, r])  # padding 0: tap (0, 0) of output (r, c) reads (c, r)
        np.testing.assert_array_equal(reg[-1], [c + k - 1, r + k - 1])
        assert np.abs(pts - reg).max() > 0.05  # the offsets move the taps
    with pytest.raises(ValueError, match="outside"):
        dfm.sampling_points(v, None, 1, (4, 0))
    with pytest.raises(ValueError, match="layer must be"):
        dfm.sampling_points(v, None, 2, (0, 0))
    with pytest.raises(ValueError, match="no deformable"):
        dfm.dcn_view(build_model("cnn", None, 28, target_params=TINY), x)
    with pytest.raises(ValueError, match="takes 28"):
        dfm.dcn_view(m, _x(42))


def test_zero_offsets_give_the_plain_cnn_geometry():
    m, x = _dcn(offsets=0.0), _x()
    v = dfm.dcn_view(m, x)
    d, r = dfm.image_points(v, 1, (1, 2))
    np.testing.assert_allclose(d, r)
    # conv 2 tap (0, 0) of output (1, 2) reads pooled (2, 1) → pool window centre (4.5, 2.5) → conv 1 kernel centre +4
    np.testing.assert_allclose(r[0], [8.5, 6.5])
    field = dfm.receptive_points(v, None, (1, 1))
    np.testing.assert_allclose(field, dfm.receptive_points(v, None, (1, 1), deformed=False))
    assert field.shape == (49 * 81, 2)
    # the plain CNN's receptive field of conv 2 output (1, 1): pooled rows 1..7 → conv 1 rows 2.5..14.5 → ±4
    np.testing.assert_allclose(field.min(0), [2.5, 2.5])
    np.testing.assert_allclose(field.max(0), [22.5, 22.5])
    assert np.abs(dfm.offset_magnitude_map(v, None, 0)).max() == 0
    np.testing.assert_allclose(dfm.output_centres(v, 1)[1, 2], [8.5 + 3 * 2, 6.5 + 3 * 2])
    # conv 2's centre tap of output (1, 2) reads pooled (row 4, col 5): pool window rows 8-9, cols 10-11
    assert dfm.chain_locations(v, (1, 2)) == [(8, 10), (1, 2)]


def test_receptive_field_follows_the_offsets():
    m, x = _dcn(offsets=0.0), _x()
    with torch.no_grad():  # conv 1 taps all move +2 px right; conv 2 taps +1 row down (pooled pixels)
        m.deform_layers[0].offset_conv.bias[1:162:2] = 2.0
        m.deform_layers[1].offset_conv.bias[0:98:2] = 1.0
    v = dfm.dcn_view(m, x)
    reg = dfm.receptive_points(v, None, (1, 1), deformed=False)
    field = dfm.receptive_points(v, None, (1, 1))
    np.testing.assert_allclose(field, reg + np.array([2.0, 2.0]), atol=1e-9)  # +1 pooled row = +2 image rows
    np.testing.assert_allclose(dfm.offset_magnitude_map(v, None, 0), np.full((20, 20), 2.0), atol=1e-6)
    np.testing.assert_allclose(dfm.offset_magnitude_map(m, x, 1), np.full((4, 4), 1.0), atol=1e-6)
    d, r = dfm.image_points(v, 1, (0, 0))
    np.testing.assert_allclose(d - r, np.tile([0.0, 2.0], (49, 1)))
    assert dfm.chain_locations(v, (1, 1))[-1] == (1, 1)
    # taps pushed off the map read only zeros: they are dropped
    with torch.no_grad():
        m.deform_layers[1].offset_conv.bias[0:98:2] = 50.0
    assert dfm.receptive_points(m, x, (1, 1)).shape == (0, 2)


def test_rts_sizes_and_chain():
    m, x = _dcn(side=42), _x(42)
    v = dfm.dcn_view(m, x)
    assert v.stages[0].out_hw == (34, 34) and v.stages[2].out_hw == (11, 11)
    locs = dfm.chain_locations(v, (5, 5))
    assert len(locs) == 2 and locs[1] == (5, 5) and all(0 <= a < 34 for a in locs[0])
    assert dfm.offset_magnitude_map(v, None, 0).shape == (34, 34)
    assert dfm.layer_names(v) == ["conv 1 (9×9)", "conv 2 (7×7)"]


def test_figures_and_click():
    m, x = _dcn(), _x()
    v = dfm.dcn_view(m, x)
    fig = L.sampling_figure(x[0, 0].numpy(), v, (2, 3), "taps")
    names = [t.name for t in fig.data]
    assert L.CLICK_TRACE in names and any("conv 2 (7×7) taps at row 2, col 3" == n for n in names)
    click = fig.data[names.index(L.CLICK_TRACE)]
    assert len(click.x) == 16 and list(click.customdata[7]) == [1, 3]
    assert L.clicked_location({"selection": {"points": [{"customdata": [1, 3]}]}}, v) == (1, 3)
    assert L.clicked_location({"selection": {"points": []}}, v) is None
    assert L.clicked_location({"selection": {"points": [{"customdata": [9, 9]}]}}, v) is None
    assert len(L.receptive_figure(x[0, 0].numpy(), v, (2, 3), "field").data) == 3
    assert L.offset_figure(v, 0, "off").data[0].z.shape == (20, 20)


def test_stn_view_and_theta_rows():
    torch.manual_seed(0)
    m = build_model("st-cnn", "tps", 28, target_params=TINY).eval()
    p = svd.stn_view(m, _x())
    assert p.kind == "tps" and p.output.shape == (28, 28) and len(svd.theta_rows(p)) == 16
    m = build_model("st-cnn", "affine", 28, target_params=TINY).eval()
    p = svd.stn_view(m, _x()[0, 0].numpy())
    assert svd.theta_rows(p) == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]] and p.region.shape[1] == 2
    with pytest.raises(ValueError, match="no spatial transformer"):
        svd.stn_view(_dcn(), _x())


def test_predicted_numbers():
    assert svd.predicted_numbers(build_model("cnn", None, 28))[0] == 0
    assert svd.predicted_numbers(build_model("st-cnn", "affine", 28))[0] == 6
    assert svd.predicted_numbers(build_model("st-cnn", "tps", 42))[0] == 32
    n, how = svd.predicted_numbers(build_model("dcn", None, 28))
    assert n == 2 * 81 * 20 * 20 + 2 * 49 * 4 * 4 and "conv 2: 2·49·4·4" in how
    assert svd.predicted_numbers(build_model("dcn", None, 42, modulated=True))[0] == 3 * 81 * 34 * 34 + 3 * 49 * 11 * 11
    assert svd.numbers_per_image("rts", "dcn") == 2 * 81 * 34 * 34 + 2 * 49 * 11 * 11


def test_comparison_rows_read_the_checkpoints_and_results(tmp_path):
    make_tiny(tmp_path, "r", "dcn", test_error=1.5)
    make_tiny(tmp_path, "r", "st-cnn-aff", test_error=0.9)
    (tmp_path / "mnist_r_st-cnn-tps.json").write_text("{not json")
    res = {"tasks": {"r": {"dcn": {"fwd_bwd_ratio_cpu": 3.456}}}}
    rows = {r["model"]: r for r in svd.comparison_rows("r", res, tmp_path)}
    assert rows["DCN"]["test error"] == "1.50 %" and rows["DCN"]["fwd+bwd vs CNN (CPU)"] == "3.46×"
    assert rows["ST-CNN Aff"]["test error"] == "0.90 %" and rows["ST-CNN Aff"]["numbers per image"] == "6"
    assert rows["CNN"]["test error"] == "not trained yet" and rows["CNN"]["fwd+bwd vs CNN (CPU)"] == "not measured"
    assert "fwd+bwd vs CNN (GPU)" not in rows["DCN"]  # no CUDA timings in these results
    res["tasks"]["r"]["dcn"]["fwd_bwd_ratio_cuda"] = 2.0
    assert [r["fwd+bwd vs CNN (GPU)"] for r in svd.comparison_rows("r", res, tmp_path)] == ["not measured"] * 3 + ["2.00×"]
    del res["tasks"]["r"]["dcn"]["fwd_bwd_ratio_cuda"]
    assert "mnist_r_st-cnn-tps.json" in rows["ST-CNN TPS"]["test error"]
    assert svd.read_meta("r", "dcn", tmp_path)[0]["model"] == "dcn"
    assert reg.train_command("rts", "dcn") == "python -m stn_core.train --task mnist-rts --model dcn --out checkpoints/mnist_rts_dcn"
    assert svd.load_results(tmp_path / "missing.json") is None
    (tmp_path / "r.json").write_text(json.dumps(res))
    assert svd.load_results(tmp_path / "r.json") == res
    with pytest.raises(ValueError, match="unknown model key"):
        svd.stem("r", "fcn")


def test_the_comparison_names_each_models_training_budget(tmp_path):
    assert svd.trained_on({"train_args": {"steps": 15625, "batch": 256}}) == "15,625 × 256 = 4 M"
    assert svd.trained_on({"train_args": {"steps": 3000, "batch": 256}}) == "3,000 × 256 = 768 k"
    assert svd.trained_on({"train_args": {}}) == "–" and svd.trained_on(None) == "–"
    make_tiny(tmp_path, "rts", "dcn", test_error=2.5)  # 5 × 8
    rows = {r["model"]: r for r in svd.comparison_rows("rts", None, tmp_path)}
    assert rows["DCN"]["trained on (steps × batch)"] == "5 × 8 = 40"
    assert rows["CNN"]["trained on (steps × batch)"] == "–"  # not trained here


def test_make_stn_vs_dcn_script(tmp_path):
    import subprocess
    import sys
    make_tiny(tmp_path, "rts", "dcn", test_error=2.5)
    out = tmp_path / "res" / "stn-vs-dcn.md"
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, str(root / "scripts" / "make_stn_vs_dcn.py"), "--repeats", "1", "--batch", "2",
                    "--checkpoints", str(tmp_path), "--out", str(out), "--no-cuda"], check=True, cwd=root,
                   capture_output=True, timeout=600)
    text = out.read_text()
    assert "| DCN | 2.50 | 5 × 8 = 40 |" in text and "not trained yet" in text and "--batch 2" in text
    assert "| 28×28 |" in text and "TPS / affine" in text
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["tasks"]["rts"]["dcn"]["test_error"] == 2.5
    assert data["tasks"]["rts"]["cnn"]["fwd_bwd_ratio_cpu"] == 1.0
    assert data["tasks"]["r"]["dcn"]["predicted_per_image"] == 66368
    assert not list(out.parent.glob("*.tmp*"))


def test_stn_vs_dcn_timings_travel_between_machines(tmp_path):
    """--save-timings on one machine (a GPU), --timings-from on another: the devices not measured here
    come from the file, with its provenance printed."""

    mod = load_script("make_stn_vs_dcn")
    t = {"fwd_ms": 1.0, "fwd_bwd_ms": 2.0}
    saved = {"cpu": {28: {k: t for k in svd.COMPARE_KEYS}}}
    args = type("A", (), {"batch": 4, "repeats": 1})()
    mod.save_timings(tmp_path / "t.json", saved, "python scripts/make_stn_vs_dcn.py --devices cpu", args)
    rec = json.loads((tmp_path / "t.json").read_text())
    rec["timings"]["cuda"] = rec["timings"].pop("cpu")  # as if measured on a GPU
    rec["device_names"] = {"cuda": "Some GPU"}
    (tmp_path / "t.json").write_text(json.dumps(rec))
    here = {"cpu": {28: {k: {"fwd_ms": 5.0, "fwd_bwd_ms": 9.0} for k in svd.COMPARE_KEYS}}}
    added = mod.load_timings(tmp_path / "t.json", here)
    assert set(here) == {"cpu", "cuda"} and here["cuda"][28]["dcn"] == t and here["cpu"][28]["dcn"]["fwd_ms"] == 5.0
    assert added["cuda"]["device_names"]["cuda"] == "Some GPU" and added["cuda"]["batch"] == 4
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SystemExit, match="cannot read timings"):
        mod.load_timings(tmp_path / "bad.json", here)
