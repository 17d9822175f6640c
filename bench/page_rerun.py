"""Whole-page rerun after one control change, server side, with Streamlit's ``AppTest``.

    python bench/page_rerun.py [--repeats 20] [--rounds 3] [--baseline REF]

For the playground (rotation slider), the thin-plate spline page (regularisation slider) and the
explorer (rotation slider of its hand distortion): the page is opened once through ``app.py``, then
each timed rerun moves the control to a value it did not have before (so no cached figure or image is
reused that a real move would not reuse) and runs the whole script: Streamlit's widget handling, the
page's logic, the figures, and the serialisation of every element into the messages sent. The
browser's drawing is not included (``bench/startup.py`` times pages in Chromium). AppTest's own
bookkeeping is included; a minimal page's rerun is given as the floor. A real server compiles each
script once and keeps the bytecode (the runtime's one ``ScriptCache``), while AppTest makes a new
``ScriptCache`` for every run, which would add compiling app.py and the page to every rerun; the bench
gives AppTest one shared cache, as the server has (:func:`share_script_cache`).

Each round measures every case in a fresh process; with ``--baseline REF`` a process on REF's code
(a git worktree beside this repository, as in ``bench/startup.py``) alternates with one on this code,
so both see the same machine load. Medians over all reruns of all rounds.

Writes results/bench-page-rerun.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import json
import subprocess

HERE = Path(__file__).resolve().parents[1]
#: The code measured: this repository, or ``--root DIR`` (a baseline worktree) in a child process.
ROOT = Path(sys.argv[sys.argv.index("--root") + 1]).resolve() if "--root" in sys.argv else HERE
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE / "bench"))
os.chdir(ROOT)

import pages.lab  # noqa: E402,F401  (the heavy imports, outside the timing)
from apptest_util import app, open_page  # noqa: E402
from timing import write_report  # noqa: E402

#: (label, page script, widget kind, widget key, values to cycle through, target ms from issue #21)
CASES = [
    ("home (no control: a plain rerun, the floor)", None, None, None, None, None),
    ("Transform playground: rotation slider", "pages/playground.py", "slider", "pg_rot",
     [float(v) for v in range(-170, 171, 7)], 25.0),
    ("Thin-plate spline: regularisation", "pages/tps.py", "select_slider", "tps_reg",
     [0.0, 0.001, 0.01, 0.1, 1.0, 10.0], 25.0),
    ("Trained model explorer: rotation of the hand distortion", "pages/explorer.py", "slider", "ex_rot",
     [float(v) for v in range(-170, 171, 7)], 40.0),
]


def share_script_cache() -> None:
    """Make every AppTest run use one ``ScriptCache``, like a server's runtime (compile once per script)."""
    import streamlit.testing.v1.app_test as app_test
    import streamlit.testing.v1.local_script_runner as local_runner
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache

    shared = ScriptCache()
    app_test.ScriptCache = local_runner.ScriptCache = lambda: shared


def time_case(script, kind, key, values, repeats: int) -> list[float]:
    at = app().run() if script is None else open_page(script)
    times = []
    for i in range(repeats + 2):
        if script is not None:
            getattr(at, kind)(key=key).set_value(values[(i + 1) % len(values)])
        t0 = time.perf_counter()
        at.run()
        times.append((time.perf_counter() - t0) * 1e3)
        if at.exception:
            raise RuntimeError(f"{script}: {at.exception[0].value}")
    return times[2:]


def child(repeats: int) -> None:
    """Measure every case on ROOT's code; print {label: [ms, ...]} as JSON."""
    import torch

    torch.set_num_threads(1)
    share_script_cache()
    print(json.dumps({c[0]: time_case(*c[1:5], repeats) for c in CASES}))


def measure_in(root: Path, repeats: int) -> dict[str, list[float]]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--root", str(root), "--repeats", str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", default=None, help="a git ref measured side by side")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--root", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(HERE / "results" / "bench-page-rerun.md"))
    a = ap.parse_args()
    if a.child:
        child(a.repeats)
        return
    from startup import baseline_tree  # the parent only: it puts this repository on sys.path

    load0, t_start = os.getloadavg()[0], time.perf_counter()
    with contextlib.ExitStack() as stack:
        roots = {"now": HERE}
        if a.baseline:
            base, sha = stack.enter_context(baseline_tree(a.baseline))
            roots[f"@ {sha} (before)"] = base
        ms: dict[str, dict[str, list[float]]] = {k: {c[0]: [] for c in CASES} for k in roots}
        for r in range(a.rounds):
            for name, root in roots.items():
                for label, values in measure_in(root, a.repeats).items():
                    ms[name][label] += values
                print(f"round {r + 1}: {name} done", flush=True)
    names = list(roots)
    head = ["page and control"] + [f"median ms, {n}" for n in names]
    if len(names) > 1:
        head.append("now / before")
    head += ["target (issue #21)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, *_rest, target in CASES:
        meds = [statistics.median(ms[n][label]) for n in names]
        cells = [label] + [f"**{m:.1f}**" if i == 0 else f"{m:.1f}" for i, m in enumerate(meds)]
        if len(names) > 1:
            cells.append(f"{meds[0] / meds[1]:.2f}×")
        cells.append("" if target is None else ("meets" if meds[0] <= target else "misses") + f" ≤ {target:.0f} ms")
        rows.append("| " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    cmd = "python " + shlex.join(["bench/page_rerun.py"] + sys.argv[1:])
    lines = ["# Whole-page rerun after one control change (server side, AppTest)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, one torch thread. {a.rounds} rounds of a "
             f"fresh process per code version, alternating; in each, {a.repeats} reruns after 2, each after the "
             f"control moved to a new value (see `bench/page_rerun.py`). Medians over all rounds. Scripts are "
             f"compiled once per process, as on a server (AppTest alone recompiles them on every run).", ""]
    lines += rows
    lines += ["", f"Command: `{cmd}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"{time.perf_counter() - t_start:.0f} s, load average {load0:.2f} at the start "
              f"(cores shared with other work inflate the numbers)."]
    write_report(a.out, lines)


if __name__ == "__main__":
    main()
