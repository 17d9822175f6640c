"""MNIST idx parsing, file checks, import (local folder, file:// and a local HTTP server), CLI."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import shutil
import socket
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from stn_core.data import DataError, mnist
from stn_core.data.__main__ import main as cli_main
from stn_core.data.mnist import import_mnist, load_mnist, parse_idx, read_idx, write_idx

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHARED_MNIST = SHARED / "mnist"
needs_shared = pytest.mark.skipif(
    not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"real MNIST copy not present at {SHARED_MNIST}",
)
ALL_NAMES = [n for pair in mnist.FILES.values() for n in pair]


def _raw_idx(arr: np.ndarray, code: int) -> bytes:
    """Independent idx writer (header by hand) for cross-checking write_idx/parse_idx."""
    hdr = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return hdr + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def _fake_mnist(folder: Path, n_train: int = 12, n_test: int = 7, compress: bool = True, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        img_name, lab_name = mnist.FILES[split]
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labs = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(folder / (img_name if compress else img_name[:-3]), imgs, compress=compress)
        write_idx(folder / (lab_name if compress else lab_name[:-3]), labs, compress=compress)


@pytest.fixture
def fake_official(tmp_path, monkeypatch):
    """A folder of synthetic MNIST .gz files, and MD5_GZ / COUNTS patched to accept them."""
    src = tmp_path / "src"
    _fake_mnist(src)
    md5 = {n: hashlib.md5((src / n).read_bytes()).hexdigest() for n in ALL_NAMES}
    monkeypatch.setattr(mnist, "MD5_GZ", md5)
    monkeypatch.setattr(mnist, "COUNTS", {"train": 12, "test": 7})
    return src


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    rng = np.random.default_rng(1)
    for arr in (
        rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, 9).astype(np.uint8),
        rng.integers(-3000, 3000, (4, 3)).astype(np.int16),
        rng.normal(size=(2, 3, 4)).astype(np.float32),
    ):
        p = tmp_path / f"a{arr.dtype}{arr.ndim}.idx"
        write_idx(p, arr, compress=compress)
        assert (p.read_bytes()[:2] == b"\x1f\x8b") == compress
        back = read_idx(p)
        assert back.dtype == arr.dtype and back.shape == arr.shape
        np.testing.assert_array_equal(back, arr)


def test_parse_matches_hand_written_header():
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4) * 300 - 2000
    out = parse_idx(_raw_idx(arr, 0x0B))
    np.testing.assert_array_equal(out, arr)
    u8 = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert parse_idx(_raw_idx(u8, 0x08), expected_magic=0x802).tolist() == u8.tolist()


def test_truncated_raw_and_gz(tmp_path):
    arr = np.zeros((3, 28, 28), np.uint8)
    raw = _raw_idx(arr, 0x08)
    p = tmp_path / "short-idx3-ubyte"
    p.write_bytes(raw[:-10])
    with pytest.raises(DataError, match="truncated") as e:
        read_idx(p)
    assert str(p) in str(e.value)
    p.write_bytes(raw[:6])
    with pytest.raises(DataError, match="truncated"):
        read_idx(p)
    g = tmp_path / "short.gz"
    g.write_bytes(gzip.compress(raw)[:-12])
    with pytest.raises(DataError, match="truncated or corrupt gzip") as e:
        read_idx(g)
    assert "short.gz" in str(e.value)
    p.write_bytes(raw + b"\0\0")
    with pytest.raises(DataError, match="trailing"):
        read_idx(p)


def test_wrong_magic(tmp_path):
    p = tmp_path / "bad-magic"
    p.write_bytes(b"\x12\x34\x08\x03" + b"\0" * 100)
    with pytest.raises(DataError, match="magic") as e:
        read_idx(p)
    assert "bad-magic" in str(e.value)
    labels = tmp_path / "labels"
    write_idx(labels, np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="expected 0x00000803"):
        read_idx(labels, mnist.MAGIC_IMAGES)
    with pytest.raises(DataError, match="magic"):
        parse_idx(b"PK\x03\x04hello")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "nope.gz")


# ----------------------------------------------------------------------------- load


@pytest.mark.parametrize("compress", [True, False])
def test_load_synthetic(tmp_path, compress):
    _fake_mnist(tmp_path / "m", compress=compress)
    x, y = load_mnist("train", root=tmp_path / "m", verify=False)
    assert x.shape == (12, 28, 28) and x.dtype == np.uint8
    assert y.shape == (12,) and y.dtype == np.int64
    x2, _ = load_mnist("test", root=tmp_path / "m", verify=False)
    assert x2.shape == (7, 28, 28)


def test_load_data_dir_with_mnist_subfolder(tmp_path):
    _fake_mnist(tmp_path / "mnist")
    x, y = load_mnist("test", root=tmp_path, verify=False)
    assert x.shape == (7, 28, 28) and y.shape == (7,)


def test_md5_mismatch_on_load(tmp_path):
    _fake_mnist(tmp_path)
    with pytest.raises(DataError, match="md5") as e:
        load_mnist("test", root=tmp_path)
    assert "t10k-images-idx3-ubyte.gz" in str(e.value)


def test_image_label_count_mismatch(tmp_path):
    _fake_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8), compress=True)
    with pytest.raises(DataError, match="7 images but"):
        load_mnist("test", root=tmp_path, verify=False)


def test_not_found_names_import_command(tmp_path, monkeypatch):
    monkeypatch.setenv("STN_LAB_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(mnist, "shared_data_dir", lambda: tmp_path / "no-shared")
    with pytest.raises(DataError, match=r"python -m stn_core\.data mnist --from"):
        load_mnist("test")
    with pytest.raises(ValueError, match="split"):
        load_mnist("valid")


def test_cache_dir_is_searched_first(tmp_path, monkeypatch, fake_official):
    monkeypatch.setenv("STN_LAB_DATA", str(tmp_path / "cache"))
    import_mnist(fake_official)
    x, y = load_mnist("train")
    assert x.shape == (12, 28, 28)


# ----------------------------------------------------------------------------- import


def test_import_from_local_folder(tmp_path, fake_official):
    out = import_mnist(fake_official, dest=tmp_path / "data")
    assert out == tmp_path / "data" / "mnist"
    for n in ALL_NAMES:
        assert (out / n).read_bytes() == (fake_official / n).read_bytes()
    x, y = load_mnist("train", root=out)  # verify=True against the patched md5s
    assert x.shape == (12, 28, 28)
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))
    msgs = []
    import_mnist(fake_official, dest=tmp_path / "data", progress=msgs.append)
    assert all("already present" in m for m in msgs) and len(msgs) == 4


def test_import_rejects_md5_mismatch_and_missing(tmp_path, fake_official):
    bad = tmp_path / "bad"
    shutil.copytree(fake_official, bad)
    data = bytearray((bad / "t10k-labels-idx1-ubyte.gz").read_bytes())
    data[-1] ^= 0xFF
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(data))
    dest = tmp_path / "data"
    with pytest.raises(DataError, match="md5") as e:
        import_mnist(bad, dest=dest)
    assert "t10k-labels-idx1-ubyte.gz" in str(e.value)
    assert not (dest / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list((dest / "mnist").glob(".*tmp"))
    (bad / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing"):
        import_mnist(bad, dest=dest)
    with pytest.raises(DataError, match="not a folder"):
        import_mnist(tmp_path / "nowhere", dest=dest)


def test_import_file_url(tmp_path, fake_official):
    out = import_mnist(fake_official.as_uri(), dest=tmp_path / "d")
    assert sorted(p.name for p in out.iterdir()) == sorted(ALL_NAMES)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):  # keep pytest output clean
        pass


@pytest.fixture
def http_root(tmp_path):
    """Serve tmp_path/www on 127.0.0.1:<free port>; yields (root folder, base url)."""
    www = tmp_path / "www"
    www.mkdir()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(www)))
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield www, f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(timeout=5)


def test_import_over_http(tmp_path, fake_official, http_root):
    www, base = http_root
    shutil.copytree(fake_official, www / "mnist")
    msgs = []
    out = import_mnist(base + "/mnist", dest=tmp_path / "d", progress=msgs.append, timeout=5)  # no trailing slash
    for n in ALL_NAMES:
        assert (out / n).read_bytes() == (fake_official / n).read_bytes()
    assert any("downloading" in m for m in msgs)
    x, _ = load_mnist("test", root=out)
    assert x.shape == (7, 28, 28)


def test_http_errors(tmp_path, fake_official, http_root):
    www, base = http_root
    with pytest.raises(DataError, match="HTTP error 404"):
        import_mnist(base + "/missing/", dest=tmp_path / "d", timeout=5)
    # a server file with the wrong content -> md5 error, nothing left behind
    shutil.copytree(fake_official, www / "m")
    (www / "m" / "train-images-idx3-ubyte.gz").write_bytes(b"not the file")
    with pytest.raises(DataError, match="md5"):
        import_mnist(base + "/m/", dest=tmp_path / "e", timeout=5)
    assert list((tmp_path / "e" / "mnist").iterdir()) == []


def test_connection_refused_is_a_clear_error(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(DataError, match="could not download"):
        import_mnist(f"http://127.0.0.1:{port}/", dest=tmp_path, timeout=3)


# ----------------------------------------------------------------------------- CLI


def test_cli_ok_and_errors(tmp_path, fake_official, capsys):
    assert cli_main(["mnist", "--from", str(fake_official), "--dest", str(tmp_path / "d")]) == 0
    out, err = capsys.readouterr()
    assert "MNIST ready" in out and "12 train + 7 test" in out and "md5 ok" in err
    assert cli_main(["mnist", "--from", str(tmp_path / "nope"), "--dest", str(tmp_path / "d")]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


# ----------------------------------------------------------------------------- real data


@needs_shared
def test_real_test_split():
    x, y = load_mnist("test", root=SHARED_MNIST)
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_shared
def test_real_train_split_found_without_root(tmp_path, monkeypatch):
    monkeypatch.setenv("STN_LAB_DATA", str(tmp_path))  # empty cache -> falls back to shared
    x, y = load_mnist("train")
    assert x.shape == (60000, 28, 28)
    assert np.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert y[:5].tolist() == [5, 0, 4, 1, 9]


@needs_shared
def test_real_import_from_shared_folder(tmp_path):
    out = import_mnist(SHARED_MNIST, dest=tmp_path)
    for n in ALL_NAMES:
        assert mnist.md5_file(out / n) == mnist.MD5_GZ[n]
