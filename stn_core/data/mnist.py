"""MNIST: parse the official idx files (.gz or raw), find them, import / download them.

Files live in ``<data dir>/mnist/`` (data dir = ``$STN_LAB_DATA`` or ``<repo>/data/cache``);
``load_mnist`` falls back to ``<repo>/../shared/data/mnist`` when present.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .common import (DataError, Progress, atomic_copy, atomic_write_bytes, default_data_dir, download, is_url, md5_file,
                     shared_data_dir)

#: Default download mirror (the official yann.lecun.com site now requires a login).
DEFAULT_MIRROR = "https://storage.googleapis.com/cvdf-datasets/mnist/"
#: Mirrors tried in order by ``import_mnist(src=None)``.
MIRRORS = (DEFAULT_MIRROR, "https://ossci-datasets.s3.amazonaws.com/mnist/")

#: split -> (images file, labels file), official .gz names.
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
#: Official md5 of each .gz file and of its decompressed content (raw idx file).
MD5_GZ = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MD5_RAW = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
COUNTS = {"train": 60000, "test": 10000}
MAGIC_IMAGES = 0x00000803  # ubyte, 3 dims
MAGIC_LABELS = 0x00000801  # ubyte, 1 dim

# idx type code -> big-endian numpy dtype
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_MAX_IDX_BYTES = 1 << 30  # refuse to decompress more than 1 GiB

IMPORT_HINT = "python -m stn_core.data mnist --from PATH_OR_URL"


def _read_bytes(path: Path) -> bytes:
    """File content, gunzipped when it starts with the gzip magic; DataError when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=f) as g:
                    data = g.read(_MAX_IDX_BYTES + 1)
            else:
                data = f.read(_MAX_IDX_BYTES + 1)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: truncated or corrupt gzip file ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if len(data) > _MAX_IDX_BYTES:
        raise DataError(f"{path}: more than {_MAX_IDX_BYTES} bytes of data, not an MNIST idx file")
    return data


def parse_idx(data: bytes, name: str = "<bytes>", expected_magic: Optional[int] = None) -> np.ndarray:
    """Parse the bytes of a raw idx file -> array in native byte order, shape = the idx dims.

    ``name`` is only used in error messages. Raises DataError on a bad magic number, a
    header/body size mismatch (truncated or trailing bytes)."""
    if len(data) < 4:
        raise DataError(f"{name}: only {len(data)} bytes, too short for an idx header (truncated?)")
    magic = struct.unpack(">I", data[:4])[0]
    zero, code, ndim = magic >> 16, (magic >> 8) & 0xFF, magic & 0xFF
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(f"{name}: bad magic number 0x{magic:08x}, not an idx file")
    if expected_magic is not None and magic != expected_magic:
        raise DataError(f"{name}: magic number is 0x{magic:08x}, expected 0x{expected_magic:08x}")
    hdr = 4 + 4 * ndim
    if len(data) < hdr:
        raise DataError(f"{name}: header truncated ({len(data)} bytes, need {hdr})")
    dims = struct.unpack(f">{ndim}I", data[4:hdr])
    dtype = _IDX_DTYPES[code]
    n = int(np.prod(dims, dtype=np.int64)) if dims else 0
    need = hdr + n * dtype.itemsize
    if len(data) < need:
        raise DataError(f"{name}: truncated, {len(data)} bytes but the header {tuple(dims)} needs {need}")
    if len(data) > need:
        raise DataError(f"{name}: {len(data) - need} unexpected trailing bytes after the data")
    arr = np.frombuffer(data, dtype=dtype, count=n, offset=hdr).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: Path, expected_magic: Optional[int] = None) -> np.ndarray:
    """Read an idx file (.gz or raw, detected from the content) -> ndarray."""
    return parse_idx(_read_bytes(path), str(path), expected_magic)


def write_idx(path: Path, arr: np.ndarray, compress: bool = False) -> None:
    """Write ``arr`` as an idx file (gzip-compressed if ``compress``); used for tests/tools."""
    arr = np.asarray(arr)
    codes = {v.newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    dt = arr.dtype.newbyteorder("=")
    if dt not in codes:
        raise ValueError(f"dtype {arr.dtype} has no idx type code")
    header = struct.pack(">I", (codes[dt] << 8) | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    body = header + arr.astype(_IDX_DTYPES[codes[dt]]).tobytes()
    if compress:
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as g:
            g.write(body)
        body = buf.getvalue()
    atomic_write_bytes(Path(path), body)


def _locate(folder: Path, gz_name: str) -> Optional[Path]:
    """The .gz file, or its raw (decompressed) twin, in ``folder``; None if neither exists."""
    for cand in (folder / gz_name, folder / gz_name[:-3]):
        if cand.is_file():
            return cand
    return None


def _check_md5(path: Path) -> None:
    expected = MD5_GZ.get(path.name) or MD5_RAW.get(path.name)
    if expected is None:
        return
    got = md5_file(path)
    if got != expected:
        raise DataError(
            f"{path}: md5 is {got}, expected the official {expected} (corrupt or modified file); "
            f"re-import it with: {IMPORT_HINT}"
        )


def candidate_dirs(root: Optional[Path] = None) -> list[Path]:
    """Folders searched for the MNIST files, in order."""
    if root is not None:
        root = Path(root)
        return [root, root / "mnist"]
    return [default_data_dir() / "mnist", shared_data_dir() / "mnist"]


def find_mnist_dir(split: str = "train", root: Optional[Path] = None) -> Path:
    """First folder that holds both files of ``split``; DataError (with the import command) otherwise."""
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    dirs = candidate_dirs(root)
    for d in dirs:
        if all(_locate(d, n) is not None for n in FILES[split]):
            return d
    where = ", ".join(str(d) for d in dirs)
    raise DataError(
        f"MNIST {split} files ({', '.join(FILES[split])}) not found in {where}. "
        f"Import them with: {IMPORT_HINT}"
    )


def load_mnist(split: str = "train", root: Optional[Path] = None, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST split -> (images uint8 (N,28,28), labels int64 (N,)).

    ``root``: folder holding the files (or a data dir with a ``mnist/`` subfolder); default:
    the cache dir, then ``<repo>/../shared/data/mnist``. ``verify`` checks the official md5
    (and N = 60000 / 10000); turn it off for custom idx files."""
    d = find_mnist_dir(split, root)
    img_path = _locate(d, FILES[split][0])
    lab_path = _locate(d, FILES[split][1])
    assert img_path is not None and lab_path is not None
    if verify:
        _check_md5(img_path)
        _check_md5(lab_path)
    images = read_idx(img_path, MAGIC_IMAGES)
    labels = read_idx(lab_path, MAGIC_LABELS)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{img_path}: images are {images.shape[1:]}, expected 28x28")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{img_path} has {images.shape[0]} images but {lab_path} has {labels.shape[0]} labels")
    if verify and images.shape[0] != COUNTS[split]:
        raise DataError(f"{img_path}: {images.shape[0]} images, the official {split} split has {COUNTS[split]}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{lab_path}: labels outside 0..9")
    return images.astype(np.uint8, copy=False), labels.astype(np.int64)


def import_mnist(
    src: Optional[str | os.PathLike] = None,
    dest: Optional[Path] = None,
    progress: Progress = None,
    timeout: float = 30.0,
) -> Path:
    """Copy or download the 4 official .gz files into ``<dest>/mnist`` and verify their md5.

    ``src``: a local folder holding the files (.gz, or raw files which are then copied raw),
    or an http(s)/file base URL (the file names are appended); None tries ``MIRRORS``.
    ``dest``: data dir (default ``$STN_LAB_DATA`` or ``<repo>/data/cache``). Files already
    present with the right md5 are kept. Returns the mnist folder."""
    out = Path(dest) if dest is not None else default_data_dir()
    out = out / "mnist"
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda s: None)
    names: Sequence[str] = [n for pair in FILES.values() for n in pair]

    if src is None:
        errors = []
        for url in MIRRORS:
            try:
                return import_mnist(url, dest, progress, timeout)
            except DataError as e:
                errors.append(str(e))
                say(f"mirror failed: {e}")
        raise DataError("MNIST download failed from every mirror: " + " | ".join(errors))

    if is_url(str(src)):
        base = str(src) if str(src).endswith("/") else str(src) + "/"
        for name in names:
            target = out / name
            if target.is_file() and md5_file(target) == MD5_GZ[name]:
                say(f"{name}: already present, md5 ok")
                continue
            say(f"{name}: downloading {base + name}")
            download(base + name, target, MD5_GZ[name], timeout=timeout, max_bytes=64 << 20, progress=progress)
            say(f"{name}: md5 ok")
        return out

    folder = Path(src).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (pass a folder holding the MNIST files or an http(s) URL)")
    for name in names:
        found = _locate(folder, name)
        if found is None:
            raise DataError(f"{folder}: {name} (or its raw version {name[:-3]}) is missing")
        expected = MD5_GZ[name] if found.name.endswith(".gz") else MD5_RAW[found.name]
        target = out / found.name
        if target.is_file() and md5_file(target) == expected:
            say(f"{found.name}: already present, md5 ok")
            continue
        say(f"{found.name}: copying from {folder}")
        atomic_copy(found, target, expected)
        say(f"{found.name}: md5 ok")
    return out
