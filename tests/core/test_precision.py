"""``--precision`` (fp32 / bf16 / fp16 autocast, auto), channels-last defaults and the adaptive
checkpoint interval of the training CLIs (stn_core.train.loop, stn_core.train.mnist).

Runs on the tiny MNIST fixture (tests/conftest.py ``data_root``), one thread, so that the exact
(bitwise) comparisons hold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from stn_core.checkpoints import read_safetensors
from stn_core.data import tasks as ds
from stn_core.models import build_model
from stn_core.train import loop as L
from stn_core.train import mnist as T


def _args(data_root, out, *extra):
    return ["--data-root", str(data_root), "--no-verify", "--out", str(out), "--threads", "1", "--no-progress",
            *extra]


def _same_weights(a_stem, b_stem) -> None:
    a, _ = read_safetensors(f"{a_stem}.safetensors")
    b, _ = read_safetensors(f"{b_stem}.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# --------------------------------------------------------------------------- resolving the precision

def test_auto_resolves_as_documented(monkeypatch):
    monkeypatch.setattr(L, "cpu_has_fast_bf16", lambda: True)
    assert L.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(L, "cpu_has_fast_bf16", lambda: False)
    assert L.resolve_precision("auto", torch.device("cpu")) == "fp32"
    # CUDA: bf16 where the GPU has it, else fp16 (with a GradScaler)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert L.resolve_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert L.resolve_precision("auto", torch.device("cuda")) == "fp16"
    with pytest.raises(SystemExit, match="bfloat16"):
        L.resolve_precision("bf16", torch.device("cuda"))
    # explicit choices are kept
    for p in ("fp32", "bf16", "fp16"):
        assert L.resolve_precision(p, "cpu") == p
    assert L.make_grad_scaler("fp16", "cpu") is not None
    assert L.make_grad_scaler("bf16", "cpu") is None and L.make_grad_scaler("fp32", "cpu") is None


def test_cpu_detection_uses_torch_then_cpuinfo(monkeypatch):
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert L.cpu_has_fast_bf16()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(L, "_cpuinfo_flags", lambda: {"avx512_bf16"})
    assert not L.cpu_has_fast_bf16()  # torch's own probes answer first
    # a torch without the probes: /proc/cpuinfo's flags decide
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert L.cpu_has_fast_bf16()
    monkeypatch.setattr(L, "_cpuinfo_flags", lambda: {"amx_bf16", "avx2"})
    assert L.cpu_has_fast_bf16()
    monkeypatch.setattr(L, "_cpuinfo_flags", lambda: {"avx2", "avx512f"})
    assert not L.cpu_has_fast_bf16()
    monkeypatch.setattr(L, "_cpuinfo_flags", lambda: {"avx512_bf16"})
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert not L.cpu_has_fast_bf16()  # no oneDNN: nothing would use the instructions


def test_train_step_autocasts_forward_only():
    torch.manual_seed(0)
    m = build_model("cnn", None, 28)
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    logits, loss = L.train_step(m, opt, x, y, "bf16")
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in m.parameters())


# --------------------------------------------------------------------------- CLI

def test_fp32_reproduces_the_plain_float32_loop(data_root, tmp_path):
    """--precision fp32 is today's loop: the same weights, bit for bit, as forward → loss → backward
    → SGD step written out here without autocast."""
    common = ["--task", "mnist-rts", "--model", "st-cnn", "--transform", "affine", "--steps", "3", "--batch", "16",
              "--lr", "0.05", "--momentum", "0.9", "--seed", "5", "--test-limit", "20"]
    meta = T.main(_args(data_root, tmp_path / "r", *common, "--precision", "fp32"))
    assert meta["extra"] == {"precision": "fp32", "channels_last": True, "compile": False}
    torch.set_num_threads(1)
    images, labels = ds.load_split("train", data_root, False)
    stream = ds.TrainStream(images, labels, "mnist-rts", 5, 16)
    torch.manual_seed(5)
    model = build_model("st-cnn", "affine", ds.input_size("mnist-rts")).use_channels_last()
    opt = torch.optim.SGD(L.param_groups(model, 1.0), lr=0.05, momentum=0.9)
    for step in range(3):
        L.set_lr(opt, L.lr_at(step, 3, 0.05))
        x, y = stream.batch(step)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    saved, _ = read_safetensors(tmp_path / "r.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(saved[k], v), k


def test_bf16_run_records_its_settings_and_evaluates_in_fp32(data_root, tmp_path):
    from stn_core.checkpoints import load_model

    common = ["--task", "mnist", "--model", "cnn", "--steps", "6", "--batch", "16", "--lr", "0.05",
              "--test-limit", "40"]
    meta = T.main(_args(data_root, tmp_path / "b", *common, "--precision", "bf16"))
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["extra"] == {"precision": "bf16", "channels_last": True, "compile": False} == meta["extra"]
    assert saved["final"] and 0 <= saved["test_error"] <= 100
    assert "--precision bf16" in saved["command"]
    # the recorded error is the float32 evaluation of the saved weights
    m, _ = load_model(tmp_path / "b")
    x, y = ds.fixed_test_set("mnist", root=data_root, limit=40, verify=False)
    err, _ = T.evaluate(m, x, y, torch.device("cpu"))
    assert err == pytest.approx(saved["test_error"], abs=1e-3)
    # bf16 evaluation runs too (logits upcast before the loss)
    err16, loss16 = T.evaluate(m, x, y, torch.device("cpu"), precision="bf16")
    assert 0 <= err16 <= 100 and loss16 == loss16


@pytest.mark.parametrize("fast", [True, False])
def test_auto_records_the_resolved_precision(data_root, tmp_path, monkeypatch, fast):
    monkeypatch.setattr(L, "cpu_has_fast_bf16", lambda: fast)
    meta = T.main(_args(data_root, tmp_path / "a", "--task", "mnist", "--model", "fcn", "--steps", "2", "--batch",
                        "8", "--test-limit", "10"))
    assert meta["extra"]["precision"] == ("bf16" if fast else "fp32")
    assert meta["extra"]["channels_last"] is False  # FCN: off by default


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_resume_is_bit_exact_within_a_precision(data_root, tmp_path, precision):
    # fp16 convolutions on a CPU take a slow path (~30 s for this run with the ST-CNN): the ST-FCN keeps a
    # transformer under fp16 autocast and its loss scaling at a fraction of the cost
    model = "st-cnn" if precision == "bf16" else "st-fcn"
    common = ["--task", "mnist-rts", "--model", model, "--transform", "affine", "--steps", "4", "--batch", "16",
              "--lr", "0.05", "--momentum", "0.9", "--seed", "2", "--test-limit", "20", "--precision", precision]
    full = T.main(_args(data_root, tmp_path / "full", *common))
    part = T.main(_args(data_root, tmp_path / "part", *common, "--stop-at", "2"))
    assert part["steps"] == 2 and part["final"] is False and part["extra"]["precision"] == precision
    if precision == "fp16":  # the loss scale travels with the checkpoint
        state, _ = read_safetensors(tmp_path / "part.train.safetensors")
        assert "amp/scale" in state and "amp/growth_tracker" in state
    again = T.main(_args(data_root, tmp_path / "part", *common, "--resume"))
    _same_weights(tmp_path / "full", tmp_path / "part")
    assert again["test_error"] == full["test_error"] and again["extra"]["precision"] == precision


def test_resume_with_another_precision_is_refused_and_auto_keeps_the_runs(data_root, tmp_path, monkeypatch):
    common = ["--task", "mnist-r", "--model", "cnn", "--steps", "4", "--batch", "16", "--lr", "0.05", "--seed", "1",
              "--test-limit", "20"]
    T.main(_args(data_root, tmp_path / "full", *common, "--precision", "bf16"))
    T.main(_args(data_root, tmp_path / "part", *common, "--precision", "bf16", "--stop-at", "2"))
    with pytest.raises(SystemExit, match="trained in bf16"):
        T.main(_args(data_root, tmp_path / "part", *common, "--precision", "fp32", "--resume"))
    # --precision auto continues in the run's recorded precision, even where auto would pick another
    monkeypatch.setattr(L, "cpu_has_fast_bf16", lambda: False)
    meta = T.main(_args(data_root, tmp_path / "part", *common, "--resume"))
    assert meta["extra"]["precision"] == "bf16" and meta["final"]
    _same_weights(tmp_path / "full", tmp_path / "part")


def test_checkpoints_from_before_the_flag_resume_as_fp32(data_root, tmp_path):
    common = ["--task", "mnist", "--model", "fcn", "--steps", "4", "--batch", "8", "--test-limit", "10"]
    T.main(_args(data_root, tmp_path / "old", *common, "--precision", "fp32", "--stop-at", "2"))
    meta = json.loads((tmp_path / "old.json").read_text())
    del meta["extra"]  # as written before --precision existed
    (tmp_path / "old.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="trained in fp32"):
        T.main(_args(data_root, tmp_path / "old", *common, "--precision", "bf16", "--resume"))
    assert T.main(_args(data_root, tmp_path / "old", *common, "--resume"))["extra"]["precision"] == "fp32"


# --------------------------------------------------------------------------- defaults

def test_channels_last_defaults_to_the_convolutional_models():
    base = ["--task", "mnist", "--out", "x"]
    assert T.parse_args(base + ["--model", "cnn"]).channels_last is True
    assert T.parse_args(base + ["--model", "st-cnn"]).channels_last is True
    assert T.parse_args(base + ["--model", "dcn"]).channels_last is True
    assert T.parse_args(base + ["--model", "fcn"]).channels_last is False
    assert T.parse_args(base + ["--model", "st-fcn"]).channels_last is False
    assert T.parse_args(base + ["--model", "cnn", "--no-channels-last"]).channels_last is False
    assert T.parse_args(base + ["--model", "fcn", "--channels-last"]).channels_last is True
    assert T.parse_args(base + ["--model", "fcn"]).precision == "auto"


def test_default_checkpoint_interval_adapts_to_short_runs():
    base = ["--task", "mnist", "--model", "fcn", "--out", "x"]
    assert T.parse_args(base + ["--steps", "400"]).ckpt_every == 40
    assert T.parse_args(base).ckpt_every == 1000  # the paper's 150k steps
    assert T.parse_args(base + ["--steps", "20000"]).ckpt_every == 1000
    assert T.parse_args(base + ["--steps", "5"]).ckpt_every == 1
    assert T.parse_args(base + ["--steps", "400", "--ckpt-every", "0"]).ckpt_every == 0
    assert T.parse_args(base + ["--steps", "400", "--ckpt-every", "7"]).ckpt_every == 7
    assert L.default_ckpt_every(400) == 40 and L.default_ckpt_every(30, cap=20) == 3
    assert L.default_ckpt_every(10_000, cap=20) == 20


def test_short_run_writes_checkpoints_on_the_way(data_root, tmp_path, monkeypatch):
    """--steps 20 without --ckpt-every: a resumable checkpoint every 2 steps (a kill loses ≤ 2 steps)."""
    written = []
    real = T.save_checkpoint

    def spy(stem, model, meta, state=None, train_info=None):
        written.append((train_info or {}).get("step"))
        return real(stem, model, meta, state, train_info=train_info)

    monkeypatch.setattr(T, "save_checkpoint", spy)
    T.main(_args(data_root, tmp_path / "s", "--task", "mnist", "--model", "fcn", "--steps", "20", "--batch", "8",
                 "--test-limit", "10"))
    assert written == list(range(2, 21, 2))


def test_strided_depthwise_convolutions_run_in_fp32_under_cpu_autocast():
    import torch.nn as nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 4, 1))
    keys = list(net.state_dict())
    assert L.keep_depthwise_fp32(net, "fp32", "cpu") == 0 and L.keep_depthwise_fp32(net, "bf16", "cuda") == 0
    ref = [p.detach().clone() for p in net.parameters()]
    assert L.keep_depthwise_fp32(net, "bf16", "cpu") == 1  # only the strided grouped 3×3 (groups == in_channels)
    assert type(net[3]) is nn.Conv2d  # stride 1: bf16 is the faster one
    assert isinstance(net[1], L.Float32Conv2d) and isinstance(net[1], nn.Conv2d)
    assert list(net.state_dict()) == keys and all(torch.equal(a, b) for a, b in zip(ref, net.parameters()))
    seen = {}
    net[1].register_forward_hook(lambda m, i, o: seen.update(inp=i[0].detach(), out=o.detach()))
    x = torch.rand(2, 3, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x)
    assert seen["inp"].dtype == seen["out"].dtype == y.dtype == torch.bfloat16  # bf16 in and out ...
    w, b = net[1].weight.detach(), net[1].bias.detach()  # ... computed in float32 (then rounded)
    assert torch.equal(seen["out"], F.conv2d(seen["inp"].float(), w, b, stride=2, padding=1, groups=8).bfloat16())
    z = torch.rand(1, 8, 4, 4)  # outside autocast: a plain float32 conv
    assert torch.equal(net[1](z), F.conv2d(z, w, b, stride=2, padding=1, groups=8))


def test_cub_cli_records_its_precision_and_keeps_it_on_resume(tmp_path, monkeypatch):
    from cub_fixture import make_tiny_cub

    from stn_core.train import cub as C
    from stn_core.train import main

    written = []
    real = C.save_checkpoint
    monkeypatch.setattr(C, "save_checkpoint", lambda stem, model, meta, state=None, train_info=None: (
        written.append((Path(stem).name, (train_info or {}).get("step"))),
        real(stem, model, meta, state, train_info=train_info))[1])
    root = make_tiny_cub(tmp_path / "cub")
    common = ["--task", "cub", "--classes", "1,12,14", "--backbone-weights", "none", "--input-size", "64",
              "--crop-size", "32", "--batch", "2", "--steps", "4", "--threads", "1", "--no-progress", "--box-every",
              "2", "--data-root", str(root), "--model", "cub-baseline", "--precision", "bf16"]
    full = main(common + ["--out", str(tmp_path / "full")])
    assert full["extra"]["precision"] == "bf16" and full["extra"]["channels_last"] is True
    part = main(common + ["--out", str(tmp_path / "part"), "--stop-at", "2"])
    assert part["final"] is False
    with pytest.raises(SystemExit, match="trained in bf16"):
        main([*common[:-2], "--precision", "fp32", "--out", str(tmp_path / "part"), "--resume"])
    again = main(common + ["--out", str(tmp_path / "part"), "--resume"])
    assert again["final"] and again["extra"]["precision"] == "bf16"
    _same_weights(tmp_path / "full", tmp_path / "part")  # bit-exact within bf16
    # no --ckpt-every: min(20, max(1, 4 // 10)) = every step
    assert [st for name, st in written if name == "full"] == [1, 2, 3, 4]


def test_open_run_refuses_to_overwrite_and_a_resumed_run_keeps_its_precision(tmp_path, monkeypatch):
    from types import SimpleNamespace

    paths = {"meta": tmp_path / "run.json"}
    said: list[str] = []
    base = {"task": "mnist", "model": "fcn", "transform": None, "input_size": 28, "num_classes": 10,
            "train_args": {"steps": 4}}
    a = SimpleNamespace(out=str(tmp_path / "run"), resume=False, overwrite=False, precision="auto")
    assert L.open_run(a, paths, {"steps": 4}, said.append, "fp32") == (None, "fp32")  # nothing there: start afresh
    paths["meta"].write_text(json.dumps({**base, "final": False, "extra": {"precision": "bf16"}}))
    with pytest.raises(SystemExit, match="exists; pass --resume"):
        L.open_run(a, paths, {"steps": 4}, said.append, "fp32")
    monkeypatch.setattr(L, "resolve_precision", lambda p, device: p)  # any machine may "run" bf16 here
    meta, precision = L.open_run(SimpleNamespace(**{**vars(a), "resume": True}), paths, {"steps": 4}, said.append,
                                 "fp32")
    assert meta["extra"]["precision"] == "bf16" and precision == "bf16"
    # a trainer without --precision (None) gets None back, and a finished run is returned as it is
    paths["meta"].write_text(json.dumps({**base, "final": True}))
    meta, precision = L.open_run(SimpleNamespace(**{**vars(a), "resume": True}), paths, {"steps": 4}, said.append)
    assert meta["final"] and precision is None and "already finished" in said[-1]
