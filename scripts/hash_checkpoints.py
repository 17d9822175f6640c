"""Record the SHA-256 of each checkpoint's weights in its JSON (``weights_sha256``).

Usage: python scripts/hash_checkpoints.py [--checkpoints DIR] [--check]

Checkpoints written before ``weights_sha256`` existed load as "unverified" (see
``stn_core.checkpoints``). For every ``*.json`` under DIR (default ``checkpoints/``, sub-folders
included) this

1. finishes an interrupted commit of the stem (``checkpoints.recover``);
2. checks that JSON and weights belong together (same ``checkpoint_id`` in both) and that the
   checkpoint loads (``load_model``: structure, shapes, dtypes, no NaN/inf);
3. hashes the weights bytes and rewrites the JSON atomically with ``weights_sha256`` added
   (same formatting: ``indent=2, sort_keys=True``), only if the JSON did not change meanwhile;
4. loads it again and requires ``integrity == "sha256 verified"``.

A JSON that already has the hash is verified, never rewritten. ``--check`` only reports.
Exit status 1 if any checkpoint could not be hashed or verified. Do not run it on a stem that a
training run is writing at the same time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stn_core import checkpoints as C  # noqa: E402
from stn_core.fileio import atomic_write_bytes  # noqa: E402


def hash_one(json_path: Path, check_only: bool = False) -> str:
    """'verified', 'hashed', 'would hash' or raises CheckpointError / OSError."""
    paths = C.checkpoint_paths(json_path)
    C.recover(paths["meta"])
    raw = paths["meta"].read_bytes()
    meta = C.load_meta(paths["meta"])
    if meta.get("weights_sha256"):
        _, loaded = C.load_model(paths["meta"])
        if loaded["integrity"] != C.INTEGRITY_VERIFIED:
            raise C.CheckpointError(f"{paths['meta']}: not verified ({loaded['integrity']})")
        return "verified"
    weights = C._read_st(paths["weights"], C.MAX_WEIGHTS_BYTES)  # bounded, one read
    cid, wcid = meta.get("checkpoint_id"), weights.info.get("checkpoint_id")
    if not cid or not wcid or cid != wcid:
        raise C.CheckpointError(f"{paths['meta']}: JSON checkpoint_id {cid!r} and weights checkpoint_id "
                                f"{wcid!r} do not prove they belong together: not hashing")
    C.load_model(paths["meta"])  # structure, shapes, dtypes, finite weights
    if check_only:
        return "would hash"
    sha = hashlib.sha256(weights.data).hexdigest()
    new = dict(meta, weights_sha256=sha)
    text = (json.dumps(new, indent=2, sort_keys=True) + "\n").encode("utf-8")
    if paths["meta"].read_bytes() != raw or hashlib.sha256(paths["weights"].read_bytes()).hexdigest() != sha:
        raise C.CheckpointError(f"{paths['meta']}: changed while being hashed (a training run writing it?)")
    atomic_write_bytes(paths["meta"], text, durable=True)
    _, loaded = C.load_model(paths["meta"])
    if loaded["integrity"] != C.INTEGRITY_VERIFIED:
        raise C.CheckpointError(f"{paths['meta']}: hash written but not verified ({loaded['integrity']})")
    return "hashed"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    ap.add_argument("--check", action="store_true", help="report only, write nothing")
    a = ap.parse_args(argv)
    folder = Path(a.checkpoints)
    jsons = sorted(p for p in folder.rglob("*.json") if not p.name.startswith("."))
    counts: dict[str, int] = {}
    failed = 0
    for j in jsons:
        try:
            what = hash_one(j, a.check)
        except (C.CheckpointError, OSError) as e:
            what, failed = f"FAILED: {e}", failed + 1
        counts[what.split(":")[0]] = counts.get(what.split(":")[0], 0) + 1
        print(f"{j.relative_to(folder)}: {what}", flush=True)
    print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + f" ({len(jsons)} checkpoints)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
