"""Shared queue runner of the training scripts (scripts/train_table1.py, scripts/train_addition.py).

Runs ``python -m stn_core.train`` commands one after another from the repo root: skips runs whose
checkpoint JSON says ``"final": true``, and with a time limit passes each run the seconds left
(``--time-limit``) and stops when fewer than 60 s are left.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable

ROOT = Path(__file__).resolve().parents[1]


def is_final(stem: Path) -> bool:
    """True when ``<stem>.json`` exists and records a finished run (``"final": true``)."""
    try:
        return bool(json.loads(stem.with_suffix(".json").read_text()).get("final"))
    except (OSError, ValueError):
        return False


def run_queue(jobs: Iterable[tuple[Path, Callable[[], list[str]]]], time_limit: float | None) -> None:
    """Run each job's command (built lazily, so ``--resume`` sees the current files) unless its
    checkpoint stem is final; raises CalledProcessError when a run fails."""
    start = time.time()
    for stem, make_cmd in jobs:
        if is_final(stem):
            print(f"done already: {stem.name}", flush=True)
            continue
        cmd = make_cmd()
        if time_limit is not None:
            left = time_limit - (time.time() - start)
            if left < 60:
                print("time limit reached", flush=True)
                return
            cmd += ["--time-limit", str(int(left))]
        print("$", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
