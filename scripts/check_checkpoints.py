"""Re-evaluate every distorted-MNIST checkpoint (and the MNIST-addition, volume and digit-string models) here and compare with the test error in its JSON.

Usage: python scripts/check_checkpoints.py [--checkpoints DIR] [--out results/checkpoint-check.md] [--threads 2]
                                           [--data-root DIR] [--no-verify]

Each checkpoint's JSON records the test error measured at the end of its training run, on the
machine that trained it (the CPU here, or a GPU); this loads the weights with
``stn_core.load_model``, rebuilds the same fixed test set (task, seed and size from the JSON; its
md5 must match the JSON's) and evaluates on this machine's CPU. A GPU run used TF32 convolutions,
so a few digits whose top two logits nearly tie may flip: the report gives the difference in
digits. Needs the full MNIST test set (``python -m stn_core.data mnist --from PATH``).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stn_core.data import tasks as ds  # noqa: E402
from stn_core.train import mnist as T  # noqa: E402
from stn_core.train.loop import cpu_name  # noqa: E402
from stn_core.train import sequence as TS  # noqa: E402
from stn_core.train import volume as TV  # noqa: E402
from stn_core.data import sequences as Q  # noqa: E402
from stn_core.checkpoints import CheckpointError, load_meta, load_model  # noqa: E402
from stn_core.fileio import atomic_write_bytes  # noqa: E402


#: Note of a check on a test set generated on demand (digit strings, volumes) whose md5 differs from the
#: recorded one: float32 resampling differs in the last bits between CPUs (SIMD paths), so these sets are the
#: same draws but not the same bytes on another machine; the error is still measured on them.
REGENERATED = "test set regenerated here: same draws, md5 differs (float rounding of another CPU)"


def check(stem: Path, root: str | None = None, verify: bool = True) -> dict:
    """{name, device, recorded, here, digits, note} for one checkpoint stem."""
    meta = load_meta(stem.with_suffix(".json"))
    row = {"name": stem.name if stem.parent.name != "long" else f"long/{stem.name}", "device": meta.get("device", "?"), "recorded": meta.get("test_error"),
           "here": None, "digits": None, "note": ""}
    if not meta.get("final") or meta.get("test_error") is None:
        row["note"] = "not final: skipped"
        return row
    model, meta = load_model(stem)
    test = meta["test_set"]
    if meta["task"].startswith("mnist-strings-"):  # digit strings are made on demand (stn_core.train.sequence)
        images, labels = ds.load_split("test", root, verify)
        s = Q.test_strings(images, labels, meta["extra"]["crop"], test["size"], test["seed"])
        same = ds.test_set_md5(s.images, s.digits) == test["md5"]
        err, _ = TS.evaluate_strings(model, s)
        row["here"] = round(err, 4)
        row["digits"] = round((err - meta["test_error"]) * s.images.shape[0] / 100)
        row["note"] = "difference counted in strings" + ("" if same else "; " + REGENERATED)
        row["same_set"] = same
        return row
    if meta["task"] == "mnist-volume":  # volumes are made on demand (stn_core.train.volume), not cached
        images, labels = ds.load_split("test", root, verify)
        x, y = TV.test_set(images, labels, test["size"], torch.device("cpu"))
    else:
        x, y = ds.fixed_test_set(meta["task"], test["seed"], root, limit=test["size"], verify=verify)
    same = ds.test_set_md5(x, y) == test["md5"]
    if not same and meta["task"] != "mnist-volume":  # a cached, uint8 fixed test set must match exactly
        row["note"] = "test set differs from the one it was evaluated on"
        return row
    evaluate = TV.evaluate_volumes if meta["task"] == "mnist-volume" else T.evaluate
    err, _ = evaluate(model, x, y, torch.device("cpu"))
    row["here"] = round(err, 4)
    row["digits"] = round((err - meta["test_error"]) * len(y) / 100)
    row["note"] = "" if same else REGENERATED
    row["same_set"] = same
    return row


def main(argv: list[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    ap.add_argument("--out", default=str(ROOT / "results" / "checkpoint-check.md"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-root", default=None, help="folder with the MNIST idx files (default: auto)")
    ap.add_argument("--no-verify", action="store_true", help="skip the md5 check of the MNIST files")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    command = "python scripts/check_checkpoints.py" + (" " + shlex.join(argv) if argv else "")
    folder = Path(a.checkpoints)
    stems = sorted(p.with_suffix("") for pattern in ("mnist_*.json", "long/mnist_*.json", "volume_*.json", "seq*_*.json")
                   for p in folder.glob(pattern))
    rows, t0 = [], time.time()
    for stem in stems:
        try:
            rows.append(check(stem, a.data_root, not a.no_verify))
        except (CheckpointError, OSError, ValueError) as e:
            rows.append({"name": str(stem.relative_to(folder)), "device": "?", "recorded": None, "here": None, "digits": None,
                         "note": f"error: {e}"})
        r = rows[-1]
        print(f"{r['name']}: recorded {r['recorded']} ({r['device']}), here {r['here']} {r['note']}", flush=True)
    checked = [r for r in rows if r["here"] is not None and r.get("same_set", True)]
    regenerated = [r for r in rows if r["here"] is not None and not r.get("same_set", True)]
    worst = max((abs(r["digits"]) for r in checked), default=0)
    worst_regen = max((abs(r["digits"]) for r in regenerated), default=0)
    lines = ["# Checkpoint check: recorded test errors re-evaluated on this CPU", "",
             f"Generated by `{command}` in {time.time() - t0:.0f} s on {cpu_name()} ({platform.machine()}), torch {torch.__version__}. "
             "\"recorded\" is the test error in the checkpoint's JSON, measured at the end of its training run on the "
             "device named; \"here\" is the same weights on the same fixed test set (md5-checked), evaluated on this "
             "CPU. GPU runs used TF32 convolutions, so digits whose two best logits nearly tie may differ.", "",
             f"{len(checked)} of {len(rows)} checkpoints re-evaluated on their recorded test set; largest difference: "
             f"{worst} test digit(s)." + (f" {len(regenerated)} more on a test set regenerated here whose bytes differ "
                                          f"(made here on {cpu_name()}, recorded on another CPU: float rounding); largest difference there: "
                                          f"{worst_regen} test item(s)." if regenerated else ""), "",
             "| checkpoint | trained on | recorded % | here % | difference (digits) | note |",
             "|---|---|---:|---:|---:|---|"]
    for r in rows:
        fmt = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append(f"| {r['name']} | {r['device']} | {fmt(r['recorded'])} | {fmt(r['here'])} | "
                     f"{'—' if r['digits'] is None else r['digits']} | {r['note']} |")
    out = Path(a.out)
    atomic_write_bytes(out, ("\n".join(lines) + "\n").encode("utf-8"))
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
