"""Shared queue runner of the training scripts (scripts/train_table1.py, scripts/train_addition.py).

Runs ``python -m stn_core.train`` commands from the repo root, one after another or (``jobs`` > 1,
e.g. on a GPU) several at once: skips runs whose checkpoint JSON says ``"final": true``, and with a
time limit starts none when fewer than 60 s are left and passes each run ``--time-limit`` = the
seconds it has trained already (``train_seconds`` of its JSON: the trainer's limit counts all of a
run's sessions) + the seconds left, so a resumed run trains for the time left instead of stopping
at once. A run that another process is training (its trainer exits with ``IN_USE_EXIT``) is skipped
as "running elsewhere", so two queues with overlapping cells share the work instead of colliding.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable

ROOT = Path(__file__).resolve().parents[1]

#: A trainer's exit status when another process trains the same checkpoint (``stn_core.train.run_lock``; the
#: queue imports no torch, so the number is restated here and a test checks the two agree).
IN_USE_EXIT = 75


def read_meta(stem: Path) -> dict | None:
    """The JSON of a run's checkpoint ``<stem>.json`` as a dict, or None (missing, unreadable, not an object)."""
    try:
        meta = json.loads(Path(f"{stem}.json").read_text())  # not with_suffix: run names may hold dots ("0.25M")
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def is_final(stem: Path) -> bool:
    """True when ``<stem>.json`` exists and records a finished run (``"final": true``)."""
    return bool((read_meta(stem) or {}).get("final"))


def trained_seconds(stem: Path) -> float:
    """``train_seconds`` recorded in ``<stem>.json`` (0 for a new run)."""
    try:
        return float((read_meta(stem) or {}).get("train_seconds") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _command_or_none(stem: Path, make_cmd: Callable[[], list[str]], start: float,
                     time_limit: float | None) -> list[str] | None:
    """The run's command with the seconds left appended, or None when no run should start."""
    if is_final(stem):
        print(f"done already: {stem.name}", flush=True)
        return None
    cmd = make_cmd()
    if time_limit is not None:
        left = time_limit - (time.time() - start)
        if left < 60:
            print(f"time limit reached: not starting {stem.name}", flush=True)
            return None
        cmd += ["--time-limit", str(int(trained_seconds(stem) + left))]
    return cmd


def run_queue(jobs: Iterable[tuple[Path, Callable[[], list[str]]]], time_limit: float | None,
              parallel: int = 1, log_dir: Path | None = None) -> None:
    """Run each job's command (built lazily, so ``--resume`` sees the current files) unless its
    checkpoint stem is final. ``parallel`` > 1 keeps that many runs going at once, each writing its
    output to ``log_dir/<stem name>.log``. Raises CalledProcessError when a run fails (in parallel
    mode: after the others have ended)."""
    start = time.time()
    if parallel <= 1:
        for stem, make_cmd in jobs:
            cmd = _command_or_none(stem, make_cmd, start, time_limit)
            if cmd is not None:
                print("$", " ".join(cmd[1:]), flush=True)
                code = subprocess.run(cmd, cwd=ROOT).returncode
                if code == IN_USE_EXIT:
                    print(f"running elsewhere (another process holds its lock): {stem.name}", flush=True)
                elif code:
                    raise subprocess.CalledProcessError(code, cmd)
        return
    log_dir = Path(log_dir or ROOT / "runs" / "logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    pending, running, failed = list(jobs), [], []
    while pending or running:
        while pending and len(running) < parallel:
            stem, make_cmd = pending.pop(0)
            cmd = _command_or_none(stem, make_cmd, start, time_limit)
            if cmd is None:
                continue
            log = open(log_dir / f"{stem.name}.log", "a")  # appended: never truncate the log of a run that
            log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(cmd[1:])}\n")  # another queue trains
            log.flush()
            print("$", " ".join(cmd[1:]), f"> {log.name}", flush=True)
            running.append((stem, cmd, log, subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)))
        time.sleep(0.5)
        for item in [r for r in running if r[3].poll() is not None]:
            stem, cmd, log, proc = item
            running.remove(item)
            log.close()
            tail = Path(log.name).read_text(errors="replace").strip().splitlines()[-1:] or [""]
            if proc.returncode == IN_USE_EXIT:
                print(f"running elsewhere (another process holds its lock): {stem.name}", flush=True)
                continue
            print(f"{'ended' if proc.returncode == 0 else 'FAILED'} ({proc.returncode}) after "
                  f"{time.time() - start:.0f} s: {stem.name}: {tail[0][:300]}", flush=True)
            if proc.returncode:
                failed.append(subprocess.CalledProcessError(proc.returncode, cmd))
    if failed:
        raise failed[0]
