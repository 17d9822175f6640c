"""One training process per checkpoint: an advisory lock on the run's ``--out``.

Two processes training the same ``--out`` would overwrite each other's checkpoints (two queues with
overlapping cells, or a queue and a hand-started run). The trainers take an exclusive, non-blocking
``flock`` on a lock file named after the checkpoint's absolute path, in the temporary folder (not beside
the checkpoint: nothing is left in ``checkpoints/``), before they touch its files, and hold it until the
process exits (the operating system releases it, even after a kill). A second process finds it held and
exits with :data:`IN_USE_EXIT`; ``scripts/train_queue.py`` reads that code as "running elsewhere" and
moves on. Where ``fcntl`` is missing (Windows) no lock is taken.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import IO

#: Exit status of a trainer whose ``--out`` another process is training (EX_TEMPFAIL of sysexits.h).
IN_USE_EXIT = 75

_HELD: dict[str, IO] = {}


def lock_path(meta: Path) -> Path:
    """The lock file of the run whose checkpoint JSON is ``meta``: one per absolute path, in the temp folder."""
    key = hashlib.sha256(str(Path(meta).resolve()).encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / "stn-lab-runs" / f"{key}.lock"


def hold(meta: Path) -> bool:
    """Take the run's lock for the rest of this process; False when another process holds it. Taking it
    again in the same process is a no-op (True)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, no protection
        return True
    path = lock_path(meta)
    if str(path) in _HELD:
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return False
    _HELD[str(path)] = fh
    return True


def release(meta: Path) -> None:
    """Give the run's lock back before the process ends (tests; a trainer keeps it to the end)."""
    fh = _HELD.pop(str(lock_path(meta)), None)
    if fh is not None:
        fh.close()


__all__ = ["IN_USE_EXIT", "hold", "lock_path", "release"]
