"""Regenerate results/mnist-addition.md (MNIST addition: ours beside the paper's) from the checkpoints.

Usage: python scripts/make_addition_results.py [--checkpoints checkpoints] [--out results/mnist-addition.md]
                                               [--limit N] [--threads 1]

Test errors are read from ``<checkpoints>/mnist_addition_{fcn,cnn,st-fcn,2st-fcn}.json`` (written
by ``scripts/train_addition.py``); nothing is trained. The 2×ST-FCN checkpoint is evaluated on the
fixed MNIST-addition test set to measure whether each transformer has taken one digit, and the
single ST-FCN's transformer for comparison (:func:`pages.lab.addition.specialisation`). The file is written atomically.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from stn_core.data import tasks as ds  # noqa: E402
from stn_core.checkpoints import CheckpointError, load_model  # noqa: E402
from stn_core.fileio import atomic_write_bytes  # noqa: E402
from stn_core import registry as reg
from stn_core.analysis import addition as an_add


def _measure(stem: Path, a: argparse.Namespace) -> tuple[an_add.Specialisation, dict]:
    """Where a transformer model's boxes go on the fixed test pairs (its test set's seed)."""
    model, meta = load_model(stem)
    seed = (meta.get("test_set") or {}).get("seed", ds.TEST_SEED)
    x, _ = ds.fixed_test_set(reg.ADDITION_TASK, seed, a.data_root, a.limit, verify=not a.no_verify)
    return an_add.specialisation(model, x), meta


def main(argv: list[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default=str(ROOT / "checkpoints"), help="checkpoint folder")
    ap.add_argument("--out", default=str(ROOT / "results" / "mnist-addition.md"), help="Markdown file to write")
    ap.add_argument("--limit", type=int, default=None, help="measure the specialisation on the first N test pairs")
    ap.add_argument("--data-root", default=None, help="folder with the MNIST idx files (default: auto)")
    ap.add_argument("--no-verify", action="store_true", help="skip the md5 check of the MNIST files")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    command = "python scripts/make_addition_results.py" + (" " + shlex.join(argv) if argv else "")
    entries = reg.find_addition(a.checkpoints)
    spec, note = None, ""
    e = entries.get("2st-fcn")
    if e is not None and e.meta is not None:
        try:
            spec, meta = _measure(e.stem, a)
            note = ("" if e.final else f"The checkpoint is not final yet (step {meta.get('steps')} of "
                    f"{meta.get('train_args', {}).get('steps')}).")
        except (CheckpointError, OSError, ValueError) as err:
            note = f"Could not measure the 2×ST-FCN: {err}"
    single = None
    e1 = entries.get("st-fcn")
    if spec is not None and e1 is not None and e1.meta is not None and e1.final:
        try:
            single, _ = _measure(e1.stem, a)
        except (CheckpointError, OSError, ValueError) as err:
            note += f" Could not measure the ST-FCN: {err}"
    text = an_add.results_markdown(entries, spec, command, spec_command=command, spec_note=note, spec_single=single)
    out = Path(a.out)
    atomic_write_bytes(out, text.encode("utf-8"))
    done = sum(x.final for x in entries.values())
    print(f"wrote {out}: {done} of {len(reg.ADDITION_KEYS)} models final")
    return out


if __name__ == "__main__":
    main()
