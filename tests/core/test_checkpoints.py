"""Checkpoints: safetensors + JSON round trip, clear errors, atomic writes."""

import json

import pytest
import torch

from stn_core import checkpoints as C
from stn_core.checkpoints import CheckpointError, load_model, save_checkpoint
from stn_core.models import build_model


def _x(n=4, side=28):
    return torch.rand(n, 1, side, side, generator=torch.Generator().manual_seed(1))


def _meta(**kw):
    return {"task": "mnist-r", "test_error": 1.5, "paper_error": 0.7, "command": "python -m stn_core.train ...",
            "steps": 10, "seed": 0, **kw}


def _trained(name="st-cnn", tr="tps", side=28, seed=0):
    torch.manual_seed(seed)
    m = build_model(name, tr, side)
    with torch.no_grad():  # move away from the identity init so the round trip is meaningful
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("name,tr,side", [("st-cnn", "tps", 28), ("st-fcn", "projective", 42), ("cnn", None, 42)])
def test_round_trip_gives_identical_logits(tmp_path, name, tr, side):
    m = _trained(name, tr, side).eval()
    stem = tmp_path / "ck"
    jpath = save_checkpoint(stem, m, _meta(task="mnist-rts" if side == 42 else "mnist-r"))
    assert jpath == tmp_path / "ck.json" and (tmp_path / "ck.safetensors").is_file()
    x = _x(side=side)
    for p in (stem, tmp_path / "ck.json", tmp_path / "ck.safetensors"):
        m2, meta = load_model(p)
        assert torch.equal(m2(x), m(x))
        assert meta["model"] == name and meta["transform"] == tr and meta["input_size"] == side
        assert meta["classes"] == [str(i) for i in range(10)] and meta["torch_version"] == torch.__version__
    assert not list(tmp_path.glob("*.tmp"))


def test_optimizer_state_round_trip(tmp_path):
    m = _trained("fcn", None)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    torch.nn.functional.cross_entropy(m(_x()), torch.arange(4)).backward()
    opt.step()
    state = {**C.optimizer_tensors(opt), "rng/torch_cpu": torch.get_rng_state()}
    save_checkpoint(tmp_path / "ck", m, _meta(), state, train_info={"step": 7})
    meta = C.load_meta(tmp_path / "ck")
    tensors, info = C.load_train_state(tmp_path / "ck", meta)
    assert info["step"] == "7" and tensors["rng/torch_cpu"].dtype == torch.uint8
    opt2 = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    C.load_optimizer_tensors(opt2, tensors)
    for k, v in opt.state_dict()["state"].items():
        assert torch.equal(opt2.state_dict()["state"][k]["momentum_buffer"], v["momentum_buffer"])


def test_missing_truncated_corrupt_and_foreign_files(tmp_path):
    m = _trained("st-fcn", "affine")
    stem = tmp_path / "ck"
    save_checkpoint(stem, m, _meta())
    w = tmp_path / "ck.safetensors"
    good = w.read_bytes()
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nothing")
    w.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(stem)
    w.write_bytes(good[:5])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(stem)
    w.write_bytes(good[:8] + b"\xff" * 20 + good[28:])
    with pytest.raises(CheckpointError):
        load_model(stem)
    torch.save(m.state_dict(), w)  # a pickle .pt renamed to .safetensors
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_model(stem)
    w.unlink()
    with pytest.raises(CheckpointError, match="not found"):
        load_model(stem)


def test_bad_metadata(tmp_path):
    m = _trained("st-cnn", "affine")
    stem = tmp_path / "ck"
    save_checkpoint(stem, m, _meta())
    j = tmp_path / "ck.json"
    meta = json.loads(j.read_text())

    def broken(**changes):
        d = {k: v for k, v in meta.items() if changes.get(k, 0) is not None}
        d.update({k: v for k, v in changes.items() if v is not None})
        j.write_text(json.dumps(d))

    broken(model=None)
    with pytest.raises(CheckpointError, match="lacks the required key"):
        load_model(stem)
    broken(colour="blue")
    with pytest.raises(CheckpointError, match="unknown metadata key"):
        load_model(stem)
    broken(model="resnet")
    with pytest.raises(CheckpointError, match="unknown model"):
        load_model(stem)
    broken(arch={**meta["arch"], "width": meta["arch"]["width"] + 1})
    with pytest.raises(CheckpointError, match="shapes do not match"):
        load_model(stem)
    broken(transform="tps")
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(stem)
    broken(checkpoint_id="0" * 32)
    with pytest.raises(CheckpointError, match="different checkpoints"):
        load_model(stem)
    j.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(stem)
    with pytest.raises(ValueError):  # CheckpointError is a ValueError
        load_model(stem)


def test_failed_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    old = _trained("st-cnn", "affine", seed=0).eval()
    stem = tmp_path / "ck"
    save_checkpoint(stem, old, _meta(steps=1), {"x": torch.ones(3)}, train_info={"step": 1})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_fsync = C.os.fsync
    calls = []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the weights file: its bytes are written, then the disk fails
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(C.os, "fsync", failing_fsync)
    new = _trained("st-cnn", "affine", seed=1)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(stem, new, _meta(steps=2), {"x": torch.zeros(3)}, train_info={"step": 2})
    monkeypatch.undo()
    assert len(calls) == 2
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # all three files unchanged, no temporary files left behind
    m2, meta = load_model(stem)
    assert meta["steps"] == 1
    x = _x()
    assert torch.equal(m2(x), old(x))


def _recorded_sources(meta, path=()):
    """Every ``{"checkpoint": name, "weights_sha256": sha}`` a checkpoint's JSON records of the checkpoints it
    was made with (e.g. the co-localisation banks' encoder), as (where, name, sha)."""
    if isinstance(meta, dict):
        if "checkpoint" in meta and "weights_sha256" in meta and path:
            yield "/".join(path), str(meta["checkpoint"]), meta["weights_sha256"]
        for k, v in meta.items():
            yield from _recorded_sources(v, (*path, k))


def test_shipped_checkpoints_made_with_another_one_record_the_weights_that_ship():
    """A checkpoint made with another shipped checkpoint (an encoder, a teacher) must name that one's current
    weights: retraining the source without remaking what was made with it leaves results nobody can reproduce."""
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "checkpoints"
    sha = {p.stem: json.loads(p.read_text()).get("weights_sha256") for p in shipped.glob("*.json")}
    found = []
    for p in sorted(shipped.glob("*.json")):
        for where, name, recorded in _recorded_sources(json.loads(p.read_text())):
            source = Path(name).name
            assert source in sha, f"{p.name} {where}: made with {name}, which does not ship"
            assert recorded == sha[source], (f"{p.name} {where}: made with {source} weights {recorded[:12]}…, but "
                                             f"{source} now ships {str(sha[source])[:12]}… — remake {p.stem}")
            found.append(p.name)
    assert "coloc_t.json" in found and "coloc_tc.json" in found  # the walker sees the records it guards
