"""Reading safetensors files within bounds: size from ``os.stat`` first, a depth-bounded header that must
describe exactly the file, the STN Lab format marker, finite values."""

from __future__ import annotations

import hashlib
import math
import os
import stat as _stat
import struct
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors.torch import load as st_load

from stn_core.checkpoints.bounds import (_DTYPE_BYTES, FORMAT, MAX_HEADER_BYTES, MAX_TENSORS, MAX_TRAIN_BYTES,
                                         CheckpointError, _is_int, _show, parse_json_bounded)

# --------------------------------------------------------------------------- safetensors files

class _STFile(NamedTuple):
    path: Path
    data: bytes
    header: dict
    info: dict
    sha256: str


def _header_size(header: dict, n: int, path: Path) -> int:
    """Checks the tensor entries of a safetensors header; returns the file size it describes."""
    if len(header) > MAX_TENSORS + 1:
        raise CheckpointError(f"{path}: {len(header)} tensors in the header (limit {MAX_TENSORS})")
    end = 0
    for name, e in header.items():
        if name == "__metadata__":
            continue
        ok = (isinstance(e, dict) and e.get("dtype") in _DTYPE_BYTES and isinstance(e.get("shape"), list)
              and len(e["shape"]) <= 16 and all(_is_int(s) and s >= 0 for s in e["shape"])
              and isinstance(e.get("data_offsets"), list) and len(e["data_offsets"]) == 2
              and all(_is_int(o) and o >= 0 for o in e["data_offsets"]))
        if not ok:
            raise CheckpointError(f"{path}: corrupt safetensors header entry for {_show(name)}: {_show(e)}")
        numel = math.prod(e["shape"])
        a, b = e["data_offsets"]
        if b < a or b - a != numel * _DTYPE_BYTES[e["dtype"]]:
            raise CheckpointError(f"{path}: corrupt safetensors header: {_show(name)} has shape {e['shape']} "
                                  f"({e['dtype']}) but {b - a} bytes")
        end = max(end, b)
    return 8 + n + end


def _read_st(path: str | os.PathLike, max_bytes: int) -> _STFile:
    """Read a safetensors file once, bounded: size from ``os.stat`` first, then the header
    (length, JSON, tensor entries describing exactly the file size), then the rest."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    if not _stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: file not found (not a regular file)")
    size = st.st_size
    if size > max_bytes:
        raise CheckpointError(f"{path}: {size:,} bytes is more than the {max_bytes:,}-byte limit; "
                              f"refusing to read it")
    what = f"{path}: not a safetensors file"
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{what} (only {len(head)} bytes; truncated?)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or n + 8 > size:
                hint = " (it looks like a zip/pickle file, e.g. a renamed .pt)" if head[:2] in (b"PK", b"\x80\x02") else ""
                raise CheckpointError(f"{what}: bad header length {n} for a {size}-byte file "
                                      f"(truncated or foreign){hint}")
            hbytes = f.read(n)
            header = parse_json_bounded(hbytes, what, "its header is not valid JSON (corrupt or foreign file)")
            if not isinstance(header, dict):
                raise CheckpointError(f"{what}: its header is not a JSON object")
            expected = _header_size(header, n, path)
            if expected != size:
                raise CheckpointError(f"{path}: the file has {size:,} bytes but its header describes "
                                      f"{expected:,} (truncated or corrupt)")
            rest = f.read(size - 8 - n)
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError(f"{path}: not enough memory to read {size:,} bytes") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    data = head + hbytes + rest
    if len(data) != size:
        raise CheckpointError(f"{path}: changed while being read (truncated?)")
    info = header.get("__metadata__") or {}
    if not isinstance(info, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in info.items()):
        raise CheckpointError(f"{path}: corrupt safetensors header metadata")
    return _STFile(path, data, header, info, hashlib.sha256(data).hexdigest())


def _tensors(f: _STFile) -> dict[str, torch.Tensor]:
    try:
        return st_load(f.data)
    except Exception as e:  # noqa: BLE001 - SafetensorError, TypeError (dtype), MemoryError, ...
        raise CheckpointError(f"{f.path}: corrupt or truncated safetensors file ({type(e).__name__}: "
                              f"{str(e)[:200]})") from None


def _check_format(f: _STFile) -> None:
    if f.info.get("format") != FORMAT:
        raise CheckpointError(f"{f.path}: a safetensors file, but not an STN Lab checkpoint "
                              f"(header format {_show(f.info.get('format'))})")


def _non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    return [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def read_safetensors(path: Path, max_bytes: int | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a safetensors file; CheckpointError if it is missing,
    too large (``max_bytes``, default :data:`MAX_TRAIN_BYTES`), truncated, corrupt or not an
    STN Lab safetensors file at all (e.g. a renamed pickle). No hash or NaN check: see
    :func:`load_weights` / :func:`load_train_state`."""
    f = _read_st(path, MAX_TRAIN_BYTES if max_bytes is None else max_bytes)
    tensors = _tensors(f)
    _check_format(f)
    return tensors, f.info
