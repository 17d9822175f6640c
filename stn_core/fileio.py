"""Atomic file writes: a temporary file beside the destination, then ``os.replace``.

Temporary files are named ``.<dest name>.<random>.<owner>.tmp`` where ``<owner>`` is
``p<pid>h<host tag>`` of the writing process. A process killed while writing cannot delete its
temporary file; :func:`remove_stale_tmps` (run by the checkpoint recovery) removes the temporaries of
a destination whose writer is gone, and never those of a live writer (another process, or a thread
of this one). Temporaries written before this naming (``.<dest name>.<random>.tmp``) count as stale
once they are :data:`LEGACY_TMP_MAX_AGE` seconds old.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

#: Untagged (old-style) temporaries older than this many seconds are removed as stale.
LEGACY_TMP_MAX_AGE = 3600.0


def _host_tag() -> str:
    try:
        host = socket.gethostname()
    except OSError:  # pragma: no cover - no hostname at all
        host = ""
    return hashlib.sha256(host.encode("utf-8", "replace")).hexdigest()[:6]


_HOST = _host_tag()


def owner_tag() -> str:
    """``p<pid>h<host tag>``: who writes a temporary file (the pid is read at call time: forks differ)."""
    return f"p{os.getpid()}h{_HOST}"


def tmp_path_beside(dest: Path) -> Path:
    """A new, empty temporary file in ``dest``'s folder (created if needed), mode 0644."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".{owner_tag()}.tmp", dir=dest.parent)
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


def fsync_dir(folder: Path) -> None:
    """Make renames/unlinks in ``folder`` durable (best effort: some filesystems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(dest: Path, data: bytes, durable: bool = False) -> None:
    """Write ``data`` to ``dest`` atomically: readers see the old file or the new one, never half.
    ``durable``: also fsync the folder, so the rename survives a power cut."""
    tmp = write_tmp_beside(Path(dest), data)
    try:
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(Path(dest).parent)


# --------------------------------------------------------------------------- stale temporaries

_TMP_RE = re.compile(r"^\.(?P<dest>.+?)\.[A-Za-z0-9_]{6,}(?:\.p(?P<pid>\d{1,10})h(?P<host>[0-9a-f]{6}))?\.tmp$")


def parse_tmp_name(name: str) -> tuple[str, int | None, str | None] | None:
    """``(destination name, pid, host tag)`` of a temporary file's name (pid/host None for an
    old-style name), or None if ``name`` is not one of our temporaries."""
    m = _TMP_RE.match(name)
    if not m:
        return None
    return m["dest"], (int(m["pid"]) if m["pid"] else None), m["host"]


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (another user's), or we cannot tell: keep its files
    return True


def tmp_is_stale(path: Path, now: float | None = None) -> bool:
    """Whether a temporary file's writer is certainly gone: a dead process on this host, or an
    old-style name at least :data:`LEGACY_TMP_MAX_AGE` seconds old. A live writer's (or one on
    another host's) temporaries are never stale."""
    parsed = parse_tmp_name(Path(path).name)
    if parsed is None:
        return False
    _, pid, host = parsed
    if pid is None:
        try:
            age = (time.time() if now is None else now) - os.stat(path).st_mtime
        except OSError:
            return False
        return age >= LEGACY_TMP_MAX_AGE
    if host != _HOST:
        return False
    return not _alive(pid)


def tmps_beside(folder: Path, dest_names: set[str] | frozenset[str] | Callable[[str], bool]) -> Iterator[Path]:
    """Our temporary files in ``folder`` whose destination name is in ``dest_names`` (or, given a
    function, for which it returns True)."""
    want = dest_names if callable(dest_names) else dest_names.__contains__
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for e in entries:
        if not e.name.startswith(".") or not e.name.endswith(".tmp"):
            continue
        parsed = parse_tmp_name(e.name)
        if parsed is not None and want(parsed[0]):
            yield Path(folder) / e.name


def remove_stale_tmps(folder: Path, dest_names: set[str] | frozenset[str] | Callable[[str], bool],
                      keep: set[str] | frozenset[str] = frozenset()) -> list[Path]:
    """Delete the stale temporaries (see :func:`tmp_is_stale`) of ``dest_names`` in ``folder``,
    except the names in ``keep``; returns the deleted paths."""
    now = time.time()
    gone = []
    for p in tmps_beside(Path(folder), dest_names):
        if p.name in keep or not tmp_is_stale(p, now):
            continue
        try:
            p.unlink()
            gone.append(p)
        except FileNotFoundError:
            pass
        except OSError:
            pass  # read-only folder: nothing we can do here
    return gone


__all__ = ["LEGACY_TMP_MAX_AGE", "atomic_write_bytes", "fsync_dir", "owner_tag", "parse_tmp_name",
           "remove_stale_tmps", "tmp_is_stale", "tmp_path_beside", "tmps_beside", "write_tmp_beside"]
