"""Shared helpers of the data layer: the error class, standard folders, md5, atomic writes
and a small, bounded downloader (urllib, with timeout)."""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from ..fileio import atomic_write_bytes, tmp_path_beside  # noqa: F401  (re-exported)

Progress = Optional[Callable[[str], None]]

#: Environment variable that overrides the cache / import folder (default <repo>/data/cache).
ENV_DATA_DIR = "STN_LAB_DATA"


class DataError(ValueError):
    """A data file or folder is missing, truncated, corrupt or of the wrong kind.

    The message always names the file or folder and says what is wrong."""


def repo_root() -> Path:
    """The STN Lab repository root (the folder that holds ``stn_core/``)."""
    return Path(__file__).resolve().parents[2]


def default_data_dir() -> Path:
    """Cache / import folder: ``$STN_LAB_DATA`` if set, else ``<repo>/data/cache``."""
    env = os.environ.get(ENV_DATA_DIR, "").strip()
    if env:
        return Path(env).expanduser()
    return repo_root() / "data" / "cache"


def shared_data_dir() -> Path:
    """The read-only offline data copy next to the repository: ``<repo>/../shared/data``."""
    return repo_root().parent / "shared" / "data"


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def atomic_copy(src: Path, dest: Path, expected_md5: Optional[str] = None) -> None:
    """Copy ``src`` to ``dest`` atomically; if ``expected_md5`` is given the copy is checked
    before it replaces ``dest`` (DataError on mismatch, ``dest`` untouched)."""
    dest = Path(dest)
    tmp = tmp_path_beside(dest)
    try:
        shutil.copyfile(src, tmp)
        if expected_md5 is not None:
            got = md5_file(tmp)
            if got != expected_md5:
                raise DataError(
                    f"{src}: md5 is {got}, expected {expected_md5} (the file is corrupt or not the official one)"
                )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def is_url(src: str | os.PathLike) -> bool:
    """True for http://, https:// and file:// strings."""
    return isinstance(src, str) and urllib.parse.urlsplit(src).scheme.lower() in ("http", "https", "file")


def download(
    url: str,
    dest: Path,
    expected_md5: Optional[str] = None,
    timeout: float = 30.0,
    max_bytes: int = 2 << 30,
    progress: Progress = None,
) -> None:
    """Download ``url`` to ``dest`` atomically (temp file + ``os.replace``).

    Raises DataError with a human sentence on network failure, HTTP errors, a body larger
    than ``max_bytes``, a short read, or an md5 mismatch."""
    dest = Path(dest)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise DataError(f"{url}: only http://, https:// and file:// URLs are supported")
    tmp = tmp_path_beside(dest)
    h = hashlib.md5()
    try:
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "stn-lab-data/1.0"})
            with urllib.request.urlopen(req, timeout=timeout) as resp, open(tmp, "wb") as out:
                total = resp.headers.get("Content-Length")
                total = int(total) if total and total.isdigit() else None
                if total is not None and total > max_bytes:
                    raise DataError(f"{url}: server reports {total} bytes, more than the {max_bytes} byte limit")
                got = 0
                next_report = 0.0
                while True:
                    chunk = resp.read(1 << 16)
                    if not chunk:
                        break
                    got += len(chunk)
                    if got > max_bytes:
                        raise DataError(f"{url}: download exceeds the {max_bytes} byte limit")
                    h.update(chunk)
                    out.write(chunk)
                    if progress is not None and total:
                        frac = got / total
                        if frac >= next_report:
                            progress(f"  {dest.name}: {100 * frac:5.1f}% of {total / 1e6:.1f} MB")
                            next_report = frac + 0.25
                if total is not None and got != total:
                    raise DataError(f"{url}: connection closed after {got} of {total} bytes (truncated download)")
                out.flush()
                os.fsync(out.fileno())
        except urllib.error.HTTPError as e:
            raise DataError(f"{url}: HTTP error {e.code} {e.reason}") from None
        except urllib.error.URLError as e:
            raise DataError(
                f"{url}: could not download ({e.reason}); check the network connection or pass a local folder"
            ) from None
        except (TimeoutError, ConnectionError, OSError) as e:
            if isinstance(e, DataError):
                raise
            raise DataError(f"{url}: download failed ({e.__class__.__name__}: {e})") from None
        if expected_md5 is not None and h.hexdigest() != expected_md5:
            raise DataError(
                f"{url}: md5 of the download is {h.hexdigest()}, expected {expected_md5} "
                "(corrupt transfer or not the official file)"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
