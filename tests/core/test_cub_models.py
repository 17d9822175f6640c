"""CUB bird models (stn_core.models.cub) and their training CLI (stn_core.train.cub).

Tiny, random-init backbones (``backbone_weights=None``) and 64-px inputs keep this fast; the
CLI runs on a CUB-layout folder built from the shipped birds (tests/cub_fixture.py), so nothing
here needs ../shared. Only the test of the real ImageNet weights file is skipped without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cub_fixture import make_tiny_cub
from stn_core import load_model, save_checkpoint
from stn_core.checkpoints import CheckpointError, load_meta
from stn_core.models.cub import (CubNet, WeightsError, arch_of, build_cub_model, default_weights_path,
                                 mobilenet_v2_features, model_from_meta, tiled_translations)

ROOT = Path(__file__).resolve().parents[2]
torch.set_num_threads(1)


def tiny(name: str, classes=(1, 12, 14), size: int = 64, crop: int = 32) -> CubNet:
    torch.manual_seed(0)
    return build_cub_model(name, list(classes), input_size=size, crop_size=crop, backbone_weights=None)


@pytest.mark.parametrize("name,n_st", [("cub-baseline", 0), ("cub-2st", 2), ("cub-4st", 4)])
def test_shapes_and_boxes(name, n_st):
    m = tiny(name).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        y = m(x)
        views = m.views(x)
    assert y.shape == (2, 3)
    torch.testing.assert_close(views.logits, y)
    if n_st == 0:
        assert views.boxes is None and views.params is None
    else:
        assert views.boxes.shape == (2, n_st, 4) and views.params.shape == (2, n_st, 3)
        assert m.config["transform"] == "attention"


def test_tiled_start():
    m2, m4 = tiny("cub-2st").eval(), tiny("cub-4st").eval()
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        boxes2, boxes4 = m2.views(x).boxes, m4.views(x).boxes
    exp2 = torch.tensor([[-1.0, -0.5, 0.0, 0.5], [0.0, -0.5, 1.0, 0.5]])
    assert torch.allclose(boxes2, exp2.expand(3, 2, 4), atol=2e-3)
    exp4 = torch.tensor([[-1.0, -1.0, 0.0, 0.0], [0.0, -1.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    assert torch.allclose(boxes4, exp4.expand(3, 4, 4), atol=2e-3)
    assert torch.count_nonzero(m2.loc[-1].weight) == 0
    assert tiled_translations(2) == [(-0.5, 0.0), (0.5, 0.0)]
    with pytest.raises(ValueError):
        tiled_translations(3)


def test_crop_is_the_boxed_region():
    """A half-scale crop at native resolution samples exactly the pixels inside its box."""
    m = tiny("cub-2st")
    x = torch.rand(1, 3, 64, 64)
    params = torch.tensor([[[0.5, -0.5, 0.0], [0.5, 0.5, 0.0]]])
    c = m.crops(x, params)
    assert c.shape == (1, 2, 3, 32, 32)
    assert torch.allclose(c[0, 0], x[0, :, 16:48, 0:32], atol=1e-5)
    assert torch.allclose(c[0, 1], x[0, :, 16:48, 32:64], atol=1e-5)


def test_translations_stay_bounded_and_bn_frozen():
    m = tiny("cub-2st")
    with torch.no_grad():
        m.loc[-1].bias.fill_(50.0)
    m.train()
    assert not any(b.training for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d))
    assert m.classifier.training
    with torch.no_grad():
        boxes = m.views(torch.rand(1, 3, 64, 64)).boxes
    assert boxes[..., [0, 2]].mean(-1).abs().max() <= m.t_bound + 1e-6


def test_gradients_reach_localisation():
    m = tiny("cub-2st").train()
    m(torch.rand(2, 3, 64, 64)).logsumexp(1).sum().backward()
    assert m.loc[-1].bias.grad is not None and m.loc[-1].bias.grad.abs().sum() > 0


def test_bad_arguments():
    with pytest.raises(ValueError):
        build_cub_model("cub-3st", [1])
    with pytest.raises(ValueError):
        CubNet([1, 1], 2, backbone_weights=None)
    with pytest.raises(ValueError):
        tiny("cub-2st")(torch.rand(1, 1, 64, 64))


def test_missing_weights_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        mobilenet_v2_features(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"w": torch.zeros(2)}, bad)
    with pytest.raises(WeightsError, match="do not fit"):
        mobilenet_v2_features(bad)


@pytest.mark.skipif(not default_weights_path().is_file(),
                    reason="needs ../shared/data/weights/mobilenet_v2_imagenet_float.pth (ImageNet weights)")
def test_default_weights_load():
    f = mobilenet_v2_features("default")
    assert sum(p.numel() for p in f.parameters()) > 2_000_000


def test_load_model_round_trip(tmp_path):
    m = tiny("cub-2st").eval()
    meta = {"task": "cub", "model": "cub-2st", "transform": "attention", "input_size": 64, "num_classes": 3,
            "classes": [1, 12, 14], "final": True, "extra": {"arch": arch_of(m), "class_names": {"1": "A"}}}
    save_checkpoint(tmp_path / "c", m, meta)
    m2, meta2 = load_model(tmp_path / "c")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(m(x), m2(x), atol=1e-6)
    assert meta2["classes"] == [1, 12, 14]
    assert isinstance(model_from_meta(meta2), CubNet)
    bad = dict(meta, transform="affine")
    (tmp_path / "c.json").write_text(json.dumps({**json.loads((tmp_path / "c.json").read_text()), **bad}))
    with pytest.raises(CheckpointError, match="attention"):
        load_meta(tmp_path / "c")


def test_learned_scale_starts_at_the_fixed_boxes_moves_and_stays_in_range():
    fixed = tiny("cub-2st").eval()
    torch.manual_seed(0)
    m = build_cub_model("cub-2st", [1, 12, 14], input_size=64, crop_size=32, backbone_weights=None,
                        learn_scale=True).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(m.views(x).boxes, fixed.views(x).boxes, atol=2e-3, rtol=0)
    m.train()
    m(x).logsumexp(1).sum().backward()
    scale_bias = m.loc[-1].bias.grad.view(2, 3)[:, 0]
    assert scale_bias.abs().sum() > 0                                  # the scale gets a gradient
    with torch.no_grad():
        m.loc[-1].bias.copy_(torch.tensor([50.0, 50, -50, -50, 50, 50]))
        p = m.views(x).params
    assert (p[..., 0] <= 1.0 + 1e-6).all() and (p[..., 0] >= 0.2 - 1e-6).all()
    assert (p[..., 1:].abs() <= 1.0 - p[..., :1] / 2 + 1e-6).all()     # at most half a box outside
    assert arch_of(m)["learn_scale"] is True


def test_loc_size_down_samples_what_the_localisation_net_sees():
    """The 448-px protocol: the localisation net looks at the image at ``loc_size``, the crops come from the
    full-resolution input; boxes equal those of the same net given the down-sampled image directly."""
    torch.manual_seed(0)
    m = build_cub_model("cub-2st", [1, 12, 14], input_size=128, crop_size=64, backbone_weights=None,
                        loc_size=64).eval()
    with torch.no_grad():
        m.loc[-1].weight.normal_(0, 0.1)
        x = torch.rand(1, 3, 128, 128)
        small = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
        m_small = build_cub_model("cub-2st", [1, 12, 14], input_size=64, crop_size=64, backbone_weights=None).eval()
        m_small.load_state_dict(m.state_dict())
        torch.testing.assert_close(m.attention_params(x), m_small.attention_params(small))
        assert m.crops(x, m.attention_params(x)).shape == (1, 2, 3, 64, 64)
    assert arch_of(m)["loc_size"] == 64 and model_from_meta(
        {"model": "cub-2st", "classes": [1, 12, 14], "num_classes": 3, "input_size": 128,
         "extra": {"arch": arch_of(m)}}).loc_size == 64
    with pytest.raises(ValueError, match="loc_size"):
        build_cub_model("cub-2st", [1], input_size=64, backbone_weights=None, loc_size=128)


@pytest.mark.parametrize("arch,words", [({"loc_size": 10**9}, "loc_size"), ({"learn_scale": "yes"}, "learn_scale")])
def test_a_hostile_cub_arch_is_refused(tmp_path, arch, words):
    m = tiny("cub-2st")
    meta = {"task": "cub", "model": "cub-2st", "transform": "attention", "input_size": 64, "num_classes": 3,
            "classes": [1, 12, 14], "extra": {"arch": {**arch_of(m), **arch}}}
    with pytest.raises(CheckpointError, match=words):
        save_checkpoint(tmp_path / "h", m, meta)
        load_model(tmp_path / "h")


# --------------------------------------------------------------------------- CLI

TINY = ["--task", "cub", "--classes", "1,12,14", "--backbone-weights", "none", "--input-size", "64",
        "--crop-size", "32", "--batch", "2", "--steps", "4", "--threads", "1", "--no-progress",
        "--ckpt-every", "2", "--box-every", "1"]


def test_cli_tiny_run_and_resume(tmp_path):
    """In-process through stn_core.train.mnist.main (the CUB dispatch): stop at step 2, resume, compare
    with an uninterrupted run."""
    from stn_core.train import main

    root = make_tiny_cub(tmp_path / "cub")
    common = TINY + ["--data-root", str(root), "--model", "cub-2st"]
    meta = main(common + ["--out", str(tmp_path / "a"), "--stop-at", "2"])
    assert meta["final"] is False and json.loads((tmp_path / "a.json").read_text())["final"] is False
    ma = main(common + ["--out", str(tmp_path / "a"), "--resume"])
    mb = main(common + ["--out", str(tmp_path / "b")])
    assert ma["final"] and ma["steps"] == 4 and ma["classes"] == [1, 12, 14]
    assert ma["test_error"] == mb["test_error"]
    assert "--stop-at" not in ma["command"] and ma["command"].startswith("python -m stn_core.train --task cub")
    hist = json.loads((tmp_path / "a.json").read_text())["extra"]["box_history"]
    assert hist["steps"] == [0, 1, 2, 3, 4] and len(hist["boxes"]) == 5
    assert len(hist["boxes"][0][0]) == 2
    m_a, _ = load_model(tmp_path / "a")
    m_b, _ = load_model(tmp_path / "b")
    for (k, va), vb in zip(m_a.state_dict().items(), m_b.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-6), k
    # refusing to overwrite / to resume with other settings
    with pytest.raises(SystemExit, match="exists"):
        main(common + ["--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="different settings"):
        main(common + ["--out", str(tmp_path / "a"), "--resume", "--lr", "0.1"])


def test_cli_takes_the_recipe_studys_optimisers_and_schedules(tmp_path, monkeypatch):
    """--optimizer adamw and --schedule paper / --warmup reach the optimiser and each step's lr (lr_at, as the
    MNIST CLI); they are recorded only when not the default (older runs resume), a resume with another schedule
    is refused, and a warm-up the schedule cannot take is an error before any training."""
    from stn_core.train import cub as C
    from stn_core.train import loop as L
    from stn_core.train import main

    seen: list[tuple[str, float]] = []  # (optimiser class, lr) of every step
    real_set_lr = C.set_lr

    def spy(opt, lr):
        seen.append((type(opt).__name__, lr))
        real_set_lr(opt, lr)

    monkeypatch.setattr(C, "set_lr", spy)
    root = make_tiny_cub(tmp_path / "cub")
    common = TINY + ["--data-root", str(root), "--model", "cub-baseline", "--lr", "0.01"]
    meta = main(common + ["--optimizer", "adamw", "--schedule", "paper", "--out", str(tmp_path / "p")])
    assert meta["train_args"]["schedule"] == "paper" and meta["train_args"]["optimizer"] == "adamw"
    assert seen == [("AdamW", L.lr_at(s, 4, 0.01, "paper")) for s in range(4)]
    assert [lr for _, lr in seen] == pytest.approx([0.01, 0.01, 0.001, 0.0001])
    seen.clear()
    meta = main(common + ["--warmup", "2", "--out", str(tmp_path / "w")])
    assert meta["train_args"]["warmup"] == 2 and "schedule" not in meta["train_args"]
    assert [lr for _, lr in seen] == pytest.approx([L.lr_at(s, 4, 0.01, "cosine", 2) for s in range(4)])
    assert seen[0] == ("SGD", pytest.approx(0.005))
    assert "warmup" not in main(common + ["--out", str(tmp_path / "d")])["train_args"]
    with pytest.raises(SystemExit, match="different settings"):
        main(common + ["--schedule", "paper", "--out", str(tmp_path / "w"), "--resume"])
    with pytest.raises(SystemExit, match="--warmup applies to --schedule cosine only"):
        main(common + ["--schedule", "paper", "--warmup", "1", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match=r"--warmup must be in 0\.\.4"):
        main(common + ["--warmup", "5", "--out", str(tmp_path / "y")])


def test_cli_448_protocol_with_learned_scale(tmp_path):
    """--loc-size and --learn-scale reach the model and the checkpoint, which load_model rebuilds."""
    from stn_core.train import main

    root = make_tiny_cub(tmp_path / "cub")
    meta = main(TINY + ["--data-root", str(root), "--model", "cub-2st", "--loc-size", "32", "--learn-scale",
                        "--out", str(tmp_path / "s")])
    arch = meta["extra"]["arch"]
    assert meta["final"] and arch["loc_size"] == 32 and arch["learn_scale"] is True
    assert meta["train_args"]["learn_scale"] is True and meta["train_args"]["loc_size"] == 32
    m, _ = load_model(tmp_path / "s")
    assert m.learn_scale and m.loc_size == 32 and m.loc[-1].out_features == 6


def test_centre_start_puts_every_box_on_the_image_centre():
    torch.manual_seed(0)
    m = build_cub_model("cub-4st", [1, 12, 14], input_size=64, crop_size=32, backbone_weights=None,
                        loc_init="centre").eval()
    with torch.no_grad():
        boxes = m.views(torch.rand(2, 3, 64, 64)).boxes
    assert torch.allclose(boxes, torch.tensor([-0.5, -0.5, 0.5, 0.5]).expand(2, 4, 4), atol=2e-3)
    assert arch_of(m)["loc_init"] == "centre"
    with pytest.raises(ValueError, match="loc_init"):
        build_cub_model("cub-2st", [1], input_size=64, crop_size=32, backbone_weights=None, loc_init="middle")


def test_heatmap_head_starts_at_the_start_boxes_and_follows_the_image():
    """Zero score maps: every box exactly at its start. A score map peaked on one cell moves the box
    towards that cell, differently for different images (what the MLP head's shared offset cannot)."""
    torch.manual_seed(0)
    m = build_cub_model("cub-2st", [1, 12, 14], input_size=64, crop_size=32, backbone_weights=None,
                        loc_head="heatmap").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(m.views(x).boxes, m.views(torch.rand(2, 3, 64, 64)).boxes)
        assert torch.allclose(m.views(x).boxes[0], torch.tensor([[-1.0, -0.5, 0.0, 0.5], [0.0, -0.5, 1.0, 0.5]]),
                              atol=1e-5)
    loc = m.loc
    fmap = torch.zeros(2, 1280, 2, 2)
    fmap[0, 0, 0, 0] = 1.0   # image 0: feature 0 fires in the top-left cell
    fmap[1, 0, 1, 1] = 1.0   # image 1: in the bottom-right cell
    with torch.no_grad():
        loc.score.weight[:, 0] = 20.0
        raw = loc(fmap)
    assert raw.shape == (2, 2, 2)
    d = raw - loc.start
    assert torch.allclose(d[0], torch.full((2, 2), -1.0), atol=1e-3)  # gain 2 × cell centre (-0.5, -0.5)
    assert torch.allclose(d[1], torch.full((2, 2), 1.0), atol=1e-3)
    g = torch.autograd.grad(m.views(x).boxes.sum(), loc.score.weight, allow_unused=True)[0]
    assert g is not None  # reached by the gradient through the soft-argmax
    assert arch_of(m)["loc_head"] == "heatmap" and arch_of(m)["loc_hidden"] is None
    with pytest.raises(ValueError, match="learn_scale"):
        build_cub_model("cub-2st", [1], input_size=64, crop_size=32, backbone_weights=None, loc_head="heatmap",
                        learn_scale=True)


def test_validation_split_is_carved_per_class_from_train_only():
    from stn_core.train.cub import carve_validation

    fake = [type("R", (), {"class_id": c, "image_id": 10 * c + i})() for c in (1, 2, 3) for i in range(10)]
    fake += [type("R", (), {"class_id": 4, "image_id": 99})()]  # a class with one image keeps it for training
    tr, va = carve_validation(fake, 0.2)
    assert sorted(r.image_id for r in tr + va) == sorted(r.image_id for r in fake)
    assert not {r.image_id for r in tr} & {r.image_id for r in va}
    assert [sum(r.class_id == c for r in va) for c in (1, 2, 3, 4)] == [2, 2, 2, 0]
    assert [r.image_id for r in carve_validation(fake, 0.2)[1]] == [r.image_id for r in va]  # fixed split


def test_cli_validation_run_never_reads_the_test_split(tmp_path):
    """--val-fraction trains on part of train, scores on the rest, labels the JSON so, and records box statistics."""
    from stn_core.train import main

    root = make_tiny_cub(tmp_path / "cub")
    meta = main(TINY + ["--data-root", str(root), "--model", "cub-2st", "--val-fraction", "0.34",
                        "--loc-init", "centre", "--loc-head", "heatmap", "--out", str(tmp_path / "v")])
    assert meta["final"] and meta["test_set"]["split"].startswith("VALIDATION")
    assert meta["train_args"]["val_fraction"] == 0.34 and meta["train_args"]["loc_init"] == "centre"
    assert meta["train_args"]["loc_head"] == "heatmap"
    m, _ = load_model(tmp_path / "v")  # rebuilt with its heatmap head
    assert m.loc_head == "heatmap" and m.loc_init == "centre"
    # make_tiny_cub marks 3 of each class's 5 birds as training: 1 of the 3 (round(0.34 · 3)) becomes validation
    assert meta["extra"]["n_train"] == 6 and meta["test_set"]["size"] == 3
    st = meta["extra"]["eval_box_stats"]
    assert st["images"] == meta["test_set"]["size"] and len(st["centre_std"]) == 2 and len(st["side_mean"]) == 2


def test_cli_spsa_box_signal_records_itself_and_refuses_what_it_cannot_do(tmp_path):
    """--box-grad spsa trains (recorded in train_args with its shift); the baseline and a learned scale are refused."""
    from stn_core.train import main

    root = make_tiny_cub(tmp_path / "cub")
    meta = main(TINY + ["--data-root", str(root), "--model", "cub-2st", "--box-grad", "spsa", "--spsa-delta", "0.2",
                        "--out", str(tmp_path / "s")])
    assert meta["final"] and meta["train_args"]["box_grad"] == "spsa" and meta["train_args"]["spsa_delta"] == 0.2
    plain = main(TINY + ["--data-root", str(root), "--model", "cub-2st", "--out", str(tmp_path / "p")])
    assert "box_grad" not in plain["train_args"] and "spsa_delta" not in plain["train_args"]  # old runs resume
    for extra, why in ((["--model", "cub-baseline"], "no boxes"), (["--model", "cub-2st", "--learn-scale"], "scale")):
        with pytest.raises(SystemExit, match=why):
            main(TINY + ["--data-root", str(root), *extra, "--box-grad", "spsa", "--out", str(tmp_path / "r")])


def test_cli_help_and_dispatch(capsys):
    from stn_core.train.cub import is_cub_task, parse_args

    assert is_cub_task(["--task", "cub50"]) and is_cub_task(["--task=cub200"]) and not is_cub_task(["--task", "mnist-r"])
    with pytest.raises(SystemExit):
        parse_args(["--task", "cub50", "--model", "cub-2st", "--help"])
    out = capsys.readouterr().out
    assert "--loc-lr-mult" in out and "--classes" in out
    with pytest.raises(SystemExit):
        parse_args(["--task", "cub", "--model", "cub-2st", "--out", "x"])  # cub needs --classes


def test_cli_torchrun_two_processes(tmp_path):
    root = make_tiny_cub(tmp_path / "cub")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    import socket

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(port),
           "-m", "stn_core.train", *TINY, "--data-root", str(root), "--model", "cub-baseline",
           "--out", str(tmp_path / "d")]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((tmp_path / "d.json").read_text())
    assert meta["final"] and meta["world_size"] == 2 and meta["command"].startswith("torchrun --nproc_per_node 2")


def test_cli_clear_errors(tmp_path):
    from stn_core.train import main

    root = make_tiny_cub(tmp_path / "cub")
    with pytest.raises(SystemExit, match="weights not found"):
        main([*TINY, "--data-root", str(root), "--model", "cub-2st", "--out", str(tmp_path / "e"),
              "--backbone-weights", str(tmp_path / "missing.pth")])
    with pytest.raises(SystemExit, match="not found"):
        main([*TINY, "--data-root", str(tmp_path / "nowhere"), "--model", "cub-2st", "--out", str(tmp_path / "e")])


def test_separate_branches_send_each_crop_through_its_own_backbone(tmp_path):
    """The paper's architecture: transformer j's crop goes through branch j (all start from the same weights,
    so at the start the logits equal the shared model's); the localisation net keeps the shared backbone."""
    torch.manual_seed(0)
    shared = build_cub_model("cub-2st", [1, 12, 14], input_size=64, crop_size=32, backbone_weights=None).eval()
    sep = build_cub_model("cub-2st", [1, 12, 14], input_size=64, crop_size=32, backbone_weights=None,
                          branches="separate").eval()
    assert len(sep.crop_features) == 2 and shared.crop_features is None
    with torch.no_grad():  # same starting weights everywhere → the same function
        sep.features.load_state_dict(shared.features.state_dict())
        for b in sep.crop_features:
            b.load_state_dict(shared.features.state_dict())
        sep.loc.load_state_dict(shared.loc.state_dict())
        sep.classifier.load_state_dict(shared.classifier.state_dict())
        x = torch.rand(3, 3, 64, 64)
        torch.testing.assert_close(sep(x), shared(x), atol=1e-5, rtol=1e-4)
        for p in sep.crop_features[1].parameters():  # change branch 1 only: the logits move, the boxes do not
            p.add_(0.01 * torch.randn_like(p))
        assert not torch.allclose(sep(x), shared(x), atol=1e-4)
        torch.testing.assert_close(sep.views(x).boxes, shared.views(x).boxes)
    g = torch.autograd.grad(sep.train()(x).sum(), [next(b.parameters()) for b in sep.crop_features])
    assert all(t.abs().sum() > 0 for t in g)  # each branch learns from its own crop
    assert all(not m.training for b in sep.crop_features for m in b.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert arch_of(sep)["branches"] == "separate"
    save_checkpoint(tmp_path / "sep", sep, {"task": "cub-50", "extra": {"arch": arch_of(sep)},
                                            "classes": [1, 12, 14]})
    m, _ = load_model(tmp_path / "sep")
    assert m.branches == "separate" and len(m.crop_features) == 2
    with pytest.raises(ValueError, match="branches"):
        build_cub_model("cub-2st", [1], input_size=64, crop_size=32, backbone_weights=None, branches="own")
