"""Arrays computed from a final checkpoint (test logits, boxes), cached on disk by its checkpoint id.

A checkpoint gets a new random ``checkpoint_id`` whenever its weights change, so a file named by that
id is never stale for the weights: ``runs/cub_eval/<prefix><stem>_<checkpoint_id>.npz``. The image ids
the arrays were computed on are stored beside them and checked on reading (a changed data folder
gives a miss, never wrong rows). Files are written atomically and read without pickle.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from stn_core.data.common import repo_root
from stn_core.fileio import atomic_write_bytes

__all__ = ["cache_path", "load_cached", "save_cached"]


def cache_path(stem: str | Path, checkpoint_id: str, prefix: str = "") -> Path:
    """``<repo>/runs/cub_eval/<prefix><stem name>_<checkpoint_id>.npz`` (``stem`` may be a path or a name)."""
    return repo_root() / "runs" / "cub_eval" / f"{prefix}{Path(stem).stem}_{checkpoint_id}.npz"


def save_cached(path: Path, image_ids: Sequence[int], **arrays: np.ndarray) -> None:
    """Write ``arrays`` and the ``image_ids`` they belong to (row i ↔ image_ids[i]) atomically to ``path``."""
    buf = io.BytesIO()
    np.savez(buf, image_ids=np.asarray(image_ids), **arrays)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_cached(path: Path, image_ids: Optional[Sequence[int]] = None) -> Optional[dict[str, np.ndarray]]:
    """The arrays stored at ``path`` (with ``image_ids``), or None when the file is missing or unreadable, or —
    when ``image_ids`` is given — was computed on other images."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    if "image_ids" not in arrays:
        return None
    if image_ids is not None and not np.array_equal(arrays["image_ids"], np.asarray(image_ids)):
        return None
    return arrays
