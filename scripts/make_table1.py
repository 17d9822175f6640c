"""Regenerate results/table1.md (paper Table 1: ours beside the paper's) from the checkpoint JSONs.

Usage: python scripts/make_table1.py [--checkpoints checkpoints] [--out results/table1.md]

Reads only ``<checkpoints>/mnist_{r,rts,p,e}_{fcn,cnn,st-fcn-aff,…,st-cnn-tps}.json`` (and checks
the weights file exists); nothing is trained or evaluated. A cell without a checkpoint says
"not trained yet"; a run still in progress shows its last evaluated error with the step it
reached. The same code (:func:`pages.lab.explorer.table1_report`) feeds the explorer page.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stn_core.data.common import atomic_write_bytes  # noqa: E402
from stn_core import registry as reg
from stn_core.analysis import table1 as t1


def main(argv: list[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default=None,
                    help=f"checkpoint folder (default: ${reg.ENV_CHECKPOINTS} or <repo>/checkpoints)")
    ap.add_argument("--out", default=str(ROOT / "results" / "table1.md"), help="Markdown file to write")
    a = ap.parse_args(argv)
    folder = Path(a.checkpoints) if a.checkpoints else reg.checkpoint_dir()
    command = "python scripts/make_table1.py" + (" " + shlex.join(argv) if argv else "")
    text = t1.table1_report(folder, command=command)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, text.encode("utf-8"))
    cells = t1.table1_cells(folder)
    done = sum(c.status == "done" for row in cells for c in row)
    running = sum(c.status == "training" for row in cells for c in row)
    print(f"wrote {out}: {done} of {sum(len(r) for r in cells)} cells trained, {running} still training")
    return out


if __name__ == "__main__":
    main()
