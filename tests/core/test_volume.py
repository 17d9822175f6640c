"""The 3-D spatial transformer (appendix A.3): grid generator, trilinear sampler, volumetric MNIST,
the volume models, their checkpoints and the trainer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stn_core.checkpoints import CheckpointError, load_model, save_checkpoint
from stn_core.data import volumes as V
from stn_core.data.samples import load_mnist_sample
from stn_core.models.volume import OUT, build_volume_model
from stn_core.sampling import sample
from stn_core.sampling3d import sample_3d
from stn_core.train import volume as TV
from stn_core.transforms3d import (affine_grid_3d, box_corners_3d, identity_theta_3d, invert_theta_3d,
                                   rotation_matrix_3d, theta_3d)
from script_util import load_script


def _digits(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_mnist_sample()
    return torch.as_tensor(x[:n]), torch.as_tensor(y[:n]).long()


def test_affine_grid_3d_equals_torch_affine_grid_on_5d():
    theta = identity_theta_3d(3) + 0.3 * torch.randn(3, 3, 4, generator=torch.Generator().manual_seed(0))
    ours = affine_grid_3d(theta, (4, 5, 6))
    torch.testing.assert_close(ours, F.affine_grid(theta, (3, 1, 4, 5, 6), align_corners=False), atol=1e-6, rtol=0)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_reference_and_fast_trilinear_samplers_agree_in_value_and_gradient(padding):
    g = torch.Generator().manual_seed(1)
    u = torch.rand(2, 3, 5, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    grid = (torch.rand(2, 4, 3, 5, 3, generator=g, dtype=torch.float64) * 2.4 - 1.2).requires_grad_(True)
    w = torch.randn(2, 3, 4, 3, 5, generator=g, dtype=torch.float64)
    fast, ref = sample_3d(u, grid, "fast", padding), sample_3d(u, grid, "reference", padding)
    torch.testing.assert_close(ref, fast, atol=1e-12, rtol=0)
    gf = torch.autograd.grad((fast * w).sum(), (u, grid))
    gr = torch.autograd.grad((ref * w).sum(), (u, grid))
    for a, b in zip(gr, gf):  # random points are never exactly on a voxel, where the two differ
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_reference_trilinear_passes_gradcheck():
    g = torch.Generator().manual_seed(2)
    u = torch.rand(1, 2, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    grid = (torch.rand(1, 2, 3, 2, 3, generator=g, dtype=torch.float64) * 2.2 - 1.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: sample_3d(a, b, "reference"), (u, grid))


def test_trilinear_on_a_depth_constant_volume_is_the_2d_bilinear_sampler():
    # z exactly at a voxel centre: the paper's kernel gives that slice weight 1, so the 3-D sampler must
    # be the 2-D one, in value and in the x, y gradients (also the paper's sub-gradient at integer x).
    g = torch.Generator().manual_seed(3)
    img = torch.rand(1, 1, 6, 7, generator=g, dtype=torch.float64)
    vol = img.unsqueeze(2).expand(1, 1, 4, 6, 7).contiguous()
    xy = torch.rand(1, 5, 5, 2, generator=g, dtype=torch.float64) * 2 - 1
    xy[0, 0, 0] = torch.tensor([(2 * 3 + 1) / 7 - 1, (2 * 2 + 1) / 6 - 1], dtype=torch.float64)  # on a pixel
    z = torch.full((1, 5, 5, 1), (2 * 1 + 1) / 4 - 1, dtype=torch.float64)                 # on slice 1
    grid3 = torch.cat([xy, z], -1).unsqueeze(1).requires_grad_(True)
    grid2 = xy.clone().requires_grad_(True)
    v3 = sample_3d(vol, grid3, "reference")[:, :, 0]
    v2 = sample(img, grid2, backend="reference")
    torch.testing.assert_close(v3, v2, atol=1e-12, rtol=0)
    g3 = torch.autograd.grad(v3.sum(), grid3)[0][:, 0, ..., :2]
    g2 = torch.autograd.grad(v2.sum(), grid2)[0]
    torch.testing.assert_close(g3, g2, atol=1e-12, rtol=0)


def test_identity_and_a_quarter_turn_about_z():
    u = torch.rand(1, 1, 4, 6, 6, generator=torch.Generator().manual_seed(4))
    ident = sample_3d(u, affine_grid_3d(identity_theta_3d(1), (4, 6, 6)))
    torch.testing.assert_close(ident, u, atol=1e-6, rtol=0)
    r = rotation_matrix_3d(torch.tensor([[0.0, 0.0, math.pi / 2]]))
    turned = sample_3d(u, affine_grid_3d(theta_3d(r, torch.zeros(1, 3)), (4, 6, 6)))
    # output (x, y) reads input R (x, y) = (−y, x): out[i, j] = in[j, W − 1 − i], torch.rot90(k=1) on (H, W)
    torch.testing.assert_close(turned, torch.rot90(u, 1, (3, 4)), atol=1e-5, rtol=0)


def test_invert_theta_and_box_corners():
    theta = theta_3d(rotation_matrix_3d(torch.tensor([[0.3, -0.2, 0.5]])) * 0.5, torch.tensor([[0.1, 0.2, -0.3]]))
    both = torch.cat([invert_theta_3d(theta), torch.tensor([[[0.0, 0, 0, 1]]])], 1)
    full = torch.cat([theta, torch.tensor([[[0.0, 0, 0, 1]]])], 1)
    torch.testing.assert_close(both @ full, torch.eye(4).unsqueeze(0), atol=1e-6, rtol=0)
    corners = box_corners_3d(theta)
    assert corners.shape == (1, 8, 3)
    torch.testing.assert_close(corners.mean(1), theta[:, :, 3], atol=1e-6, rtol=0)  # the box's centre is t


def test_volumes_keep_the_ink_and_the_window_changes_nothing():
    x, _ = _digits(6)
    pose = V.sample_pose(6, torch.Generator().manual_seed(0))
    pose["shift"][:2] = torch.tensor([[V.SHIFT_VOX] * 3, [-V.SHIFT_VOX] * 3], dtype=torch.float64)  # the extremes
    full, win = V.make_volumes(x, pose, window=False), V.make_volumes(x, pose)
    assert win.shape == (6, 1, 60, 60, 60)
    torch.testing.assert_close(win, full, atol=1e-5, rtol=0)
    ink = V.digit_block(x).sum((1, 2, 3, 4))
    torch.testing.assert_close(win.sum((1, 2, 3, 4)), ink, rtol=0.02, atol=0)  # a rigid motion keeps the mass


def test_pose_places_the_digit_centre_at_the_shift():
    x, _ = _digits(4)
    pose = V.sample_pose(4, torch.Generator().manual_seed(5))
    vol = V.make_volumes(x, pose)[:, 0].double()
    zz, yy, xx = torch.meshgrid(*(torch.arange(60, dtype=torch.float64) + 0.5,) * 3, indexing="ij")
    m = vol.sum((1, 2, 3))
    centre = torch.stack([(vol * xx).sum((1, 2, 3)), (vol * yy).sum((1, 2, 3)), (vol * zz).sum((1, 2, 3))], 1) / m.view(-1, 1)
    blk = V.digit_block(x)[:, 0].double()
    bz, by, bx = torch.meshgrid(*(torch.arange(28, dtype=torch.float64) + 0.5,) * 3, indexing="ij")
    bm = blk.sum((1, 2, 3))
    rel = torch.stack([(blk * bx).sum((1, 2, 3)), (blk * by).sum((1, 2, 3)), (blk * bz).sum((1, 2, 3))], 1) / bm.view(-1, 1) - 14
    expect = 30 + pose["shift"] + (rotation_matrix_3d(pose["angles"]) @ rel.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(centre, expect, atol=0.05, rtol=0)


def test_volume_models_views_and_identity_start():
    x, _ = _digits(2)
    vol = V.make_volumes(x, V.sample_pose(2, torch.Generator().manual_seed(0)))
    st, plain = build_volume_model("vol-st-cnn"), build_volume_model("vol-cnn")
    v = st.views(vol)
    assert v.logits.shape == (2, 10) and v.volume.shape == (2, 1, OUT, OUT, OUT) and v.projection.shape == (2, 1, OUT, OUT)
    torch.testing.assert_close(v.theta, identity_theta_3d(2), atol=0, rtol=0)  # zero last layer: the identity
    p = plain.views(vol)
    assert p.theta is None and p.volume is None and p.projection.shape == (2, 1, 60, 60)
    with pytest.raises(ValueError, match="transform"):
        build_volume_model("vol-cnn", "affine3d")
    with pytest.raises(ValueError, match=r"\(N, 1, 60, 60, 60\)"):
        st(torch.zeros(1, 1, 30, 30, 30))


def test_volume_checkpoint_round_trip_and_a_wrong_transform_is_refused(tmp_path):
    model = build_volume_model("vol-st-cnn")
    meta = {"task": "mnist-volume", "model": "vol-st-cnn", "transform": "affine3d", "input_size": 60,
            "num_classes": 10, "test_error": 12.5}
    save_checkpoint(tmp_path / "v", model, meta)
    loaded, got = load_model(tmp_path / "v")
    assert got["arch"]["width"] == model.config["width"]
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    bad = dict(meta, transform="affine")
    with pytest.raises(CheckpointError, match="transform must be 'affine3d'"):
        save_checkpoint(tmp_path / "w", model, bad)
        load_model(tmp_path / "w")


def test_trainer_runs_resumes_and_records_its_recipe(tmp_path, monkeypatch):
    x, y = load_mnist_sample()
    data = (torch.as_tensor(x), torch.as_tensor(y).long())
    monkeypatch.setattr(TV.ds, "load_split", lambda split, root=None, verify=True: data)
    monkeypatch.setattr(TV.ds, "mnist_md5", lambda root=None, verify=True: "sample")
    out = str(tmp_path / "vol")
    args = ["--model", "vol-st-cnn", "--steps", "4", "--batch", "4", "--test-size", "8", "--eval-every", "2",
            "--ckpt-every", "2", "--threads", "1", "--out", out]
    part = TV.main(args + ["--time-limit", "0"])      # stops after the first step, resumable
    assert part["final"] is False and part["steps"] == 1
    meta = TV.main(args + ["--resume"])
    assert meta["final"] is True and meta["steps"] == 4 and 0 <= meta["test_error"] <= 100
    assert meta["command"].startswith("python -m stn_core.train.volume ")
    assert meta["train_args"]["loc_lr_mult"] == 0.1 and meta["extra"]["tilt_deg"] == V.TILT_DEG
    model, _ = load_model(out)
    assert model.config["model"] == "vol-st-cnn"


def test_results_budget_rows_pair_each_cnn_budget_with_the_best_st_variant_of_those_steps():
    mod = load_script("make_volume_results")
    variants = [{"steps": 2000, "test_error": 27.5}, {"steps": 2000, "test_error": 18.7}, {"steps": 8000, "test_error": 9.0}]
    cnn = [{"steps": 8000, "test_error": 10.0}, {"steps": 2000, "test_error": 14.75}, {"steps": 500, "test_error": 40.0}]
    assert mod.budget_rows(variants, cnn) == [(500, 40.0, None), (2000, 14.75, 18.7), (8000, 10.0, 9.0)]


def test_facing_measure_of_the_results_script():
    mod = load_script("make_volume_results")
    pose = V.sample_pose(64, torch.Generator().manual_seed(9))
    flat = {"angles": torch.zeros(2, 3, dtype=torch.float64), "shift": torch.zeros(2, 3, dtype=torch.float64)}
    assert torch.allclose(mod.facing(None, flat), torch.ones(2))               # no tilt: face-on
    tilt = {"angles": torch.tensor([[math.radians(60), 0, 0]], dtype=torch.float64), "shift": torch.zeros(1, 3, dtype=torch.float64)}
    assert mod.facing(None, tilt).item() == pytest.approx(0.5, abs=1e-6)    # cos 60°
    # the θ that undoes each pose ([(14/30)·R | shift/30]) turns every digit face-on
    undo = theta_3d(rotation_matrix_3d(pose["angles"]) * (V.DIGIT / V.VOLUME), pose["shift"] / (V.VOLUME / 2))
    torch.testing.assert_close(mod.facing(undo, pose), torch.ones(64), atol=1e-5, rtol=0)
    assert float(mod.facing(None, pose).mean()) < 0.9                        # the raw views are tilted


def test_start_scale_is_the_transformers_starting_zoom():
    x = torch.zeros(1, 1, 60, 60, 60)
    theta = build_volume_model("vol-st-cnn", start_scale=0.6).views(x).theta
    torch.testing.assert_close(theta, identity_theta_3d(1) * 0.6, atol=0, rtol=0)
    with pytest.raises(ValueError, match="start_scale"):
        build_volume_model("vol-st-cnn", start_scale=0.0)


def test_promote_volume_publishes_the_best_variant_with_all_variants_listed(tmp_path, monkeypatch):
    import sys

    from stn_core.checkpoints import load_meta

    mod = load_script("promote_volume")
    runs = tmp_path / "runs"
    for name, key, err, args in (("a", "vol-st-cnn", 30.0, {"loc_lr_mult": 0.1}),
                                 ("b", "vol-st-cnn", 20.0, {"loc_lr_mult": 0.1, "start_scale": 0.6}),
                                 ("c", "vol-cnn", 15.0, {})):
        model = build_volume_model(key)
        save_checkpoint(runs / name, model, {"task": "mnist-volume", "model": key, "transform": model.config["transform"],
                                             "input_size": 60, "num_classes": 10, "test_error": err, "final": True,
                                             "steps": 5, "train_args": args, "command": f"train {name}"})
    out = tmp_path / "ck"
    monkeypatch.setattr(sys, "argv", ["promote_volume.py", "--st", str(runs / "a"), str(runs / "b"),
                                      "--cnn", str(runs / "c"), "--to", str(out)])
    mod.main()
    st_meta, cnn_meta = load_meta(out / "volume_st-cnn"), load_meta(out / "volume_cnn")
    assert st_meta["test_error"] == 20.0 and cnn_meta["test_error"] == 15.0
    assert [v["run"] for v in st_meta["extra"]["variants"]] == ["a", "b"]
    assert st_meta["extra"]["variants"][1]["start_scale"] == 0.6 and st_meta["extra"]["variants"][0]["start_scale"] == 1.0
    assert not (out / "volume_st-cnn.train.safetensors").exists()


def _volume_run(folder, name: str, key: str, err: float, steps: int, args: dict) -> None:
    model = build_volume_model(key)
    save_checkpoint(folder / name, model, {"task": "mnist-volume", "model": key, "transform": model.config["transform"],
                                           "input_size": 60, "num_classes": 10, "test_error": err, "final": True,
                                           "steps": steps, "train_args": args,
                                           "command": f"train --steps {steps} --out runs/volume/{name}"})


def test_promote_volume_publishes_an_st_of_the_cnns_budget_and_keeps_earlier_budgets(tmp_path, monkeypatch):
    import sys

    from stn_core.checkpoints import load_meta

    mod = load_script("promote_volume")
    runs, out = tmp_path / "runs", tmp_path / "ck"
    _volume_run(runs, "st-short", "vol-st-cnn", 20.0, 5, {"start_scale": 0.6})
    _volume_run(runs, "cnn-short", "vol-cnn", 15.0, 5, {})
    monkeypatch.setattr(sys, "argv", ["promote_volume.py", "--st", str(runs / "st-short"), "--cnn",
                                      str(runs / "cnn-short"), "--to", str(out)])
    mod.main()
    # a longer budget: the ST run of 10 steps has a higher error than the 5-step one, yet it is the one published
    _volume_run(runs, "st-long", "vol-st-cnn", 12.0, 10, {"start_scale": 0.6})
    _volume_run(runs, "cnn-long", "vol-cnn", 13.0, 10, {})
    monkeypatch.setattr(sys, "argv", ["promote_volume.py", "--st", str(runs / "st-long"), "--cnn",
                                      str(runs / "cnn-long"), "--to", str(out), "--keep-earlier"])
    mod.main()
    st_meta, cnn_meta = load_meta(out / "volume_st-cnn"), load_meta(out / "volume_cnn")
    assert (st_meta["steps"], st_meta["test_error"]) == (10, 12.0) and cnn_meta["steps"] == 10
    assert [(v["run"], v["steps"]) for v in st_meta["extra"]["variants"]] == [("st-short", 5), ("st-long", 10)]
    assert [(r["run"], r["test_error"]) for r in cnn_meta["extra"]["runs"]] == [("cnn-short", 15.0), ("cnn-long", 13.0)]
    # an ST variant of another budget than the CNN's is refused: the published pair shares one budget
    monkeypatch.setattr(sys, "argv", ["promote_volume.py", "--st", str(runs / "st-short"), "--cnn",
                                      str(runs / "cnn-long"), "--to", str(out)])
    with pytest.raises(SystemExit, match="10 steps"):
        mod.main()
