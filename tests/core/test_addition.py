"""MNIST addition (paper appendix): data, the four models, the training CLI, the measures of
"each transformer has taken one digit", the results script and the training queue."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pages.lab import addition as ad
from stn_core.data import tasks as ds
from stn_core.data import distortions as D
from stn_core.train import mnist as T
from stn_core.checkpoints import load_model
from stn_core.models import ParallelSTNet, build_model, count_params
from stn_core import registry as reg
from stn_core.analysis import addition as an_add

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- data

def _tiny_split(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    from stn_core.data.samples import load_mnist_sample

    x, y = load_mnist_sample()
    return torch.from_numpy(x[:n].astype(np.uint8)), torch.from_numpy(y[:n].astype(np.int64))


def test_task_metadata():
    assert ds.is_pair_task("mnist-addition") and not ds.is_pair_task("mnist-rts")
    assert ds.in_channels("mnist-addition") == 2 and ds.in_channels("mnist-rts") == 1
    assert ds.num_classes("mnist-addition") == 19 and ds.classes("mnist-addition") == [str(i) for i in range(19)]
    assert ds.input_size("mnist-addition") == 42
    assert T.paper_error("2st-fcn", "affine", "mnist-addition") == 5.8
    assert T.paper_error("fcn", None, "mnist-addition") == 47.7 and T.paper_error("cnn", None, "mnist-rts") == 0.8


def test_train_stream_pairs_are_sums_of_independent_digits():
    imgs, labs = _tiny_split()
    s = ds.TrainStream(imgs, labs, "mnist-addition", seed=4, batch_size=16)
    x, y = s.batch(3)
    assert x.shape == (16, 2, 42, 42) and x.dtype == torch.float32 and y.shape == (16,)
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    i1, i2 = s.indices(3, 0), s.indices(3, 1)
    assert torch.equal(y, labs[i1] + labs[i2])
    assert not torch.equal(i1, i2)  # two independent permutations
    # each channel is the RTS warp of its own digit with its own parameters
    g = D.make_generator(ds.derive_seed(4, 2, 3))
    p = D.sample_params("RTS", 32, g)
    ch2 = D.warp(imgs[i2], "RTS", D.slice_params(p, 16, 32))
    torch.testing.assert_close(x[:, 1:2], ch2)
    # deterministic from (seed, step); a rank's slice of the global batch
    x2, y2 = ds.TrainStream(imgs, labs, "mnist-addition", seed=4, batch_size=16).batch(3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    xr, yr = ds.TrainStream(imgs, labs, "mnist-addition", seed=4, batch_size=16, rank=1, world=2).batch(3)
    torch.testing.assert_close(xr, x[8:]) and torch.equal(yr, y[8:])
    assert not torch.equal(ds.TrainStream(imgs, labs, "mnist-addition", seed=5, batch_size=16).batch(3)[0], x)


def test_single_digit_streams_unchanged_by_the_pair_code():
    imgs, labs = _tiny_split()
    s = ds.TrainStream(imgs, labs, "mnist-rts", seed=1, batch_size=8)
    g = D.make_generator(ds.derive_seed(1, 1, 0))
    assert torch.equal(s.indices(0), torch.randperm(40, generator=g)[:8])
    assert s.batch(0)[0].shape == (8, 1, 42, 42)


def test_fixed_pair_test_set(data_root):
    x, y = ds.fixed_test_set("mnist-addition", root=data_root, verify=False)
    assert x.shape == (200, 2, 42, 42) and y.shape == (200,)
    assert int(y.min()) >= 0 and int(y.max()) <= 18
    imgs, labs = ds.load_split("test", data_root, verify=False)
    partner, p1, p2 = ds.pair_test_plan(200)
    assert torch.equal(y, labs + labs[partner])
    torch.testing.assert_close(x[:, :1], D.warp(imgs, "RTS", p1))
    x2, y2 = ds.make_test_set(imgs, labs, "mnist-addition", chunk=64)  # chunking changes nothing
    assert torch.equal(x, x2) and torch.equal(y, y2)
    xl, _ = ds.fixed_test_set("mnist-addition", root=data_root, verify=False, limit=10)
    assert torch.equal(xl, x[:10])


# --------------------------------------------------------------------------- models

@pytest.mark.parametrize("key", reg.ADDITION_KEYS)
def test_models_take_two_channels_and_have_about_equal_size(key):
    name, transform = reg.ADDITION_SPECS[key]
    m = build_model(name, transform, 42, 19, in_channels=2)
    n = count_params(m)
    assert abs(n - 400_000) / 400_000 < 0.01, (key, n)
    x = torch.rand(3, 2, 42, 42)
    assert m(x).shape == (3, 19)


def test_two_transformers_each_see_both_channels():
    torch.manual_seed(0)
    m = build_model("2st-fcn", "affine", 42, 19, in_channels=2)
    assert isinstance(m, ParallelSTNet) and m.transformer is None and len(m.transformers) == 2
    for st in m.transformers:
        assert st.localisation[1].in_features == 2 * 42 * 42
    assert m.classifier[1].in_features == 4 * 21 * 21  # two 2-channel outputs, 2× average-pooled
    x = torch.rand(5, 2, 42, 42)
    logits = m(x)
    views = m.views(x)
    assert views.theta.shape == (5, 2, 2, 3) and views.grid.shape == (5, 2, 42, 42, 2)
    torch.testing.assert_close(views.logits, logits)
    ident = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    torch.testing.assert_close(views.theta, ident.expand(5, 2, 2, 3))  # identity at initialisation
    lg, theta, outs = an_add.forward_views(m, x)
    torch.testing.assert_close(lg, logits)
    assert outs.shape == (5, 2, 2, 42, 42)
    torch.testing.assert_close(outs[:, 0], x, atol=1e-5, rtol=0)
    # the parallel transformers get gradients
    m(x).logsumexp(1).sum().backward()
    assert all(st.localisation[1].weight.grad is not None for st in m.transformers)
    assert all(st.regression.weight.grad.abs().sum() > 0 for st in m.transformers)


def test_single_st_fcn_warps_both_channels_with_one_theta():
    m = build_model("st-fcn", "affine", 42, 19, in_channels=2)
    x = torch.rand(2, 2, 42, 42)
    assert m.views(x).theta.shape == (2, 2, 3)
    assert m.classifier[1].in_features == 2 * 21 * 21


# --------------------------------------------------------------------------- CLI

def _args(data_root, out, *extra):
    return ["--data-root", str(data_root), "--no-verify", "--out", str(out), "--threads", "1", "--no-progress",
            *extra]


def test_cli_tiny_run_and_load_model_round_trip(data_root, tmp_path):
    out = tmp_path / "add2st"
    meta = T.main(_args(data_root, out, "--task", "mnist-addition", "--model", "2st-fcn", "--steps", "4",
                        "--batch", "16", "--lr", "0.05", "--momentum", "0.9", "--test-limit", "50",
                        "--target-params", "60000"))
    assert meta["num_classes"] == 19 and meta["classes"] == [str(i) for i in range(19)]
    assert meta["paper_error"] == 5.8 and meta["final"] and meta["test_set"]["size"] == 50
    m, saved = load_model(out)
    assert isinstance(m, ParallelSTNet) and saved["arch"]["in_channels"] == 2 and saved["model"] == "2st-fcn"
    x, y = ds.fixed_test_set("mnist-addition", root=data_root, verify=False, limit=50)
    err, _ = T.evaluate(m, x, y, torch.device("cpu"))
    assert err == pytest.approx(saved["test_error"], abs=1e-3)
    # resume of a finished run changes nothing; a CNN on the pair task also builds and reloads
    meta_c = T.main(_args(data_root, tmp_path / "addcnn", "--task", "mnist-addition", "--model", "cnn", "--steps",
                          "1", "--batch", "8", "--test-limit", "8", "--target-params", "60000"))
    mc, _ = load_model(tmp_path / "addcnn")
    assert mc(torch.rand(1, 2, 42, 42)).shape == (1, 19) and meta_c["paper_error"] == 14.7


def test_queue_script_skips_finished_and_resumes(data_root, tmp_path):
    cmd = [sys.executable, "scripts/train_addition.py", "--models", "fcn", "--checkpoints", str(tmp_path),
           "--extra", "--steps", "2", "--batch", "8", "--test-limit", "8", "--eval-every", "0",
           "--data-root", str(data_root), "--no-verify", "--target-params", "30000"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    meta = json.loads((tmp_path / "mnist_addition_fcn.json").read_text())
    assert meta["final"] and meta["task"] == "mnist-addition" and "--task mnist-addition" in meta["command"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "done already: mnist_addition_fcn" in p.stdout


# --------------------------------------------------------------------------- measures

def test_ink_shares():
    out = torch.zeros(3, 2, 2, 4, 4)
    out[0, 0, 0] = 1.0                       # transformer 1 sees only channel 1
    out[0, 1, 1] = 1.0                       # transformer 2 only channel 2
    out[1, :, 0, :2] = 1.0
    out[1, :, 1] = 1.0                       # 8 vs 16 pixels → 1/3
    s = an_add.ink_shares(out)
    torch.testing.assert_close(s[0], torch.tensor([1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(s[1], torch.tensor([1 / 3, 1 / 3], dtype=torch.float64))
    torch.testing.assert_close(s[2], torch.tensor([0.5, 0.5], dtype=torch.float64))  # empty: no preference


def test_box_coverage():
    x = torch.zeros(1, 2, 8, 8)
    x[0, 0, 1, 1] = 1.0                      # channel 1: ink at the top-left
    x[0, 1, 6, 6] = 1.0                      # channel 2: ink at the bottom-right
    ident = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    top_left = torch.tensor([[0.5, 0, -0.5], [0, 0.5, -0.5]])      # the top-left quarter
    singular = torch.zeros(2, 3)
    cov = an_add.box_coverage(x, torch.stack([ident, top_left, singular])[None])
    torch.testing.assert_close(cov[0], torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]], dtype=torch.float64))


def test_specialisation_of_a_hand_made_splitting_model():
    """Transformer 1 zooms on the left half, transformer 2 on the right; digit 1 sits left and
    digit 2 right: each transformer takes one digit on every pair."""
    m = build_model("2st-fcn", "affine", 42, 19, in_channels=2, target_params=30_000)
    with torch.no_grad():
        m.transformers[0].regression.bias.copy_(torch.tensor([0.5, 0, -0.5, 0, 1.0, 0]))
        m.transformers[1].regression.bias.copy_(torch.tensor([0.5, 0, 0.5, 0, 1.0, 0]))
    x = torch.zeros(6, 2, 42, 42)
    x[:, 0, 10:30, 3:15] = 1.0
    x[:, 1, 10:30, 27:39] = 1.0
    s = an_add.specialisation(m, x, chunk=4)
    assert s.n == 6 and s.split == 1.0 and s.strong_split == 1.0
    assert s.takes_ch1 == [1.0, 0.0] and s.takes_ch2 == [0.0, 1.0] and s.empty == [0.0, 0.0]
    assert s.coverage[0][0] == pytest.approx(1.0) and s.coverage[0][1] == pytest.approx(0.0)
    assert s.coverage[1][1] == pytest.approx(1.0)
    # box centres at (∓0.5, 0); digit 1's centroid at (-4/7, -1/21) (columns 3..14, rows 10..29)
    assert s.on_digit == [[1.0, 0.0], [0.0, 1.0]] and s.both == [0.0, 0.0] and s.neither == [0.0, 0.0]
    assert s.focus_split == 1.0 and s.focus_split_apart == 1.0 and s.apart == 1.0
    assert s.median_dist_px[0][0] == pytest.approx(21 * float(np.hypot(-4 / 7 + 0.5, -1 / 21)), abs=1e-6)  # 1.8 px
    assert s.follows(0) == 0 and s.follows(1) == 1
    assert s.box_side_px == pytest.approx([42 * 0.5 ** 0.5] * 2)  # a half-width, full-height box: area 0.5
    # at the identity both take the same digit (the one with more ink) on every pair
    ident = build_model("2st-fcn", "affine", 42, 19, in_channels=2, target_params=30_000)
    assert an_add.specialisation(ident, x).split == 0.0
    # a transformer looking at an empty corner takes neither digit: no split
    with torch.no_grad():
        m.transformers[1].regression.bias.copy_(torch.tensor([0.05, 0, 0.95, 0, 0.05, 0.95]))
    s = an_add.specialisation(m, x)
    assert s.empty == [0.0, 1.0] and s.takes_ch2 == [0.0, 0.0] and s.split == 0.0
    assert s.on_digit[1] == [0.0, 0.0] and s.focus_split == 0.0 and s.follows(1) is None
    with pytest.raises(ValueError, match="no spatial transformer"):
        an_add.specialisation(build_model("fcn", None, 42, 19, in_channels=2, target_params=30_000), x)


# --------------------------------------------------------------------------- page logic and report

def test_make_pair_and_page_state():
    d = np.zeros((28, 28), np.uint8)
    d[10:18, 12:16] = 255
    x = ad.make_pair(d, np.full((28, 28, 3), 0.0, np.float32), seed=3)
    assert x.shape == (1, 2, 42, 42) and float(x[0, 0].sum()) > 0 and float(x[0, 1].sum()) == 0
    assert torch.equal(x, ad.make_pair(d, np.zeros((28, 28)), seed=3))
    assert not torch.equal(x, ad.make_pair(d, np.zeros((28, 28)), seed=4))
    with pytest.raises(ValueError, match="28×28"):
        ad.make_pair(np.zeros((5, 5)), d, 0)
    st, warns = ad.parse_state({"a": "4", "b": "600", "seed": "-1", "model": "2st-fcn"}, 500)
    assert (st.a, st.b, st.seed, st.model) == (4, 1, 0, "2st-fcn") and len(warns) == 2
    assert ad.parse_state(st.query(), 500) == (st, [])
    r = ad.random_state(np.random.default_rng(0), 500, "cnn")
    assert 0 <= r.a < 500 and r.model == "cnn"
    assert ad.pair_image(x[0].numpy()).shape == (42, 86)


def test_results_report(tmp_path, data_root):
    from tiny_checkpoints import make_tiny_addition_checkpoint

    make_tiny_addition_checkpoint(tmp_path, "2st-fcn", test_error=7.25)
    make_tiny_addition_checkpoint(tmp_path, "cnn", test_error=30.0, final=False, steps=4)
    out = tmp_path / "r.md"
    p = subprocess.run([sys.executable, "scripts/make_addition_results.py", "--checkpoints", str(tmp_path),
                        "--out", str(out), "--data-root", str(data_root), "--no-verify", "--limit", "50"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    text = out.read_text()
    assert "| 2×ST-FCN | 7.25 | 5.8 (paper) |" in text
    assert "| FCN | — | 47.7 (paper) |" in text and "not trained yet" in text
    assert "training (last evaluated error)" in text
    assert "on 50 test pairs" in text and "are on **different** digits" in text
    assert "python scripts/make_addition_results.py --checkpoints" in text


def test_schedule_text_names_the_optimizer_of_each_run():
    from stn_core.analysis.addition import optimizer_text

    assert optimizer_text({"lr": 0.05, "momentum": 0.9}) == "SGD lr 0.05 with momentum 0.9"  # older runs: no key
    assert optimizer_text({"optimizer": "adam", "lr": 0.001, "momentum": 0.0, "loc_lr_mult": 0.1}) == \
        "Adam (β = 0.9, 0.999) lr 0.001, localisation nets at 0.1× that lr"


def _spec(on_digit, focus_split_apart):
    from stn_core.analysis.addition import Specialisation

    return Specialisation(n=10, takes_ch1=[0.6, 0.4], takes_ch2=[0.4, 0.6], empty=[0.0, 0.0],
                          mean_share=[0.55, 0.45], coverage=[[0.5, 0.95], [0.9, 0.3]], split=0.3,
                          strong_split=0.05, strong=0.75, on_digit=on_digit, both=[0.1, 0.1], neither=[0.0, 0.0],
                          centre_corr=[[0.05, 0.98], [0.97, 0.02]], median_dist_px=[[9.0, 1.4], [1.6, 9.2]],
                          apart=0.6, focus_split=0.8, focus_split_apart=focus_split_apart, box_side_px=[31.0, 33.0])


def test_verdict_checks_the_papers_ordering_and_names_each_transformers_digit(tmp_path):
    from tiny_checkpoints import make_tiny_addition_checkpoint

    from stn_core.registry import find_addition as find_checkpoints
    from stn_core.analysis.addition import verdict_lines

    make_tiny_addition_checkpoint(tmp_path, "fcn", test_error=60.0)
    make_tiny_addition_checkpoint(tmp_path, "st-fcn", test_error=65.0)  # worse than the FCN: said so
    make_tiny_addition_checkpoint(tmp_path, "2st-fcn", test_error=20.0)
    entries = find_checkpoints(tmp_path)
    text = "\n".join(verdict_lines(entries, _spec([[0.0, 0.88], [0.87, 0.01]], 0.97)))
    assert "ST-FCN (1 transformer) does **not** beat FCN (65.00 vs 60.00 %" in text
    assert "2×ST-FCN beats ST-FCN (1 transformer) (20.00 vs 65.00 %" in text
    assert "FCN +12.3 pp" in text and "2×ST-FCN +14.2 pp" in text and "CNN" not in text.split("Gap")[1].split(".")[0]
    assert "Transformer 1's box follows digit 2: its centre is on that digit on 88.0 % of the pairs" in text
    assert "Transformer 2's box follows digit 1: its centre is on that digit on 87.0 %" in text
    assert "correlation with its centre 0.97 (with the other's 0.02), median distance 1.6 px" in text
    assert "each transformer has taken one digit" in text and "97.0 %" in text and "is reached" in text
    # below the clean-split threshold, or both boxes on the same digit, or one box on neither: not reached
    for on, fsa in (([[0.0, 0.88], [0.87, 0.01]], 0.85), ([[0.9, 0.0], [0.8, 0.1]], 0.95),
                    ([[0.3, 0.2], [0.87, 0.01]], 0.95)):
        text = "\n".join(verdict_lines(entries, _spec(on, fsa)))
        assert "has **not** taken one digit" in text and "**not** reached" in text, (on, fsa)
    assert "follows neither digit: it is on digit 1 on 30.0 %" in text


def test_samples_text():
    from stn_core.analysis.addition import samples_text

    assert [samples_text(n) for n in (7_680_000, 102_400, 9_999, 80)] == ["7.68 M", "102 k", "9,999", "80"]


def test_verdict_checks_the_issues_goals_with_the_numbers(tmp_path):
    """2×ST-FCN ≤ 8 % and below the ST-FCN and the CNN, one sample budget for all four: each said met or
    missed from the final checkpoints, a miss with its size and what would close it."""
    from tiny_checkpoints import make_tiny_addition_checkpoint

    from stn_core.analysis.addition import verdict_lines
    from stn_core.registry import find_addition

    one = {"steps": 60_000, "batch": 128}
    make_tiny_addition_checkpoint(tmp_path, "fcn", test_error=60.0, train_args=one)
    make_tiny_addition_checkpoint(tmp_path, "st-fcn", test_error=30.0, train_args=one)
    make_tiny_addition_checkpoint(tmp_path, "2st-fcn", test_error=14.34, train_args=one)
    make_tiny_addition_checkpoint(tmp_path, "cnn", test_error=12.0, train_args={"steps": 800, "batch": 128})
    text = "\n".join(verdict_lines(find_addition(tmp_path), None))
    assert "2×ST-FCN at 8 % or better: 14.34 % — **missed** by 6.3 pp" in text
    assert "ours saw 7.68 M samples, 20% of the paper's 38.4 M" in text
    assert "2×ST-FCN below the ST-FCN (1 transformer): yes (14.34 vs 30.00 %)" in text
    assert "2×ST-FCN below the CNN: **no** (14.34 vs 12.00 %; not a fair test: 7.68 M against 102 k samples)" \
        in text
    assert "one sample budget for all four: **no** (FCN 7.68 M, CNN 102 k," in text
    make_tiny_addition_checkpoint(tmp_path, "2st-fcn", test_error=5.5, train_args=one)
    make_tiny_addition_checkpoint(tmp_path, "cnn", test_error=12.0, train_args=one)
    text = "\n".join(verdict_lines(find_addition(tmp_path), None))
    assert "2×ST-FCN at 8 % or better: 5.50 % (met)" in text and "**missed**" not in text
    assert "below the CNN: yes (5.50 vs 12.00 %)." in text
    assert "one sample budget for all four: yes (FCN 7.68 M, CNN 7.68 M, ST-FCN (1 transformer) 7.68 M, " \
           "2×ST-FCN 7.68 M samples)." in text


def test_box_focus_reads_where_the_box_is_centred():
    from stn_core.analysis.addition import TRACK_RADIUS, box_focus

    r = TRACK_RADIUS
    assert box_focus([0.05, 0.6], ink=30.0) == "digit 1"   # centred on digit 1, digit 2 far away
    assert box_focus([0.9, r], ink=30.0) == "digit 2"      # the radius itself counts as on
    assert box_focus([0.1, 0.15], ink=30.0) == "both digits"  # the digits lie on top of each other
    assert box_focus([0.5, 0.6], ink=30.0) == "neither digit"
    assert box_focus([0.05, float("nan")], ink=30.0) == "digit 1"  # an empty channel has no centre
    assert box_focus([0.0, 0.0], ink=0.1) == "no digit"


def test_box_centres_and_ink_centroids_in_normalised_coordinates():
    x = torch.zeros(1, 2, 8, 8)
    x[0, 0, 1, 1] = 1.0                      # pixel (row 1, col 1): centre at (-0.625, -0.625)
    x[0, 0, 1, 3] = 1.0                      # and (-0.125, -0.625): centroid (-0.375, -0.625)
    c = an_add.ink_centroids(x)
    torch.testing.assert_close(c[0, 0], torch.tensor([-0.375, -0.625], dtype=torch.float64))
    assert torch.isnan(c[0, 1]).all()         # channel 2 is empty
    theta = torch.tensor([[[0.5, 0, -0.375], [0, 0.5, -0.625]], [[1.0, 0, 0.5], [0, 1.0, 0.0]]])[None]
    torch.testing.assert_close(an_add.box_centres(theta)[0], torch.tensor([[-0.375, -0.625], [0.5, 0.0]],
                                                                       dtype=torch.float64))
    d = an_add.centre_distances(x, theta)[0]
    assert float(d[0, 0]) == pytest.approx(0.0) and float(d[1, 0]) == pytest.approx((0.875 ** 2 + 0.625 ** 2) ** 0.5)
    assert an_add.to_pixels(0.2) == pytest.approx(4.2)
    proj = torch.tensor([[2.0, 0, 1.0], [0, 2.0, 0.5], [0, 0, 2.0]])[None, None]  # homogeneous: centre (0.5, 0.25)
    torch.testing.assert_close(an_add.box_centres(proj)[0, 0], torch.tensor([0.5, 0.25], dtype=torch.float64))


def test_page_state_keeps_drawn_digits_in_the_link():
    st, warns = ad.parse_state({"a": "2", "src_a": "draw", "src_b": "paint"}, 500)
    assert (st.src_a, st.src_b) == ("draw", "test") and warns == ["Ignored src_b='paint': choose one of test, draw."]
    assert st.query()["src_a"] == "draw" and "src_b" not in st.query()
    assert ad.parse_state(st.query(), 500) == (st, [])


def test_outputs_figure_marks_the_channel_each_box_is_centred_on():
    fig = ad.outputs_figure(np.zeros((2, 2, 42, 42)), ["digit 1", "neither digit"])
    titles = [a.text for a in fig.layout.annotations]
    assert len(titles) == 4 and "its digit" in titles[0]
    assert not any("its digit" in t for t in titles[1:])
    assert not any("its digit" in a.text for a in ad.outputs_figure(np.zeros((1, 2, 42, 42))).layout.annotations)


def test_v2_recipe_gives_the_cnn_the_fcn_familys_samples(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_addition as TA

    v1 = TA.command("cnn", tmp_path / "c", 1)
    v2 = TA.command("cnn", tmp_path / "c", 1, recipe="v2")
    fcn = TA.command("2st-fcn", tmp_path / "f", 1, recipe="v2")
    steps = lambda cmd: int(cmd[cmd.index("--steps") + 1]) * int(cmd[cmd.index("--batch") + 1])  # noqa: E731
    assert steps(v1) < steps(v2) == steps(fcn) == 60_000 * 128
    assert "adam" in v2 and "adam" in fcn


def test_v3_recipe_is_v2s_budget_and_optimiser_at_twice_the_lr_with_a_cosine_schedule_for_all_four(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_addition as TA

    def flag(cmd: list[str], name: str) -> str | None:
        return cmd[cmd.index(name) + 1] if name in cmd else None

    for name in TA.MODELS:
        v2, v3 = (TA.command(name, tmp_path / name, 1, recipe=r) for r in ("v2", "v3"))
        assert flag(v3, "--schedule") == "cosine" and flag(v2, "--schedule") is None  # v2: the ÷10 steps
        for same in ("--steps", "--batch", "--optimizer", "--loc-lr-mult", "--seed"):
            assert flag(v3, same) == flag(v2, same), (name, same)
        assert (flag(v2, "--lr"), flag(v3, "--lr")) == ("0.001", "0.002")
    assert TA.RECIPE in TA.OUT_DIRS and TA.OUT_DIRS["v3"] == "runs/addition-v3"


def test_v2_promote_is_all_four_or_none(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_addition as TA

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for name in ("fcn", "st-fcn", "2st-fcn"):  # the CNN not final
        (src / f"mnist_addition_{name}.json").write_text(json.dumps({"final": True, "test_error": 10.0}))
    (src / "mnist_addition_cnn.json").write_text(json.dumps({"final": False}))
    assert TA.promote(src, dst) == 1
    assert not dst.exists() or not any(dst.iterdir())


def _fake_run(folder, name: str, steps: int, batch: int = 128, final: bool = True) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"mnist_addition_{name}.json").write_text(json.dumps(
        {"final": final, "test_error": 10.0, "train_args": {"steps": steps, "batch": batch}}))


def test_v2_promote_of_the_cnn_alone_needs_the_shipped_fcn_family_on_its_budget(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_addition as TA
    import stn_core.checkpoints as ckpt

    copied = []
    monkeypatch.setattr(ckpt, "copy_checkpoint", lambda s, d, meta=None: copied.append(Path(d).name))
    src, dst = tmp_path / "src", tmp_path / "dst"
    _fake_run(src, "cnn", 60_000)
    for name in ("fcn", "st-fcn"):
        _fake_run(dst, name, 60_000)
    _fake_run(dst, "2st-fcn", 30_000)  # a shipped model on another budget: the table would mix budgets
    assert TA.promote(src, dst, ["cnn"]) == 1 and copied == []
    _fake_run(dst, "2st-fcn", 30_000, batch=256)  # same samples (7.68 M), other batch: one budget
    assert TA.promote(src, dst, ["cnn"]) == 0 and copied == ["mnist_addition_cnn"]
    (dst / "mnist_addition_fcn.json").unlink()  # a model with no checkpoint at all: no table of four
    assert TA.promote(src, dst, ["cnn"]) == 1 and copied == ["mnist_addition_cnn"]


def test_schedule_text_gives_the_lr_drops_only_for_the_paper_schedule():
    from stn_core.analysis.addition import schedule_text

    step = {"optimizer": "adam", "lr": 0.001}
    assert schedule_text(step).endswith("lr 0.001, ÷10 at 1/3 and 2/3 of the steps")
    cos = schedule_text({**step, "schedule": "cosine", "warmup": 3000})
    assert cos.endswith("3000 warm-up steps then cosine decay to 0") and "÷10" not in cos


def test_an_addition_run_trained_on_a_validation_split_is_not_offered_as_a_test_result(tmp_path):
    from stn_core.checkpoints import save_checkpoint
    from stn_core.models.mnist import build_model
    from stn_core.registry import find_addition

    net = build_model("fcn", input_size=42, num_classes=19, in_channels=2)
    base = {"task": "mnist-addition", "model": "fcn", "transform": None, "input_size": 42, "num_classes": 19,
            "test_error": 12.0, "final": True}
    save_checkpoint(tmp_path / "mnist_addition_fcn", net, base)
    save_checkpoint(tmp_path / "mnist_addition_cnn", build_model("cnn", input_size=42, num_classes=19, in_channels=2),
                    {**base, "model": "cnn", "test_set": {"split": "VALIDATION: 10000 training digits held out"}})
    found = find_addition(tmp_path)
    assert found["fcn"].meta["test_error"] == 12.0 and not found["fcn"].error
    assert found["cnn"].meta is None and "validation split" in found["cnn"].error


def test_has_localisation_is_true_exactly_for_the_models_built_with_a_spatial_transformer():
    from stn_core.analysis.addition import has_localisation
    from stn_core.models.mnist import build_model
    from stn_core.registry import ADDITION_SPECS
    from stn_core.stn import SpatialTransformer

    for key, (model, transform) in ADDITION_SPECS.items():
        net = build_model(model, transform=transform, input_size=42, num_classes=19, in_channels=2)
        has_st = any(isinstance(m, SpatialTransformer) for m in net.modules())
        assert has_localisation({"model": key}) == has_st, key
    assert has_localisation({"model": "fcn"}) is False and has_localisation({"model": "2st-fcn"}) is True


def test_results_say_when_the_four_models_do_not_share_one_recipe(tmp_path):
    from stn_core.analysis.addition import recipe_groups, results_markdown
    from stn_core.registry import KeyedEntry

    v2 = {"optimizer": "adam", "lr": 0.001, "steps": 60000, "batch": 128, "loc_lr_mult": 0.1}
    v3 = {**v2, "lr": 0.002, "schedule": "cosine", "warmup": 3000}
    entries = {k: KeyedEntry(k, tmp_path / k, {"final": True, "steps": 60000, "test_error": 10.0, "model": k,
                                               "train_args": v2 if k == "cnn" else v3})
               for k in ("fcn", "cnn", "st-fcn", "2st-fcn")}
    groups = recipe_groups(entries)
    assert sorted(map(sorted, groups.values())) == [["2st-fcn", "fcn", "st-fcn"], ["cnn"]]
    text = results_markdown(entries, None, "cmd")
    assert "Not one recipe: " in text and "CNN: Adam (β = 0.9, 0.999) lr 0.001, ÷10 at 1/3" in text
    assert "localisation nets" not in text.split("- CNN: ")[1].split("\n")[0]  # the CNN has none
    same = {k: KeyedEntry(k, e.stem, {**e.meta, "train_args": v3}) for k, e in entries.items()}
    assert len(recipe_groups(same)) == 1 and "Not one recipe" not in results_markdown(same, None, "cmd")


def test_check_checkpoints_reevaluates_an_addition_model(data_root, tmp_path):
    """scripts/check_checkpoints.py covers the addition models too: the fixed test pairs rebuilt from the JSON
    (md5-checked) give the recorded error back."""
    from script_util import load_script

    ck = tmp_path / "ck"
    T.main(["--task", "mnist-addition", "--model", "2st-fcn", "--transform", "affine", "--steps", "2", "--batch", "8",
            "--test-limit", "64", "--threads", "1", "--data-root", str(data_root), "--no-verify", "--no-progress",
            "--out", str(ck / "mnist_addition_2st-fcn")])
    meta = json.loads((ck / "mnist_addition_2st-fcn.json").read_text())
    text = load_script("check_checkpoints").main(["--checkpoints", str(ck), "--out", str(tmp_path / "check.md"),
                                                  "--data-root", str(data_root), "--no-verify", "--threads", "1"]).read_text()
    assert f"| mnist_addition_2st-fcn | cpu | {meta['test_error']:.2f} | {meta['test_error']:.2f} | 0 |" in text
    assert "1 of 1 checkpoints re-evaluated on their recorded test set" in text
