"""Checkpoint trust boundary and crash safety (issue: "checkpoints you can trust").

* A seeded generator of corrupted / hostile checkpoints (:func:`_cases`, ≥ 120 cases): every
  one must raise :class:`CheckpointError` — never another exception type, never a silent model.
* Fault injection into the commit of :func:`save_checkpoint`: an exception at each step, a hard
  kill (``os._exit`` in a forked child) at each step, the old protocol's interrupted commits, and
  a real SIGKILL of a process saving in a loop. Afterwards the checkpoint on disk is the
  complete old one or the complete new one, loads, and no temporary file is left.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from stn_core import checkpoints as C
from stn_core.checkpoints import CheckpointError, load_meta, load_model, load_train_state, save_checkpoint
from stn_core.models import build_model
from script_util import load_script

ROOT = Path(__file__).resolve().parents[2]
SEED = 20150605
NAME = "ck"


def _tiny(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = build_model("fcn", None, 28, 10, width=8)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return m.eval()


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"optim/0/momentum_buffer": torch.randn(8, 784, generator=g), "rng/torch_cpu": torch.get_rng_state()}


def _meta(**kw) -> dict:
    return {"task": "mnist-r", "test_error": 1.5, "steps": 10, "seed": 0, "final": False, **kw}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A folder holding one good checkpoint ``ck`` (weights, JSON, train state)."""
    d = tmp_path_factory.mktemp("base")
    save_checkpoint(d / NAME, _tiny(), _meta(), _state(), train_info={"step": 10})
    return d


def _copy(base: Path, dest: Path) -> Path:
    for p in base.iterdir():
        shutil.copy2(p, dest / p.name)
    return dest / NAME


def _files(stem: Path) -> dict[str, Path]:
    return C.checkpoint_paths(stem)


def _set_json(stem: Path, meta: dict) -> None:
    _files(stem)["meta"].write_text(json.dumps(meta, indent=2))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- the corruption generator

_DEEP = object()  # marker: a value nested 50,000 levels deep (written as raw text)


def _json_value_cases() -> list[tuple[str, str, object]]:
    """(id, key, hostile value) for the JSON; a value None with key '-KEY' deletes KEY."""
    v: dict[str, list] = {
        "input_size": [0, -1, 3000, 10 ** 9, 2000, 1025, 15, 27, 1.5, "28", True, None, [28], {"a": 1}],
        "num_classes": [0, -3, 10 ** 9, 10_001, 11, "10", 2.0, None, True, [10]],
        "arch": [[1, 2], "x", 5, True, {"width": -5}, {"width": 0}, {"width": 10 ** 7}, {"width": "8"},
                 {"width": 8.5}, {"width": 9}, {"width": True}, {"width": 16384}, {"in_channels": 10 ** 6},
                 {"in_channels": 0}, {"in_channels": None}, {"in_channels": 2}, {"downsample": 0},
                 {"downsample": 10 ** 9}, {"downsample": 3}, {"downsample": 2}, {"target_params": -1},
                 {"target_params": 10 ** 12}, {"modulated": "yes"}, {"modulated": True}, _DEEP],
        "model": [None, 5, ["fcn"], "x" * 100_000, "cnn", "st-fcn", "dcn", "cub-2st"],
        "transform": [5, "tps", ["affine"], "attention", ""],
        "task": [5, None, {}],
        "classes": [5, ["a"], [str(i) for i in range(11)], [None] * 10, "0123456789", [[1]] * 10],
        "test_error": ["abc", [1], {"x": 1}, True],
        "steps": [-1, "10", 1.5],
        "history": [5, [1, 2], "x"],
        "final": ["yes", 1],
        "seed": ["0", 1.5],
        "checkpoint_id": [5, "0" * 32, "XYZ", ""],
        "format": ["other", 5],
        "format_version": [99, "1", 0],
        "weights_sha256": ["0" * 64, "xyz", 5, "A" * 64],
        "train_args": ["x", 5], "test_set": [[1]], "extra": [5, [1], _DEEP],
        "params": [-5, "x"],
        "colour": ["blue"], "integrity": ["sha256 verified"],
    }
    out = [(f"json-{k}-{i}", k, val) for k, vals in v.items() for i, val in enumerate(vals)]
    out += [(f"json-missing-{k}", "-" + k, None) for k in C.REQUIRED_META]
    cub = {"classes": ["a"] * 10, "extra": {"arch": {"crop_size": -1}}, "extra ": {"arch": {"crop_scale": 5}},
           "extra  ": {"arch": {"loc_hidden": 10 ** 9}}, "extra   ": [1], "extra    ": {"arch": 5},
           "input_size": 10 ** 6, "classes ": [1] * 10}
    out += [(f"json-cub-{i}", "cub:" + k.strip(), val) for i, (k, val) in enumerate(cub.items())]
    return out


def _raw_json_cases() -> list[tuple[str, object]]:
    """(id, function good JSON text → bad bytes)."""
    def sub(old, new):
        return lambda t: t.replace(old, new, 1).encode()
    return [
        ("raw-deep-extra", lambda t: t.replace("{", '{"extra": ' + "[" * 50_000 + "]" * 50_000 + ",", 1).encode()),
        ("raw-deep-100", lambda t: t.replace("{", '{"extra": {"a": ' + "[" * 100 + "]" * 100 + "},", 1).encode()),
        ("raw-nan", sub('"test_error": 1.5', '"test_error": NaN')),
        ("raw-infinity", sub('"test_error": 1.5', '"test_error": -Infinity')),
        ("raw-1e999", sub('"test_error": 1.5', '"test_error": 1e999')),
        ("raw-huge-int", sub('"steps": 10', '"steps": ' + "9" * 5000)),
        ("raw-41-digit-int", sub('"steps": 10', '"steps": ' + "9" * 41)),
        ("raw-not-json", lambda t: b"{not json"),
        ("raw-empty", lambda t: b""),
        ("raw-list", lambda t: b"[]"),
        ("raw-number", lambda t: b"5"),
        ("raw-string", lambda t: b'"meta"'),
        ("raw-null", lambda t: b"null"),
        ("raw-latin1", lambda t: t.replace('"mnist-r"', '"mnist-\xe9"', 1).encode("latin-1")),
        ("raw-utf16", lambda t: t.encode("utf-16")),
        ("raw-bom", lambda t: b"\xef\xbb\xbf" + t.encode()),
        ("raw-truncated", lambda t: t.encode()[: len(t) // 2]),
        ("raw-noise-4k", lambda t: t.encode() + random.Random(SEED).randbytes(4096)),
        ("raw-5MB", lambda t: t.replace("{", '{"notes": "' + "x" * (5 * 1024 * 1024) + '",', 1).encode()),
    ]


def _resave_cases() -> list[tuple[str, object]]:
    """(id, function state_dict → (tensors, header metadata changes)) for weights rewritten with a
    valid file structure (and, in the 'signed' variant, a matching weights_sha256)."""
    def nan_all(sd):
        return {k: torch.full_like(v, float("nan")) for k, v in sd.items()}, {}

    def one(value):
        def f(sd):
            sd = dict(sd)
            w = sd["classifier.1.weight"].clone()
            w.view(-1)[17] = value
            sd["classifier.1.weight"] = w
            return sd, {}
        return f

    def dtype(dt):
        return lambda sd: ({k: (v * 100).to(dt) for k, v in sd.items()}, {})

    def key_change(fn):
        return lambda sd: (fn(dict(sd)), {})

    return [
        ("nan-all", nan_all), ("nan-one", one(float("nan"))), ("inf-one", one(float("inf"))),
        ("ninf-one", one(float("-inf"))),
        ("float64-overflow", lambda sd: ({**sd, "classifier.1.weight": torch.full(sd["classifier.1.weight"].shape, 1e300,
                                                                                   dtype=torch.float64)}, {})),
        ("f16-nan", lambda sd: ({**sd, "classifier.1.bias": torch.full((8,), float("nan"), dtype=torch.float16)}, {})),
        ("int32", dtype(torch.int32)), ("int8", dtype(torch.int8)), ("uint8", dtype(torch.uint8)),
        ("bool", dtype(torch.bool)), ("int64", dtype(torch.int64)),
        ("missing-tensor", key_change(lambda sd: {k: v for k, v in sd.items() if k != "classifier.5.bias"})),
        ("extra-tensor", key_change(lambda sd: {**sd, "evil": torch.zeros(3)})),
        ("renamed-tensor", key_change(lambda sd: {("x" + k if k.endswith("5.bias") else k): v for k, v in sd.items()})),
        ("wrong-shape", key_change(lambda sd: {**sd, "classifier.5.bias": torch.zeros(11)})),
        ("transposed", key_change(lambda sd: {**sd, "classifier.1.weight": sd["classifier.1.weight"].t().contiguous()})),
        ("kind-train", lambda sd: (sd, {"kind": "train"})),
        ("format-foreign", lambda sd: (sd, {"format": "someone-else"})),
        ("no-format", lambda sd: (sd, {"format": None})),
        ("cid-other", lambda sd: (sd, {"checkpoint_id": "f" * 32})),
    ]


def _byte_cases(size: int, header_end: int) -> list[tuple[str, object]]:
    """(id, function weights bytes → bad bytes), positions drawn with a fixed seed."""
    rng = random.Random(SEED)
    out = []
    for i in range(30):  # bit flips: a third in the header, the rest in the data
        pos = rng.randrange(header_end) if i < 10 else rng.randrange(header_end, size)
        bit = rng.randrange(8)
        out.append((f"bitflip-{pos}-{bit}", lambda b, pos=pos, bit=bit: b[:pos] + bytes([b[pos] ^ (1 << bit)]) + b[pos + 1:]))
    cuts = [0, 4, 7, 8, 9, header_end - 1, header_end, size - 1] + [rng.randrange(header_end, size) for _ in range(3)]
    out += [(f"truncate-{n}", lambda b, n=n: b[:n]) for n in cuts]
    tail = rng.randbytes(4096)
    out += [("append-1", lambda b: b + b"\0"), ("append-noise-4k", lambda b: b + tail)]
    for _ in range(5):
        off = rng.randrange(0, size - 4096)
        noise = random.Random(off).randbytes(4096)
        out.append((f"noise-4k-at-{off}", lambda b, off=off, noise=noise: b[:off] + noise + b[off + 4096:]))
    out += [
        ("all-noise", lambda b: random.Random(1).randbytes(len(b))),
        ("zeros", lambda b: bytes(len(b))),
        ("header-len-2^63", lambda b: struct.pack("<Q", 2 ** 63) + b[8:]),
        ("header-len-size", lambda b: struct.pack("<Q", len(b)) + b[8:]),
        ("header-len-minus-1", lambda b: struct.pack("<Q", header_end - 9) + b[8:]),
        ("pickle", lambda b: b"\x80\x02" + b[2:]),
        ("zip", lambda b: b"PK\x03\x04" + bytes(60)),
        ("deep-header", lambda b: _with_header(b, "[" * 50_000 + "]" * 50_000)),
        ("list-header", lambda b: _with_header(b, "[1, 2]")),
        ("huge-shape-header", lambda b: _with_header(b, json.dumps({"w": {"dtype": "F32", "shape": [10 ** 12, 10 ** 12],
                                                                        "data_offsets": [0, 4]}}))),
        ("bad-dtype-header", lambda b: _with_header(b, json.dumps({"w": {"dtype": "X99", "shape": [1],
                                                                        "data_offsets": [0, 4]}}))),
        ("metadata-not-dict", lambda b: _with_header(b, json.dumps({**_header(b), "__metadata__": [1]}))),
        ("metadata-int-values", lambda b: _with_header(b, json.dumps({**_header(b), "__metadata__": {"format": 1}}))),
    ]
    return out


def _header(b: bytes) -> dict:
    (n,) = struct.unpack("<Q", b[:8])
    return json.loads(b[8:8 + n])


def _with_header(b: bytes, header: str) -> bytes:
    (n,) = struct.unpack("<Q", b[:8])
    h = header.encode()
    return struct.pack("<Q", len(h)) + h + b[8 + n:]


def _cases(base: Path) -> list[tuple[str, str, object]]:
    w = _files(base / NAME)["weights"].read_bytes()
    (n,) = struct.unpack("<Q", w[:8])
    out = [(cid, "json", (key, val)) for cid, key, val in _json_value_cases()]
    out += [(cid, "raw", fn) for cid, fn in _raw_json_cases()]
    for cid, fn in _byte_cases(len(w), 8 + n):
        out.append((cid, "bytes", fn))
        if not cid.startswith(("bitflip-", "noise-4k-at-")):  # unsigned: the structure checks alone catch these
            out.append((cid + "-unsigned", "bytes-unsigned", fn))
    for cid, fn in _resave_cases():
        out += [(cid + "-signed", "resave", fn), (cid + "-unsigned", "resave-unsigned", fn)]
    out += [("weights-8GB-sparse", "sparse", 8 * 1024 ** 3), ("weights-over-limit", "limit", None),
            ("json-5MB-sparse", "sparse-json", 5 * 1024 * 1024), ("weights-missing", "missing", "weights"),
            ("json-missing", "missing", "meta"), ("weights-is-dir", "missing", "dir")]
    return out


_BASE_CASES: list | None = None


def _case_ids() -> list[str]:
    """The case ids (computed from a throwaway checkpoint, so that parametrize knows them)."""
    import tempfile
    global _BASE_CASES
    with tempfile.TemporaryDirectory() as d:
        save_checkpoint(Path(d) / NAME, _tiny(), _meta(), _state(), train_info={"step": 10})
        _BASE_CASES = _cases(Path(d))
    return [c[0] for c in _BASE_CASES]


CASE_IDS = _case_ids()


def test_the_generator_makes_enough_distinct_cases():
    assert len(CASE_IDS) >= 120 and len(set(CASE_IDS)) == len(CASE_IDS)


def _apply(stem: Path, kind: str, payload, monkeypatch) -> None:
    f = _files(stem)
    meta = json.loads(f["meta"].read_text())
    if kind == "json":
        key, val = payload
        if key.startswith("-"):
            del meta[key[1:]]
        elif key.startswith("cub:"):
            meta.update(model="cub-2st", transform="attention", classes=list(range(1, 11)))
            meta[key[4:]] = val
        else:
            meta[key] = val
        if val is _DEEP:
            meta[key] = "DEEP"
            text = json.dumps(meta).replace('"DEEP"', "[" * 50_000 + "]" * 50_000)
            f["meta"].write_text(text)
        else:
            _set_json(stem, meta)
    elif kind == "raw":
        f["meta"].write_bytes(payload(json.dumps(meta, indent=2)))
    elif kind in ("bytes", "bytes-unsigned"):
        f["weights"].write_bytes(payload(f["weights"].read_bytes()))
        if kind == "bytes-unsigned":
            del meta["weights_sha256"]
            _set_json(stem, meta)
    elif kind in ("resave", "resave-unsigned"):
        tensors, info = C.read_safetensors(f["weights"])
        tensors, changes = payload(tensors)
        info = {k: v for k, v in {**info, **changes}.items() if v is not None}
        data = st_save(tensors, metadata=info)
        f["weights"].write_bytes(data)
        if kind == "resave":
            meta["weights_sha256"] = hashlib.sha256(data).hexdigest()
        else:
            del meta["weights_sha256"]
        _set_json(stem, meta)
    elif kind == "sparse":
        with open(f["weights"], "r+b") as fh:
            fh.truncate(payload)
    elif kind == "sparse-json":
        with open(f["meta"], "r+b") as fh:
            fh.truncate(payload)
    elif kind == "limit":
        monkeypatch.setattr(C, "MAX_WEIGHTS_BYTES", f["weights"].stat().st_size - 1)
    elif kind == "missing":
        if payload == "dir":
            f["weights"].unlink()
            f["weights"].mkdir()
        else:
            f[payload].unlink()
    else:  # pragma: no cover
        raise AssertionError(kind)


@pytest.mark.parametrize("case", CASE_IDS)
def test_corrupt_checkpoint_raises_checkpoint_error(case, base, tmp_path, monkeypatch):
    kind, payload = {c[0]: (c[1], c[2]) for c in _BASE_CASES}[case]
    stem = _copy(base, tmp_path)
    _apply(stem, kind, payload, monkeypatch)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError) as e:  # any other exception type fails the test
        load_model(stem)
    assert time.perf_counter() - t0 < 5, "refusing must be quick (nothing big built or read)"
    assert len(str(e.value)) < 2000, "messages stay readable (no echo of huge values)"


# --------------------------------------------------------------------------- what must still work

def test_good_checkpoint_is_verified_and_legacy_one_loads_unverified(base, tmp_path):
    stem = _copy(base, tmp_path)
    m, meta = load_model(stem)
    assert meta["integrity"] == C.INTEGRITY_VERIFIED
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(m(x), _tiny()(x)) and torch.isfinite(m(x)).all()
    raw = json.loads(_files(stem)["meta"].read_text())
    assert len(raw["weights_sha256"]) == 64 and len(raw["train_sha256"]) == 64 and "integrity" not in raw
    del raw["weights_sha256"]
    _set_json(stem, raw)
    m2, meta2 = load_model(stem)
    assert meta2["integrity"] == C.INTEGRITY_UNVERIFIED and torch.equal(m2(x), m(x))
    # re-saving a loaded meta works: integrity is dropped, the hash recomputed
    save_checkpoint(stem, m2, meta2)
    assert load_model(stem)[1]["integrity"] == C.INTEGRITY_VERIFIED


def test_hostile_sizes_allocate_nothing(base, tmp_path):
    """input_size 1024 with a 16384-wide FCN describes 17 G weights: refused from the header."""
    stem = _copy(base, tmp_path)
    meta = json.loads(_files(stem)["meta"].read_text())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for changes in ({"input_size": 1024, "arch": {"width": 16384}}, {"num_classes": 10_000, "classes": None},
                    {"arch": {"in_channels": 64, "width": 16384}}, {"input_size": 1024}):
        _set_json(stem, {**meta, **changes})
        t0 = time.perf_counter()
        with pytest.raises(CheckpointError):
            load_model(stem)
        assert time.perf_counter() - t0 < 2
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 300_000


def test_train_state_corruption(base, tmp_path):
    stem = _copy(base, tmp_path)
    f = _files(stem)
    good = f["train"].read_bytes()
    meta = load_meta(stem)
    tensors, info = load_train_state(stem, meta)
    assert info["step"] == "10" and set(tensors) == {"optim/0/momentum_buffer", "rng/torch_cpu"}
    flipped = bytearray(good)
    flipped[len(good) - 100] ^= 4
    for bad in (bytes(flipped), good[:-10], good + b"x"):
        f["train"].write_bytes(bad)
        with pytest.raises(CheckpointError):
            load_train_state(stem, meta)
    t, info = dict(tensors), dict(info)
    t["optim/0/momentum_buffer"] = torch.full((8, 784), float("nan"))
    data = st_save(t, metadata=info)
    f["train"].write_bytes(data)
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_train_state(stem, meta)
    with pytest.raises(CheckpointError, match="NaN"):
        load_train_state(stem, {**meta, "train_sha256": hashlib.sha256(data).hexdigest()})
    f["train"].write_bytes(f["weights"].read_bytes())
    with pytest.raises(CheckpointError):
        load_train_state(stem, meta)


def test_save_refuses_what_it_could_not_read_back(tmp_path):
    m = _tiny()
    deep: list = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(CheckpointError, match="nested"):
        save_checkpoint(tmp_path / "a", m, _meta(extra={"d": deep}))
    with pytest.raises(CheckpointError, match="limit"):
        save_checkpoint(tmp_path / "b", m, _meta(notes="x" * (C.MAX_META_BYTES + 1)))
    with pytest.raises(CheckpointError):
        save_checkpoint(tmp_path / "c", m, _meta(num_classes=10 ** 9))
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- crash safety

def _state_on_disk(stem: Path) -> int:
    """The steps of the one complete checkpoint on disk (asserts JSON, weights, train state agree)."""
    meta = load_meta(stem)
    model, meta2 = load_model(stem)
    assert meta2["integrity"] == C.INTEGRITY_VERIFIED and meta2["checkpoint_id"] == meta["checkpoint_id"]
    _, info = load_train_state(stem, meta)
    assert int(info["step"]) == meta["steps"]
    return meta["steps"]


def _save(stem: Path, steps: int) -> None:
    save_checkpoint(stem, _tiny(steps), _meta(steps=steps), _state(steps), train_info={"step": steps})


POINTS = ["staged", "journal", f"replaced {NAME}.train.safetensors", f"replaced {NAME}.safetensors",
          f"replaced {NAME}.json", "committed"]


@pytest.mark.parametrize("point", POINTS)
def test_exception_at_each_commit_step(point, tmp_path, monkeypatch):
    stem = tmp_path / NAME
    _save(stem, 1)

    def boom(p):
        if p == point:
            raise RuntimeError(f"injected at {p}")

    monkeypatch.setattr(C.commit, "_crash_point", boom)
    with pytest.raises(RuntimeError, match="injected"):
        _save(stem, 2)
    monkeypatch.undo()
    assert _state_on_disk(stem) == (1 if point == "staged" else 2)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_os_replace_failing_at_each_call(k, tmp_path, monkeypatch):
    """os.replace calls of one commit: 1 the journal, 2 train state, 3 weights, 4 JSON."""
    stem = tmp_path / NAME
    _save(stem, 1)
    real, calls = os.replace, []

    def failing(src, dst):
        calls.append(dst)
        if len(calls) == k:
            raise OSError(5, "Input/output error (injected)")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="injected"):
        _save(stem, 2)
    monkeypatch.undo()
    assert _state_on_disk(stem) == (1 if k == 1 else 2)
    assert _leftovers(tmp_path) == []


def _fork_and_die(stem: Path, steps: int, point: str) -> None:
    """Save in a forked child that dies hard (os._exit: no cleanup at all) at ``point``."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            signal.alarm(20)

            def die(p):
                if p == point:
                    os._exit(0)

            C.commit._crash_point = die
            if point == "writing":  # killed half-way through writing a temporary file
                os.fsync = lambda fd: os._exit(0)
            _save(stem, steps)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("point", ["writing"] + POINTS)
def test_hard_kill_at_each_commit_step(point, tmp_path):
    stem = tmp_path / NAME
    _save(stem, 1)
    _fork_and_die(stem, 2, point)
    assert _leftovers(tmp_path), "the kill left the commit's files"
    assert _state_on_disk(stem) == (1 if point in ("writing", "staged") else 2)
    assert _leftovers(tmp_path) == []
    _save(stem, 3)  # and the next save works as usual
    assert _state_on_disk(stem) == 3 and _leftovers(tmp_path) == []


def test_a_reader_finishing_a_commit_does_not_disturb_the_writer(tmp_path, monkeypatch):
    stem = tmp_path / NAME
    _save(stem, 1)
    seen = []

    def reader(p):  # another thread/process runs recover() in the middle of the commit
        if p in ("journal", f"replaced {NAME}.safetensors"):
            seen.append(C.recover(stem))

    monkeypatch.setattr(C.commit, "_crash_point", reader)
    _save(stem, 2)
    monkeypatch.undo()
    assert seen[0] and "finished the interrupted commit" in seen[0][0]
    assert _state_on_disk(stem) == 2 and _leftovers(tmp_path) == []


def test_live_writers_temporaries_are_kept_dead_ones_removed(tmp_path):
    stem = tmp_path / NAME
    _save(stem, 1)
    from stn_core import fileio
    live = fileio.write_tmp_beside(_files(stem)["weights"], b"in progress")  # this process: alive
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()
    dead = tmp_path / f".{NAME}.safetensors.abcd1234.p{dead_pid}h{fileio._HOST}.tmp"
    other_host = tmp_path / f".{NAME}.json.abcd1234.p{dead_pid}h{'0' * 6 if fileio._HOST != '0' * 6 else '1' * 6}.tmp"
    old_style, new_old_style = tmp_path / f".{NAME}.json.zz99yy88.tmp", tmp_path / f".{NAME}.json.qq11ww22.tmp"
    unrelated = tmp_path / ".other.json.abcd1234.tmp"
    for p in (dead, other_host, old_style, new_old_style, unrelated):
        p.write_bytes(b"x")
    os.utime(old_style, (time.time() - 2 * fileio.LEGACY_TMP_MAX_AGE,) * 2)
    os.utime(unrelated, (time.time() - 2 * fileio.LEGACY_TMP_MAX_AGE,) * 2)
    load_meta(stem)
    assert live.exists() and other_host.exists() and new_old_style.exists() and unrelated.exists()
    assert not dead.exists() and not old_style.exists()


def test_old_protocol_interrupted_commit_is_finished(tmp_path):
    """The old save_checkpoint replaced train state, weights, JSON one by one with nothing to
    recover from: a kill after the train state left it beside the old JSON (--resume refused)."""
    stem = tmp_path / NAME
    _save(stem, 1)
    other = tmp_path / "new"
    other.mkdir()
    _save(other / NAME, 2)
    f, g = _files(stem), _files(other / NAME)
    new_meta = json.loads(g["meta"].read_text())
    del new_meta["weights_sha256"], new_meta["train_sha256"]  # the old code wrote no hashes
    shutil.copy(g["train"], f["train"])  # replaced before the kill
    shutil.copy(g["weights"], tmp_path / f".{NAME}.safetensors.k3j4h5g6.tmp")  # old-style temporaries
    (tmp_path / f".{NAME}.json.a1b2c3d4.tmp").write_text(json.dumps(new_meta))
    shutil.rmtree(other)
    assert load_meta(stem)["steps"] == 2
    model, meta = load_model(stem)
    assert meta["integrity"] == C.INTEGRITY_UNVERIFIED
    _, info = load_train_state(stem, meta)
    assert info["step"] == "2" and _leftovers(tmp_path) == []


def test_an_old_leftover_temporary_never_rolls_back(tmp_path):
    stem = tmp_path / NAME
    _save(stem, 1)
    old = {k: p.read_bytes() for k, p in _files(stem).items()}
    _save(stem, 2)
    (tmp_path / f".{NAME}.json.a1b2c3d4.tmp").write_bytes(old["meta"])
    (tmp_path / f".{NAME}.safetensors.k3j4h5g6.tmp").write_bytes(old["weights"])
    assert _state_on_disk(stem) == 2


SAVER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, sys.argv[2])
    torch.set_num_threads(1)
    from stn_core.checkpoints import save_checkpoint
    from stn_core.models import build_model
    m = build_model("fcn", None, 28, 10, width=8)
    step = int(sys.argv[3])
    while True:
        step += 1
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.01)
        save_checkpoint(sys.argv[1], m, {"task": "mnist-r", "steps": step},
                        {"optim/0/momentum_buffer": torch.full((8, 784), float(step))}, train_info={"step": step})
        if step == int(sys.argv[3]) + 1:
            print("ready", flush=True)
""")


def test_sigkill_while_saving_in_a_loop(tmp_path):
    rng = random.Random(SEED)
    stem = tmp_path / NAME
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    last = 0
    for _ in range(3):  # bounded: three interpreter starts, at most 0.4 s of saving each
        p = subprocess.Popen([sys.executable, str(script), str(stem), str(ROOT), str(last)], stdout=subprocess.PIPE,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            assert p.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.0, 0.4))
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        meta = load_meta(stem)
        model, meta = load_model(stem)
        _, info = load_train_state(stem, meta)
        assert int(info["step"]) == meta["steps"] > last and meta["integrity"] == C.INTEGRITY_VERIFIED
        assert torch.isfinite(model(torch.rand(2, 1, 28, 28))).all()
        assert _leftovers(tmp_path) == [], "recovery removes the killed writer's temporaries"
        last = meta["steps"]


def test_hostile_journal_moves_nothing(tmp_path):
    """A journal is data too: one naming files outside the checkpoint's own is ignored and removed."""
    stem = tmp_path / NAME
    _save(stem, 1)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    bad = [{"format": "stn-lab-commit", "replace": [["victim.txt", f"{NAME}.json"]]},
           {"format": "stn-lab-commit", "replace": [[f".{NAME}.json.abcd1234.tmp", "../escape.json"]]},
           {"format": "stn-lab-commit", "replace": "x"}, [1] * 10]
    for i, record in enumerate(bad):
        (tmp_path / f".{NAME}.commit-{i:032x}.json").write_text(json.dumps(record))
    (tmp_path / f".{NAME}.commit-{'f' * 32}.json").write_text("[" * 50_000)
    done = C.recover(stem)
    assert sum("unreadable journal" in d for d in done) == 5
    assert victim.read_text() == "keep me" and _state_on_disk(stem) == 1 and _leftovers(tmp_path) == []


def test_load_weights_for_resume_checks_id_hash_and_values(base, tmp_path):
    stem = _copy(base, tmp_path)
    meta = load_meta(stem)
    w = C.load_weights(stem, meta)
    assert set(w) == set(_tiny().state_dict())
    with pytest.raises(CheckpointError, match="different checkpoints"):
        C.load_weights(stem, {**meta, "checkpoint_id": "e" * 32})
    f = _files(stem)["weights"]
    b = bytearray(f.read_bytes())
    b[-3] ^= 1
    f.write_bytes(bytes(b))
    with pytest.raises(CheckpointError, match="SHA-256"):
        C.load_weights(stem, meta)


def test_hash_script_adds_the_hash_only_to_matching_files(base, tmp_path):
    hc = load_script("hash_checkpoints")
    stem = _copy(base, tmp_path)
    f = _files(stem)
    meta = json.loads(f["meta"].read_text())
    del meta["weights_sha256"]
    legacy = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    f["meta"].write_text(legacy)
    assert hc.main(["--checkpoints", str(tmp_path), "--check"]) == 0 and f["meta"].read_text() == legacy
    assert hc.main(["--checkpoints", str(tmp_path)]) == 0
    new = json.loads(f["meta"].read_text())
    assert {k for k in new if new[k] != meta.get(k)} == {"weights_sha256"}
    assert load_model(stem)[1]["integrity"] == C.INTEGRITY_VERIFIED
    assert hc.main(["--checkpoints", str(tmp_path)]) == 0  # already hashed: verified, unchanged
    f["meta"].write_text(json.dumps({**meta, "checkpoint_id": "d" * 32}))  # JSON of another checkpoint
    before = f["meta"].read_bytes()
    assert hc.main(["--checkpoints", str(tmp_path)]) == 1 and f["meta"].read_bytes() == before
