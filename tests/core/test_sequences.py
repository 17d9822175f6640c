"""Digit strings (the SVHN analogue of Table 2): the generator, the three readers with transformers in
the conv stack, the sequence loss and read-out, checkpoints and the trainer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stn_core.checkpoints import CheckpointError, load_model, save_checkpoint
from stn_core.data import sequences as Q
from stn_core.data.samples import load_mnist_sample
from stn_core.models.sequence import build_sequence_model, composite_theta, read_strings, sequence_errors, sequence_loss
from stn_core.train import sequence as TS
from script_util import load_script


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_mnist_sample()
    return torch.as_tensor(x), torch.as_tensor(y).long()


@pytest.mark.parametrize("crop", ["tight", "loose"])
def test_strings_have_their_labels_lengths_and_canvas(crop):
    x, y = _digits()
    s = Q.make_strings(x, y, 40, crop, torch.Generator().manual_seed(0))
    side = Q.SIZES[crop]
    assert s.images.shape == (40, 1, side, side) and s.images.dtype == torch.float32
    assert 0 <= float(s.images.min()) and float(s.images.max()) <= 1
    assert s.length.min() >= 1 and s.length.max() <= Q.MAX_DIGITS and len(set(s.length.tolist())) > 1
    for d, n in zip(s.digits, s.length):                 # digits, then NULL past the end
        assert (d[:n] < 10).all() and (d[n:] == Q.NULL).all()
    again = Q.make_strings(x, y, 40, crop, torch.Generator().manual_seed(0))
    assert torch.equal(s.images, again.images) and torch.equal(s.digits, again.digits)


def test_each_frame_lands_inside_the_string_box():
    """The backward warps put every digit's frame centre inside the box the generator reports: map the
    frame centre (0, 0) forward by inverting θ and test it against the box's corners."""
    layout = Q.sample_layout(200, "tight", torch.Generator().manual_seed(1))
    theta = Q.layout_thetas(layout, "tight")                        # canvas → frame
    boxes = Q.layout_boxes(layout, "tight")                          # (n, 4, 2)
    a, b = theta[..., :2], theta[..., 2]
    centre = torch.linalg.solve(a, -b)                               # canvas point that maps to the frame's centre
    lo, hi = boxes.amin(1, keepdim=True), boxes.amax(1, keepdim=True)
    present = torch.arange(Q.MAX_DIGITS).view(1, -1) < layout["length"].view(-1, 1)
    inside = ((centre >= lo - 1e-6) & (centre <= hi + 1e-6)).all(-1)
    assert inside[present].all()
    assert (boxes.abs() <= 1.0 + 0.2).all()                           # the tight box nearly fills the canvas


def test_a_one_digit_string_with_no_jitter_is_the_digit_resized():
    """Length 1, no rotation/shift/jitter, scale 1: the frame fills the tight canvas less its 30 % margin,
    so the image equals the digit resized by the same affine map through grid_sample."""
    x, _ = _digits()
    layout = Q.sample_layout(1, "tight", torch.Generator().manual_seed(2))
    f64 = torch.float64
    layout.update(length=torch.tensor([1]), jitter=torch.zeros(1, 5, dtype=f64), angle=torch.zeros(1, dtype=f64),
                  shift=torch.zeros(1, 2, dtype=f64),
                  scale=torch.ones(1, dtype=f64))
    theta = Q.layout_thetas(layout, "tight")[:, 0]
    torch.testing.assert_close(theta, torch.tensor([[[Q.MARGIN, 0.0, 0.0], [0.0, Q.MARGIN, 0.0]]], dtype=theta.dtype))
    frames = torch.zeros(1, 5, 28, 28)
    frames[0, 0] = x[0].float() / 255
    img = Q.render(frames, layout, "tight")
    want = F.grid_sample(frames[:, :1], F.affine_grid(theta.float(), [1, 1, 64, 64], align_corners=False),
                         align_corners=False)
    torch.testing.assert_close(img, want)


def test_loose_crops_keep_the_string_inside_and_add_clutter():
    x, y = _digits()
    s = Q.make_strings(x, y, 30, "loose", torch.Generator().manual_seed(3))
    assert (s.boxes.abs() <= 0.5 * 1.0 + 1e-6 + 0.5).all()           # the 64-px box sits inside the 128 canvas
    # clutter: ink outside the strings' boxes (a tight crop has none outside its margin)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 128), torch.linspace(-1, 1, 128), indexing="ij")
    lo, hi = s.boxes.amin(1), s.boxes.amax(1)
    out = (xs < lo[:, None, None, 0] - 0.2) | (xs > hi[:, None, None, 0] + 0.2) | \
          (ys < lo[:, None, None, 1] - 0.2) | (ys > hi[:, None, None, 1] + 0.2)
    assert float((s.images[:, 0] * out).sum()) > 0
    with pytest.raises(ValueError, match="pool"):
        Q.render(torch.zeros(1, 5, 28, 28), Q.sample_layout(1, "loose"), "loose")
    with pytest.raises(ValueError, match="crop must be one of"):
        Q.sample_layout(1, "wide")


@pytest.mark.parametrize("name,count", [("seq-cnn", 0), ("seq-st-single", 1), ("seq-st-multi", 4)])
def test_readers_start_at_the_identity_and_expose_their_transformers(name, count):
    torch.manual_seed(0)
    m = build_sequence_model(name, 64)
    x = torch.rand(3, 1, 64, 64)
    v = m.views(x)
    assert v.length_logits.shape == (3, 5) and v.digit_logits.shape == (3, 5, 10)
    assert len(v.thetas) == len(v.st_inputs) == len(v.st_outputs) == count
    eye = torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(3, 2, 3)
    for t, u, o in zip(v.thetas, v.st_inputs, v.st_outputs):
        torch.testing.assert_close(t, eye)
        assert o.shape == u.shape
        torch.testing.assert_close(o, u, atol=1e-5, rtol=0)          # the identity warp reproduces its input
    if count == 4:                                                   # three of them warp feature maps
        assert [u.shape[1] for u in v.st_inputs] == [1, 32, 48, 64]
    assert set(map(id, m.localisation_parameters())) <= set(map(id, m.parameters()))
    with pytest.raises(ValueError, match=r"\(N, 1, 64, 64\)"):
        m(torch.zeros(1, 1, 128, 128))
    with pytest.raises(ValueError, match="unknown sequence model"):
        build_sequence_model("seq-dcn")


def test_composite_theta_is_the_product_of_the_maps():
    """Sampling with θ₂ then θ₁ equals sampling once with θ₁θ₂ (where both land inside the input)."""
    t1 = torch.tensor([[[0.8, 0.1, 0.05], [-0.1, 0.9, 0.0]]])
    t2 = torch.tensor([[[0.7, 0.0, -0.1], [0.05, 0.6, 0.1]]])
    comp = composite_theta([t1, t2])
    torch.testing.assert_close(comp, torch.tensor([[[0.565, 0.06, -0.02], [-0.025, 0.54, 0.1]]]))
    # a point of the last output goes through θ₂ then θ₁
    p = torch.tensor([0.3, -0.4, 1.0])
    q = t1[0] @ torch.cat([t2[0] @ p, torch.ones(1)])
    torch.testing.assert_close(comp[0] @ p, q)
    with pytest.raises(ValueError):
        composite_theta([])


def test_sequence_loss_ignores_positions_past_the_end_and_read_out_needs_every_digit():
    digits = torch.tensor([[3, 1, Q.NULL, Q.NULL, Q.NULL], [7, Q.NULL, Q.NULL, Q.NULL, Q.NULL]])
    length = torch.tensor([2, 1])
    ll = torch.full((2, 5), -10.0)
    ll[0, 1], ll[1, 0] = 10.0, 10.0                                  # lengths 2 and 1
    dl = torch.full((2, 5, 10), -10.0)
    dl[0, 0, 3] = dl[0, 1, 1] = dl[1, 0, 7] = 10.0
    dl[1, 1:, 4] = 10.0                                              # confident garbage past the end: ignored
    assert float(sequence_loss(ll, dl, digits, length)) < 1e-6
    assert torch.equal(read_strings(ll, dl), digits) and not sequence_errors(ll, dl, digits).any()
    dl[0, 1, 1], dl[0, 1, 2] = -10.0, 10.0                           # one digit wrong → the string is wrong
    assert sequence_errors(ll, dl, digits).tolist() == [True, False]
    ll[1, 0], ll[1, 2] = -10.0, 10.0                                 # a wrong length alone → wrong
    assert sequence_errors(ll, dl, digits).tolist() == [True, True]


def test_sequence_checkpoint_round_trip_and_a_wrong_transform_is_refused(tmp_path):
    model = build_sequence_model("seq-st-multi", 64)
    meta = {"task": "mnist-strings-tight", "model": "seq-st-multi", "transform": "affine", "input_size": 64,
            "num_classes": 10, "test_error": 9.5}
    save_checkpoint(tmp_path / "s", model, meta)
    loaded, _ = load_model(tmp_path / "s")
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="transform must be None|transform must be null"):
        save_checkpoint(tmp_path / "w", build_sequence_model("seq-cnn"), dict(meta, model="seq-cnn"))
        load_model(tmp_path / "w")


def test_trainer_runs_resumes_and_records_its_recipe(tmp_path, monkeypatch):
    data = _digits()
    monkeypatch.setattr(TS.ds, "load_split", lambda split, root=None, verify=True: data)
    monkeypatch.setattr(TS.ds, "mnist_md5", lambda root=None, verify=True: "sample")
    out = str(tmp_path / "seq")
    args = ["--model", "seq-st-multi", "--steps", "4", "--batch", "4", "--test-size", "8", "--eval-every", "2",
            "--ckpt-every", "2", "--threads", "1", "--precision", "fp32", "--out", out]
    part = TS.main(args + ["--time-limit", "0"])      # stops after the first step, resumable
    assert part["final"] is False and part["steps"] == 1
    meta = TS.main(args + ["--resume"])
    assert meta["final"] is True and meta["steps"] == 4 and 0 <= meta["test_error"] <= 100
    assert meta["command"].startswith("python -m stn_core.train.sequence ")
    assert meta["train_args"]["loc_lr_mult"] == 0.1 and meta["train_args"]["weight_decay"] == 5e-4
    assert "clip_loc_grad" not in meta["train_args"]   # an unclipped run's recipe reads as before the option
    assert "not SVHN" in meta["extra"]["dataset_note"]
    model, _ = load_model(out)
    assert model.config["model"] == "seq-st-multi"
    with pytest.raises(SystemExit, match="--resume"):
        TS.main(args)                                 # a finished run is not overwritten by accident


def test_the_localisation_gradient_clip_is_recorded_counted_and_fixed_on_resume(tmp_path, monkeypatch):
    data = _digits()
    monkeypatch.setattr(TS.ds, "load_split", lambda split, root=None, verify=True: data)
    monkeypatch.setattr(TS.ds, "mnist_md5", lambda root=None, verify=True: "sample")
    out = str(tmp_path / "clip")
    lines = []
    monkeypatch.setattr("builtins.print", lambda *x, **k: lines.append(" ".join(map(str, x))))
    args = ["--model", "seq-st-single", "--steps", "50", "--batch", "4", "--test-size", "8", "--ckpt-every", "25",
            "--eval-every", "100", "--threads", "1", "--precision", "fp32", "--out", out]
    part = TS.main(args + ["--clip-loc-grad", "1e-6", "--time-limit", "0"])   # every step's norm is above 1e-6
    assert part["train_args"]["clip_loc_grad"] == 1e-6 and part["extra"]["loc_grad_clipped_steps"] == 1
    with pytest.raises(SystemExit, match="clip_loc_grad"):
        TS.main(args + ["--resume"])                                           # another clip: refused
    meta = TS.main(args + ["--clip-loc-grad", "1e-6", "--resume"])
    assert meta["final"] and meta["extra"]["loc_grad_clipped_steps"] == 50    # the count survives the resume
    assert any("step 50: localisation grad norm" in line and "50 steps so far" in line for line in lines)
    with pytest.raises(SystemExit):
        TS.parse_args(["--clip-loc-grad", "0", "--out", "x"])


def test_loc_grad_clip_bounds_only_the_localisation_gradient():
    from stn_core.train.loop import LocGradClip

    torch.manual_seed(0)
    model = build_sequence_model("seq-st-single")
    x = torch.rand(3, 1, 64, 64)
    ll, dl = model(x)
    (ll.square().sum() + 100 * dl.square().sum() + 1e3 * model.transformers[0].regression.bias.sum()).backward()
    rest_before = [p.grad.clone() for p in model.convs.parameters()]
    clip = LocGradClip(model, 0.5)
    clip()
    loc = torch.nn.utils.get_total_norm([p.grad for p in model.localisation_parameters() if p.grad is not None])
    assert float(loc) == pytest.approx(0.5, rel=1e-4) and clip.clipped == 1 and clip.peak > 1e3
    assert all(torch.equal(a, p.grad) for a, p in zip(rest_before, model.convs.parameters()))
    assert clip.report().startswith("localisation grad norm ≤ ") and clip.peak == 0.0
    measure = LocGradClip(model, None)
    measure()
    assert measure.peak == pytest.approx(0.5, rel=1e-4) and measure.clipped == 0
    assert LocGradClip(build_sequence_model("seq-cnn"), 1.0).params == []   # no transformer: nothing to clip
    with pytest.raises(ValueError, match="positive"):
        LocGradClip(model, 0.0)


def test_check_checkpoints_reevaluates_a_string_reader(data_root, tmp_path):
    """scripts/check_checkpoints.py rebuilds the fixed test strings from the JSON (md5-checked) and gets the
    recorded sequence error back."""
    import json

    ck = tmp_path / "ck"
    TS.main(["--model", "seq-cnn", "--steps", "3", "--batch", "8", "--test-size", "40", "--threads", "1",
             "--precision", "fp32", "--data-root", str(data_root), "--no-verify", "--out", str(ck / "seq64_cnn")])
    meta = json.loads((ck / "seq64_cnn.json").read_text())
    mod = load_script("check_checkpoints")
    text = mod.main(["--checkpoints", str(ck), "--out", str(tmp_path / "check.md"), "--data-root", str(data_root),
                     "--no-verify", "--threads", "1"]).read_text()
    assert f"| seq64_cnn | cpu | {meta['test_error']:.2f} | {meta['test_error']:.2f} | 0 | difference counted in strings |" in text
    # made on another CPU (float rounding): the regenerated strings' md5 differs; still measured, and said so
    meta["test_set"]["md5"] = "0" * 32
    (ck / "seq64_cnn.json").write_text(json.dumps(meta))
    text = mod.main(["--checkpoints", str(ck), "--out", str(tmp_path / "check.md"), "--data-root", str(data_root),
                     "--no-verify", "--threads", "1"]).read_text()
    assert f"| {meta['test_error']:.2f} | 0 | difference counted in strings; {mod.REGENERATED} |" in text
    assert "0 of 1 checkpoints re-evaluated on their recorded test set" in text and "1 more on a test set" in text


def test_channels_last_training_records_it_and_evaluates_in_the_default_layout(tmp_path, monkeypatch):
    """--channels-last on: the JSON says so, and the recorded error is what a contiguous copy of the weights
    (as load_model gives) measures on the same strings."""
    data = _digits()
    monkeypatch.setattr(TS.ds, "load_split", lambda split, root=None, verify=True: data)
    monkeypatch.setattr(TS.ds, "mnist_md5", lambda root=None, verify=True: "sample")
    out = str(tmp_path / "cl")
    meta = TS.main(["--model", "seq-st-single", "--steps", "3", "--batch", "4", "--test-size", "24", "--threads", "1",
                    "--precision", "bf16", "--channels-last", "on", "--out", out])
    assert meta["extra"]["channels_last"] is True and meta["extra"]["precision"] == "bf16"
    model, _ = load_model(out)
    s = Q.test_strings(*data, "tight", 24)
    err, _ = TS.evaluate_strings(model, s)
    assert err == pytest.approx(meta["test_error"], abs=1e-9)
    assert next(model.parameters()).is_contiguous()


def _promote_sequences():
    """scripts/promote_sequences.py as a module."""
    return load_script("promote_sequences")


def test_promote_publishes_a_crop_only_when_all_three_readers_are_finished(tmp_path):
    from stn_core import registry as reg

    mod = _promote_sequences()
    runs, dest = tmp_path / "runs", tmp_path / "ck"
    for i, key in enumerate(reg.SEQUENCE_KEYS):
        model = build_sequence_model(key)
        meta = {"task": "mnist-strings-tight", "model": key, "transform": model.config["transform"], "input_size": 64,
                "num_classes": 10, "test_error": 5.0 + i, "final": i < 2, "steps": 10,
                "train_args": {"steps": reg.SEQUENCE_STEPS["tight"]}}
        save_checkpoint(runs / reg.sequence_stem_name(key, "tight"), model, meta)
    assert mod.main(["--from", str(runs), "--to", str(dest), "--crops", "tight"]) == 1
    assert not dest.exists() or not list(dest.iterdir())             # one unfinished reader: none published
    stem = runs / reg.sequence_stem_name("seq-cnn", "tight")
    model, meta = load_model(stem)
    save_checkpoint(stem, model, {k: v for k, v in dict(meta, final=True).items() if k in (
        "task", "model", "transform", "input_size", "num_classes", "test_error", "final", "steps", "train_args")})
    assert mod.main(["--from", str(runs), "--to", str(dest), "--crops", "tight"]) == 0
    assert sorted(p.name for p in dest.glob("*.json")) == sorted(
        f"{reg.sequence_stem_name(k, 'tight')}.json" for k in reg.SEQUENCE_KEYS)
    assert not list(dest.glob("*.train.safetensors"))


def test_a_run_is_publishable_only_when_finished_with_the_crops_budget_and_a_test_error():
    from stn_core import registry as reg

    mod = _promote_sequences()
    steps = reg.SEQUENCE_STEPS["tight"]
    good = {"model": "seq-cnn", "final": True, "steps": steps, "test_error": 5.0, "train_args": {"steps": steps}}
    assert mod.unpublishable(good, "seq-cnn", "tight") is None
    assert "not finished" in mod.unpublishable(dict(good, final=False), "seq-cnn", "tight")
    assert f"not seq-cnn with {steps}" in mod.unpublishable(dict(good, train_args={"steps": 12}), "seq-cnn", "tight")
    assert "not seq-st-multi" in mod.unpublishable(good, "seq-st-multi", "tight")
    assert "no test error" in mod.unpublishable(dict(good, test_error=None), "seq-cnn", "tight")


def test_add_seeds_puts_other_seeds_errors_beside_the_published_reader(tmp_path):
    from stn_core import registry as reg
    from stn_core.checkpoints import load_meta
    from stn_core.checkpoints.seeds import seed_stats

    mod = _promote_sequences()
    runs, dest = tmp_path / "runs", tmp_path / "ck"
    stem = reg.sequence_stem_name("seq-st-multi", "tight")
    model = build_sequence_model("seq-st-multi")
    args = {"steps": 6000, "lr": 0.02, "seed": 0}

    def save(folder, name, err, **changes):
        save_checkpoint(folder / name, model, {"task": "mnist-strings-tight", "model": "seq-st-multi",
                                               "transform": model.config["transform"], "input_size": 64,
                                               "num_classes": 10, "test_error": err, "final": True, "steps": 6000,
                                               "train_args": {**args, **changes}})

    save(dest, stem, 7.5)
    save(runs, f"{stem}_s1", 5.5, seed=1)
    save(runs, f"{stem}_s2", 1.0, seed=2, lr=0.1)          # another recipe: not a seed of this reader
    assert mod.main(["--from", str(runs), "--to", str(dest), "--crops", "tight", "--add-seeds"]) == 0
    meta = load_meta(dest / stem)
    assert meta["extra"]["seeds"]["errors"] == {"0": 7.5, "1": 5.5} and meta["test_error"] == 7.5
    assert seed_stats(meta) == (6.5, pytest.approx(1.414, abs=1e-3), 2)
    assert mod.add_seeds(runs, dest, "tight", "seq-st-multi") is None   # nothing new the second time


def test_a_resumed_run_keeps_the_layout_of_its_own_precision(tmp_path, monkeypatch):
    """An fp32 run resumed with --precision auto continues in fp32, so its layout stays the default one
    (channels_last follows the precision the run uses, not the one auto would pick for a new run)."""
    data = _digits()
    monkeypatch.setattr(TS.ds, "load_split", lambda split, root=None, verify=True: data)
    monkeypatch.setattr(TS.ds, "mnist_md5", lambda root=None, verify=True: "sample")
    out = str(tmp_path / "r")
    args = ["--model", "seq-cnn", "--steps", "3", "--batch", "4", "--test-size", "8", "--threads", "1", "--out", out]
    TS.main(args + ["--precision", "fp32", "--time-limit", "0"])
    meta = TS.main(args + ["--resume"])
    assert meta["final"] and meta["extra"]["precision"] == "fp32" and meta["extra"]["channels_last"] is False


def test_the_steps_default_is_the_shipped_readers_budget_per_crop():
    from stn_core.registry import SEQUENCE_STEPS
    from stn_core.train import sequence as TS

    assert TS.parse_args(["--crop", "tight", "--out", "x"]).steps == SEQUENCE_STEPS["tight"] == 6000
    assert TS.parse_args(["--crop", "loose", "--out", "x"]).steps == SEQUENCE_STEPS["loose"] == 6000
    assert TS.parse_args(["--crop", "loose", "--steps", "12", "--out", "x"]).steps == 12


def test_lr_grid_publishes_each_readers_best_learning_rate_and_lists_the_grid(tmp_path):
    from stn_core import registry as reg
    from stn_core.checkpoints import load_meta

    mod = _promote_sequences()
    dest, lr01, odd = tmp_path / "ck", tmp_path / "lr01", tmp_path / "odd"
    steps = reg.SEQUENCE_STEPS["tight"]

    def save(folder, key, lr, err, **changes):
        model = build_sequence_model(key)
        out = f"{folder}/{reg.sequence_stem_name(key, 'tight')}"
        save_checkpoint(folder / reg.sequence_stem_name(key, "tight"), model, {
            "task": "mnist-strings-tight", "model": key, "transform": model.config["transform"], "input_size": 64,
            "num_classes": 10, "test_error": err, "final": True, "steps": steps,
            "command": f"python -m stn_core.train.sequence --model {key} --lr {lr} --out {out}",
            "train_args": {"steps": steps, "lr": lr, "seed": 0, "batch": 64, **changes}})

    for key in reg.SEQUENCE_KEYS:
        save(dest, key, 0.02, 6.0)
    meta = load_meta(dest / reg.sequence_stem_name("seq-cnn", "tight"))
    meta["extra"] = {"seeds": {"errors": {"0": 6.0, "1": 6.4}, "mean": 6.2, "std": 0.283}}
    save_checkpoint(dest / reg.sequence_stem_name("seq-cnn", "tight"), build_sequence_model("seq-cnn"), meta)
    save(lr01, "seq-cnn", 0.01, 9.0)                       # worse: the published CNN stays, with its seeds
    save(lr01, "seq-st-multi", 0.01, 5.0)                  # better: published, the 0.02 run listed
    save(odd, "seq-st-single", 0.04, 1.0, batch=32)        # another recipe: refused, not chosen
    assert mod.main(["--to", str(dest), "--crops", "tight", "--lr-grid", str(dest), str(lr01)]) == 0
    cnn = load_meta(dest / reg.sequence_stem_name("seq-cnn", "tight"))
    multi = load_meta(dest / reg.sequence_stem_name("seq-st-multi", "tight"))
    assert cnn["test_error"] == 6.0 and cnn["extra"]["seeds"]["errors"] == {"0": 6.0, "1": 6.4}
    assert [(r["lr"], r["test_error"]) for r in cnn["extra"]["lr_grid"]] == [(0.01, 9.0), (0.02, 6.0)]
    assert multi["test_error"] == 5.0 and multi["train_args"]["lr"] == 0.01 and "seeds" not in multi["extra"]
    assert [(r["lr"], r["test_error"]) for r in multi["extra"]["lr_grid"]] == [(0.01, 5.0), (0.02, 6.0)]
    assert "test set" in multi["extra"]["chosen_by"]
    # Once published, the 0.02 run is gone from the folders; the grid still lists it, and running again changes nothing.
    assert mod.main(["--to", str(dest), "--crops", "tight", "--lr-grid", str(dest), str(lr01)]) == 0
    again = load_meta(dest / reg.sequence_stem_name("seq-st-multi", "tight"))
    assert again["extra"]["lr_grid"] == multi["extra"]["lr_grid"] and again["test_error"] == 5.0
    assert mod.main(["--to", str(dest), "--crops", "tight", "--lr-grid", str(dest), str(odd)]) == 1
    assert load_meta(dest / reg.sequence_stem_name("seq-st-single", "tight"))["test_error"] == 6.0


def test_results_table_shows_every_learning_rate_with_the_published_one_in_bold():
    from types import SimpleNamespace

    mod = load_script("make_multidigit_results")
    grid = [{"lr": 0.01, "test_error": 5.0, "command": "python -m stn_core.train.sequence --lr 0.01"},
            {"lr": 0.02, "test_error": 7.56, "command": "python -m stn_core.train.sequence --lr 0.02"}]
    entries = {"seq-st-multi": SimpleNamespace(meta={"train_args": {"lr": 0.01}, "extra": {"lr_grid": grid}}),
               "seq-cnn": SimpleNamespace(meta={"train_args": {"lr": 0.02}, "extra": {}})}
    lines = mod.lr_grid_table(entries)
    assert lines[3] == "| model | lr 0.01 | lr 0.02 |"
    assert lines[5] == "| ST-CNN Multi | **5.00** | 7.56 |" and lines[6] == ""   # the CNN lists no grid
    assert lines[-1] == "- ST-CNN Multi, lr 0.02: `python -m stn_core.train.sequence --lr 0.02`" and len(lines) == 10
    assert mod.lr_grid_table({"seq-cnn": entries["seq-cnn"]}) == []


def test_results_name_the_readers_trained_with_a_localisation_gradient_clip():
    from types import SimpleNamespace

    mod = load_script("make_multidigit_results")
    entries = {"seq-st-single": SimpleNamespace(meta={"steps": 12000, "train_args": {"clip_loc_grad": 20.0},
                                                      "extra": {"loc_grad_clipped_steps": 7}}),
               "seq-cnn": SimpleNamespace(meta={"steps": 12000, "train_args": {}, "extra": {}})}
    lines = mod.clip_lines(entries)
    assert lines[-1] == ("- ST-CNN Single: the transformers' gradient norm clipped at 20 each step "
                         "(`--clip-loc-grad`; 7 of 12000 steps clipped).") and len(lines) == 4
    assert mod.clip_lines({"seq-cnn": entries["seq-cnn"]}) == []


def test_results_table_gives_each_transformer_reader_its_own_localisation_lr_multiplier():
    mod = load_script("make_multidigit_results")
    assert mod.loc_lr_cell("seq-st-single", {"train_args": {"loc_lr_mult": 0.025}}) == "0.025"
    assert mod.loc_lr_cell("seq-st-multi", {"train_args": {"loc_lr_mult": 0.1}}) == "0.1"
    assert mod.loc_lr_cell("seq-cnn", {"train_args": {"loc_lr_mult": 0.1}}) == "–"   # no transformer to scale
    assert mod.loc_lr_cell("seq-st-multi", {}) == "–"


def test_results_explain_a_localisation_lr_other_than_the_papers():
    from types import SimpleNamespace

    mod = load_script("make_multidigit_results")
    paper = {"seq-st-multi": SimpleNamespace(meta={"train_args": {"loc_lr_mult": 0.1}}),
             "seq-cnn": SimpleNamespace(meta={"train_args": {"loc_lr_mult": 0.1}})}
    assert mod.loc_lr_lines(paper) == []
    ours = dict(paper, **{"seq-st-single": SimpleNamespace(meta={"train_args": {"loc_lr_mult": 0.025}})})
    lines = mod.loc_lr_lines(ours)
    assert len(lines) == 2 and lines[1].startswith("Localisation learning rate (the loc lr × column): "
                                                   "ST-CNN Single 0.025 instead of the paper's 0.1 [ours].")
    # The reason given is that of 0.025 (the loose readers'); another multiplier is named without it.
    other = mod.loc_lr_lines({"seq-st-multi": SimpleNamespace(meta={"train_args": {"loc_lr_mult": 0.05}})})
    assert other == ["", "Localisation learning rate (the loc lr × column): ST-CNN Multi 0.05 instead of the "
                         "paper's 0.1 [ours]."]
