"""Train the CUB birds models (baseline, 2×ST-CNN, 4×ST-CNN) one after another.

    python scripts/train_cub.py [--models baseline 2st 4st] [--threads 1] [--time-limit 4800]

Skips finished runs (``final: true`` in the JSON), resumes unfinished ones. Every run is one
``python -m stn_core.train --task cub50 ...`` command with the SAME reduced protocol (see
PROTOCOL), written to ``checkpoints/cub50_<name>.safetensors`` + ``.json`` (command recorded in
the JSON). Reduced scale for a 2-core CPU: 50 classes (the images on hand), 224-px input,
MobileNetV2 backbone, 2 epochs of 1,500 training images, batch 16, seed 0. The paper's full scale
(200 classes, 448 px, GPU) is ``FULL_SCALE`` below, printed by ``--print-full``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"baseline": "cub-baseline", "2st": "cub-2st", "4st": "cub-4st"}

#: One protocol for all three models.
PROTOCOL = ["--epochs", "2", "--batch", "16", "--optimizer", "sgd", "--lr", "0.001", "--momentum", "0.9",
            "--weight-decay", "1e-4", "--head-lr-mult", "10", "--loc-lr-mult", "0.5", "--input-size", "224",
            "--crop-size", "112", "--crop-scale", "0.5", "--seed", "0"]

#: Documented full-scale run (200 classes, 448 px, GPU): see stn_core.train.cub.FULL_SCALE_COMMAND.
sys.path.insert(0, str(ROOT))
from stn_core.train.cub import FULL_SCALE_COMMAND as FULL_SCALE  # noqa: E402


def is_final(stem: Path) -> bool:
    try:
        return bool(json.loads(stem.with_suffix(".json").read_text()).get("final"))
    except (OSError, ValueError):
        return False


def command(name: str, stem: Path, threads: int, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "stn_core.train", "--task", "cub50", "--model", MODELS[name], *PROTOCOL,
           "--threads", str(threads), "--out", str(stem.relative_to(ROOT)), "--log-every", "5", *extra]
    if stem.with_suffix(".json").exists():
        cmd.append("--resume")
    return cmd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=None, help="stop starting/continuing runs after this many s")
    ap.add_argument("--print-full", action="store_true", help="print the documented full-scale command and exit")
    args = ap.parse_args()
    if args.print_full:
        print(FULL_SCALE)
        return
    start = time.time()
    for name in args.models:
        stem = ROOT / "checkpoints" / f"cub50_{name}"
        if is_final(stem):
            print(f"done already: {stem.name}", flush=True)
            continue
        extra: list[str] = []
        if args.time_limit is not None:
            left = args.time_limit - (time.time() - start)
            if left < 60:
                print(f"time limit reached; {stem.name} not started/continued", flush=True)
                continue
            extra = ["--time-limit", str(int(left))]
        cmd = command(name, stem, args.threads, extra)
        print(f"[{time.strftime('%H:%M:%S')}] {' '.join(cmd)}", flush=True)
        rc = subprocess.call(cmd, cwd=ROOT)
        print(f"[{time.strftime('%H:%M:%S')}] {stem.name}: exit {rc}, final={is_final(stem)}", flush=True)


if __name__ == "__main__":
    main()
