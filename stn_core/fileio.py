"""Atomic file writes: a temporary file beside the destination, then ``os.replace``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def tmp_path_beside(dest: Path) -> Path:
    """A new, empty temporary file in ``dest``'s folder (created if needed), mode 0644."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    os.chmod(name, 0o644)  # mkstemp creates 0600; data files should be world-readable like normal files
    return Path(name)


def write_tmp_beside(dest: Path, data: bytes) -> Path:
    """Write ``data`` fully (fsync'd) into a temporary file beside ``dest``; return its path.

    The caller moves it into place with ``os.replace`` (or deletes it)."""
    tmp = tmp_path_beside(dest)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_bytes(dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically: readers see the old file or the new one, never half."""
    tmp = write_tmp_beside(Path(dest), data)
    try:
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
