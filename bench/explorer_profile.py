"""Where a cold explorer spends its start: imports, then its first script run (issue #21's explorer target).

    python bench/explorer_profile.py [--rounds 3] [--top 14]

Each round is a fresh Python process (nothing cached: no module imported, no Streamlit cache filled) that
(1) imports, one after another in the order a fresh server loads them for ``/explorer``, Streamlit, torch,
pandas, plotly, ``stn_core`` and the app's page helpers, timing each step, and (2) opens the explorer in
Streamlit's ``AppTest`` (the app's home run first, as a server does, then the page) under ``cProfile`` and
reports the page script's own functions (``pages/``, ``stn_core/``) by cumulative time. Medians over the
rounds (a function that a round did not call counts as 0 there). The browser's share of a cold start is in
``results/bench-startup.md`` (script done → full render).

Writes results/profile-explorer.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from timing import command_footer, write_report  # noqa: E402

#: Import steps, in the order a fresh server loads them for /explorer (app.py's shell first).
IMPORTS = (("streamlit (the server's own)", "streamlit"), ("torch", "torch"), ("pandas", "pandas"),
           ("plotly", "plotly.graph_objects"), ("stn_core", "stn_core"),
           ("the page helpers (pages.lab.*)", "pages.lab.cached"), ("the explorer's view logic", "pages.lab.explorer"))

CHILD = r"""
import cProfile, json, os, pstats, sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, os.path.join({root!r}, "tests"))
os.environ["STN_LAB_PRELOAD"] = "0"
steps = {imports!r}
out = {{"imports": {{}}}}
for label, module in steps:
    t = time.perf_counter()
    __import__(module)
    out["imports"][label] = time.perf_counter() - t
import torch
torch.set_num_threads(1)
from streamlit.runtime.scriptrunner import script_runner as SR
from apptest_util import app
pr = cProfile.Profile()
orig = SR.ScriptRunner._run_script_thread
def wrapped(self, *a, **k):
    pr.enable()
    try:
        return orig(self, *a, **k)
    finally:
        pr.disable()
at = app().run()
SR.ScriptRunner._run_script_thread = wrapped
t = time.perf_counter()
at.switch_page("pages/explorer.py").run()
out["script"] = time.perf_counter() - t
out["exception"] = [e.value for e in at.exception]
stats = pstats.Stats(pr).stats
root = {root!r}
funcs = {{}}
for (path, line, name), (_cc, _nc, _tt, ct, _callers) in stats.items():
    if path.startswith(root + "/pages/") or path.startswith(root + "/stn_core/"):
        key = f"{{os.path.relpath(path, root)}}:{{line}}({{name}})"
        funcs[key] = max(funcs.get(key, 0.0), ct)
out["funcs"] = funcs
print("@@" + json.dumps(out))
"""


def one_round() -> dict:
    code = CHILD.format(root=str(ROOT), imports=IMPORTS)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("@@")), None)
    if res.returncode != 0 or line is None:
        raise RuntimeError(f"profile round failed ({res.returncode}): {res.stderr[-2000:]}")
    out = json.loads(line[2:])
    if out["exception"]:
        raise RuntimeError(f"the explorer raised: {out['exception']}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--top", type=int, default=14, help="how many functions to list")
    ap.add_argument("--out", default=str(ROOT / "results" / "profile-explorer.md"))
    a = ap.parse_args()
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    rounds = []
    for r in range(a.rounds):
        rounds.append(one_round())
        print(f"round {r + 1}: imports {sum(rounds[-1]['imports'].values()):.2f} s, script {rounds[-1]['script']:.2f} s",
              flush=True)

    def med(values) -> float:
        return statistics.median(values)

    imports = {label: med(r["imports"][label] for r in rounds) for label, _m in IMPORTS}
    script = med(r["script"] for r in rounds)
    names = set().union(*(r["funcs"] for r in rounds))
    funcs = {n: med(r["funcs"].get(n, 0.0) for r in rounds) for n in names}
    top = sorted(funcs.items(), key=lambda kv: -kv[1])[:a.top]
    lines = ["# Where a cold explorer's start goes (profile)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, one torch "
             f"thread. {a.rounds} fresh processes; medians. See `bench/explorer_profile.py` for what is timed; the "
             "browser's share (script done → full render) is in results/bench-startup.md.", "",
             "## 1. Imports, in the order a fresh server loads them", "",
             "| step | seconds |", "|---|---|"]
    lines += [f"| {label} | {v:.2f} |" for label, v in imports.items()]
    lines += [f"| **all imports** | **{sum(imports.values()):.2f}** |", "",
              "## 2. The explorer's first script run (cold caches), cProfile", "",
              f"Wall time of the run: **{script:.2f} s** (with the profiler's overhead). The page's own functions by "
              "cumulative time (nested: a caller's time includes its callees'):", "",
              "| function | cumulative s |", "|---|---|"]
    lines += [f"| `{name}` | {v:.3f} |" for name, v in top]
    lines += ["", command_footer("bench/explorer_profile.py", t0, load0)]
    write_report(a.out, lines)


if __name__ == "__main__":
    main()
