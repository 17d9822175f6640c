"""The training CLI: learning, exact resume, data-parallel torchrun, bookkeeping.

Runs on a tiny MNIST made from the 500 shipped test digits (train = all 500, test = the
first 200), so it needs no data import and stays fast.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stn_core.data import tasks as ds
from stn_core.train import mnist as T
from stn_core.checkpoints import load_model, read_safetensors
from stn_core.models import build_model
from script_util import load_script

ROOT = Path(__file__).resolve().parents[2]


def _args(data_root, out, *extra):
    return ["--data-root", str(data_root), "--no-verify", "--out", str(out), "--threads", "1", "--no-progress",
            *extra]


def test_lr_schedule_is_the_papers_scaled():
    assert [T.lr_at(s, 150_000, 0.01) for s in (0, 49_999, 50_000, 99_999, 100_000, 149_999)] == \
        pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])
    assert T.lr_at(10, 30, 1.0) == pytest.approx(0.1)


def test_tiny_run_learns_and_writes_a_checkpoint(data_root, tmp_path):
    out = tmp_path / "fcn"
    meta = T.main(_args(data_root, out, "--task", "mnist", "--model", "st-fcn", "--transform", "affine",
                        "--steps", "30", "--batch", "32", "--lr", "0.1", "--momentum", "0.9", "--seed", "3"))
    # the test loss fell well below that of the untrained model
    x, y = ds.fixed_test_set("mnist", root=data_root, verify=False)
    torch.manual_seed(3)
    untrained = build_model("st-fcn", "affine", 28)
    _, loss0 = T.evaluate(untrained, x, y, torch.device("cpu"))
    assert meta["history"][-1]["test_loss"] < loss0 - 0.2
    assert meta["test_error"] < 70  # chance is 90 %
    m, saved = load_model(out)
    assert saved["test_error"] == meta["test_error"] and saved["final"] is True
    assert saved["steps"] == 30 and saved["seed"] == 3 and saved["command"].startswith("python -m stn_core.train ")
    assert saved["paper_error"] is None and saved["test_set"]["size"] == 200
    err, _ = T.evaluate(m, x, y, torch.device("cpu"))
    assert err == pytest.approx(saved["test_error"], abs=1e-3)


def test_resume_equals_an_uninterrupted_run(data_root, tmp_path):
    common = ["--task", "mnist-rts", "--model", "st-cnn", "--transform", "affine", "--steps", "8", "--batch", "16",
              "--lr", "0.05", "--momentum", "0.9", "--seed", "1", "--ckpt-every", "3", "--test-limit", "20"]
    T.main(_args(data_root, tmp_path / "full", *common))
    part = T.main(_args(data_root, tmp_path / "part", *common, "--stop-at", "4"))
    assert part["steps"] == 4 and part["final"] is False
    T.main(_args(data_root, tmp_path / "part", *common, "--resume"))
    a, _ = read_safetensors(tmp_path / "full.safetensors")
    b, _ = read_safetensors(tmp_path / "part.safetensors")
    for k in a:
        assert torch.equal(b[k], a[k]), k  # bitwise: same data, same ops, same thread count
    full = json.loads((tmp_path / "full.json").read_text())
    again = json.loads((tmp_path / "part.json").read_text())
    assert again["test_error"] == full["test_error"] and again["steps"] == 8
    assert again["command"] == full["command"].replace("full", "part")  # no --stop-at / --resume
    # resuming the finished run changes nothing: no duplicate history entry, the same files
    before = (tmp_path / "part.json").read_bytes()
    T.main(_args(data_root, tmp_path / "part", *common, "--resume"))
    assert (tmp_path / "part.json").read_bytes() == before


def test_adam_run_resumes_bit_exactly_and_records_its_optimizer(data_root, tmp_path):
    common = ["--task", "mnist-addition", "--model", "2st-fcn", "--steps", "6", "--batch", "8",
              "--optimizer", "adam", "--lr", "0.001", "--seed", "4", "--ckpt-every", "2", "--test-limit", "16"]
    full = T.main(_args(data_root, tmp_path / "full", *common))
    T.main(_args(data_root, tmp_path / "part", *common, "--stop-at", "3"))
    T.main(_args(data_root, tmp_path / "part", *common, "--resume"))
    a, _ = read_safetensors(tmp_path / "full.safetensors")
    b, _ = read_safetensors(tmp_path / "part.safetensors")
    for k in a:  # Adam's moments and step counts came back from the checkpoint
        assert torch.equal(b[k], a[k]), k
    assert full["train_args"]["optimizer"] == "adam" and "--optimizer adam" in full["command"]
    with pytest.raises(SystemExit, match="different settings"):  # resuming it with SGD is refused
        T.main(_args(data_root, tmp_path / "part", *[c for c in common if c not in ("--optimizer", "adam")],
                     "--resume"))
    with pytest.raises(SystemExit):  # momentum is an SGD setting
        T.parse_args(["--task", "mnist", "--model", "fcn", "--out", "x", "--optimizer", "adam", "--momentum", "0.9"])


def test_refuses_to_clobber_or_to_resume_with_other_settings(data_root, tmp_path):
    common = ["--task", "mnist", "--model", "fcn", "--steps", "2", "--batch", "8", "--test-limit", "10"]
    T.main(_args(data_root, tmp_path / "r", *common))
    with pytest.raises(SystemExit, match="exists"):
        T.main(_args(data_root, tmp_path / "r", *common))
    with pytest.raises(SystemExit, match="different settings"):
        T.main(_args(data_root, tmp_path / "r", *common[:-4], "--batch", "4", "--test-limit", "10", "--resume"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_on_cpu(data_root, tmp_path):
    common = ["--task", "mnist-p", "--model", "st-cnn", "--transform", "tps", "--steps", "6", "--batch", "16",
              "--lr", "0.05", "--seed", "2", "--test-limit", "40", "--precision", "fp32"]  # bf16 rounds differently per rank
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "stn_core.train",
           *_args(data_root, tmp_path / "ddp", *common)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    meta = json.loads((tmp_path / "ddp.json").read_text())
    assert meta["world_size"] == 2 and meta["steps"] == 6 and meta["command"].startswith("torchrun --nproc_per_node 2")
    # same semantics as one process with the whole batch (up to float summation order)
    single = T.main(_args(data_root, tmp_path / "one", *common))
    a, _ = read_safetensors(tmp_path / "ddp.safetensors")
    b, _ = read_safetensors(tmp_path / "one.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
    assert meta["test_error"] == pytest.approx(single["test_error"], abs=2.5)


def test_check_checkpoints_reevaluates_the_recorded_error(data_root, tmp_path):

    ck = tmp_path / "ck"
    T.main(_args(data_root, ck / "mnist_r_fcn", "--task", "mnist-r", "--model", "fcn", "--steps", "15", "--batch",
                 "32", "--lr", "0.05", "--momentum", "0.9", "--test-limit", "100"))
    T.main(_args(data_root, ck / "long" / "mnist_r_cnn", "--task", "mnist-r", "--model", "cnn", "--steps", "4",
                 "--stop-at", "2", "--batch", "16", "--test-limit", "50"))
    meta = json.loads((ck / "mnist_r_fcn.json").read_text())
    mod = load_script("check_checkpoints")
    out = mod.main(["--checkpoints", str(ck), "--out", str(tmp_path / "check.md"), "--data-root", str(data_root),
                    "--no-verify", "--threads", "1"])
    text = out.read_text()
    assert f"| mnist_r_fcn | cpu | {meta['test_error']:.2f} | {meta['test_error']:.2f} | 0 |  |" in text
    assert "| long/mnist_r_cnn | cpu | — | — | — | not final: skipped |" in text
    assert "1 of 2 checkpoints re-evaluated on their recorded test set; largest difference: 0 test digit(s)." in text
    # weights that no longer give the recorded error show up as a difference
    meta["test_error"] = meta["test_error"] + 3.0  # 3 % of 100 digits
    (ck / "mnist_r_fcn.json").write_text(json.dumps(meta))
    assert "| -3 |" in mod.main(["--checkpoints", str(ck), "--out", str(tmp_path / "c2.md"), "--data-root",
                                 str(data_root), "--no-verify"]).read_text()


def test_hold_out_takes_the_same_disjoint_digits_for_every_run_and_keeps_the_rest():
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1).expand(50, 28, 28).contiguous()
    labels = torch.arange(50) % 10
    tr_x, tr_y, va_x, va_y = ds.hold_out(images, labels, 12)
    tr, va = tr_x[:, 0, 0].tolist(), va_x[:, 0, 0].tolist()
    assert len(va) == 12 and sorted(tr + va) == list(range(50)) and not set(tr) & set(va)
    assert tr == sorted(tr) and va == sorted(va)  # both keep the split's order
    assert tr_y.tolist() == [i % 10 for i in tr] and va_y.tolist() == [i % 10 for i in va]
    assert ds.hold_out(images, labels, 12)[2].equal(va_x)  # fixed: no run seed involved
    assert not ds.hold_out(images, labels, 12, seed=1)[2].equal(va_x)
    for bad in (0, 50, -1):
        with pytest.raises(ValueError, match="1..49"):
            ds.hold_out(images, labels, bad)


def test_val_digits_run_trains_without_them_and_never_reads_the_test_split(data_root, tmp_path, monkeypatch):
    seen = []
    real_stream = ds.TrainStream

    def spy(images, *args, **kwargs):
        seen.append(images.clone())
        return real_stream(images, *args, **kwargs)

    def no_test(*args, **kwargs):
        raise AssertionError("the test split was read")

    monkeypatch.setattr(ds, "TrainStream", spy)
    monkeypatch.setattr(ds, "fixed_test_set", no_test)
    out = tmp_path / "val"
    common = ["--task", "mnist-rts", "--model", "fcn", "--steps", "4", "--batch", "16", "--seed", "2",
              "--val-digits", "100", "--eval-every", "2"]
    meta = T.main(_args(data_root, out, *common))
    images, labels = ds.load_split("train", data_root, verify=False)
    train_x, _, x_val, y_val = ds.validation_set(images, labels, "mnist-rts", 100)
    assert len(seen) == 1 and seen[0].equal(train_x) and seen[0].shape[0] == 400  # 500 digits − 100 held out
    assert meta["test_set"]["split"].startswith("VALIDATION: 100 training digits") and meta["test_set"]["size"] == 100
    assert meta["train_args"]["val_digits"] == 100 and "--val-digits 100" in meta["command"]
    m, saved = load_model(out)
    err, _ = T.evaluate(m, x_val, y_val, torch.device("cpu"))
    assert err == pytest.approx(saved["test_error"], abs=1e-3)  # the recorded error is the validation error
    assert [h["step"] for h in saved["history"]] == [2, 4]
    with pytest.raises(SystemExit, match="val_digits was 100, now 50"):
        T.main(_args(data_root, out, *common[:-4], "--val-digits", "50", "--eval-every", "2", "--resume"))
    with pytest.raises(SystemExit, match="1..499"):
        T.main(_args(data_root, tmp_path / "all", *common[:-4], "--val-digits", "500"))


def test_a_validation_run_is_never_published(data_root, tmp_path):
    from stn_core.checkpoints import CheckpointError, copy_checkpoint, evaluated_on_validation

    common = ["--task", "mnist", "--model", "fcn", "--steps", "2", "--batch", "8"]
    val = T.main(_args(data_root, tmp_path / "val", *common, "--val-digits", "50"))
    test = T.main(_args(data_root, tmp_path / "test", *common, "--test-limit", "10"))
    assert evaluated_on_validation(val) and not evaluated_on_validation(test)
    assert "val_digits" not in test["train_args"]  # recorded only when used: older runs resume as before
    with pytest.raises(CheckpointError, match="validation split"):
        copy_checkpoint(tmp_path / "val", tmp_path / "published")
    assert not (tmp_path / "published.json").exists()
    assert copy_checkpoint(tmp_path / "test", tmp_path / "published")["test_error"] == test["test_error"]
