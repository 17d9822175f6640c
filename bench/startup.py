"""Start-up of the app in headless Chromium: fresh server → first full render, and a warm new tab.

    python bench/startup.py                         # 3 rounds: minimal app, home, explorer
    python bench/startup.py --baseline 03debf0      # ... plus home and explorer of that commit, side by side

Every measurement starts a fresh ``streamlit run`` server (headless, loopback, free port, no file
watcher) and, from the moment the server process is launched, polls ``/_stcore/health``, opens the
page in a new Chromium context and waits for its **first full render**: the script run has finished
(``data-test-script-state="notRunning"``), the page's h1 is there, no element is stale or a skeleton,
every plotly chart has drawn its SVG and every image has loaded. That time is **cold**. Then a new
context (a new tab, cookies and cache empty) opens the same page on the same, now warm, server:
**warm**. The variants alternate within each round (minimal, home, explorer, then the baseline's),
so a busy machine slows them alike; the report gives medians and the ratio to the minimal app, a
one-line ``st.title`` script, which is the floor Streamlit itself sets.

``--baseline REF`` checks REF out in a git worktree beside this repository (so that it sees the same
``../shared``), runs it with the same Python, and removes the worktree afterwards.

Writes results/bench-startup.md. Needs Chromium (``/usr/bin/chromium``) and Playwright.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from browser_util import (CHROMIUM_ARGS, CHROMIUM_PATH, StreamlitServer, free_port, launch_streamlit,  # noqa: E402
                          stop_process, wait_healthy)
from timing import command_footer, write_report  # noqa: E402

from pages import PAGES  # noqa: E402

MINIMAL_APP = 'import streamlit as st\n\nst.title("Minimal")\n'
HEADINGS = {p.path: p.heading for p in PAGES}

#: True once the page has fully drawn (see the module docstring).
FULL_RENDER_JS = """(heading) => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    if (app.getAttribute('data-test-connection-state') !== 'CONNECTED') return false;
    if (!Array.from(document.querySelectorAll('h1')).some(h => h.innerText.includes(heading))) return false;
    if (document.querySelector('[data-stale="true"]')) return false;
    if (document.querySelector('[data-testid="stSkeleton"]')) return false;
    for (const c of document.querySelectorAll('[data-testid="stPlotlyChart"]'))
        if (!c.querySelector('.main-svg')) return false;
    return Array.from(document.images).filter(i => i.loading !== 'lazy').every(i => i.complete && i.naturalWidth > 0);
}"""


#: The page's h1 is on screen (the script has started drawing).
HEADING_JS = """(heading) => Array.from(document.querySelectorAll('h1')).some(h => h.innerText.includes(heading))"""
#: The script run has finished (the server has sent everything).
SCRIPT_DONE_JS = """(heading) => {
    const app = document.querySelector('[data-testid="stApp"]');
    return !!app && app.getAttribute('data-test-script-state') === 'notRunning'
        && Array.from(document.querySelectorAll('h1')).some(h => h.innerText.includes(heading));
}"""


def render(browser, url: str, heading: str, t0: float, timeout_s: float = 120.0) -> dict[str, float]:
    """Open ``url`` in a new context, wait for the page's first full render; seconds since ``t0`` at which
    the h1 appeared, the script finished and the page was fully drawn."""
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    marks = {}
    try:
        page = ctx.new_page()
        page.goto(url, wait_until="domcontentloaded", timeout=timeout_s * 1000)
        for name, js in (("h1", HEADING_JS), ("script done", SCRIPT_DONE_JS), ("full render", FULL_RENDER_JS)):
            page.wait_for_function(js, arg=heading, timeout=timeout_s * 1000, polling=25)
            marks[name] = time.perf_counter() - t0
    finally:
        ctx.close()
    return marks


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_server_quiet(pid: int, timeout_s: float = 30.0, window_s: float = 0.5, share: float = 0.05,
                      windows: int = 4) -> float:
    """Wait until the server has used under ``share`` of a core in each of ``windows`` consecutive
    ``window_s`` windows (2 s: longer than the background warm-up's initial pause, ``pages.shell.preload.
    DELAY_S``, so the warm-up has run and finished); returns the seconds waited."""
    t0 = time.perf_counter()
    quiet = 0
    while time.perf_counter() - t0 < timeout_s and quiet < windows:
        c0 = cpu_seconds(pid)
        time.sleep(window_s)
        quiet = quiet + 1 if cpu_seconds(pid) - c0 < share * window_s else 0
    return time.perf_counter() - t0


def measure(browser, app_dir: Path, script: str, path: str, heading: str) -> dict[str, float]:
    """Cold and warm times (and the cold phases) for one fresh server of ``script`` in ``app_dir``."""
    port = free_port()
    with tempfile.NamedTemporaryFile(prefix="stn-startup-", suffix=".log") as log:
        t0 = time.perf_counter()
        proc = launch_streamlit(script, port, log, cwd=app_dir)
        try:
            wait_healthy(StreamlitServer(port, proc, Path(log.name)), 60.0, poll_s=0.02)
            out = {"healthy": time.perf_counter() - t0}
            out.update(render(browser, f"http://127.0.0.1:{port}{path}", heading, t0))
            out["quiet wait"] = wait_server_quiet(proc.pid)
            warm = render(browser, f"http://127.0.0.1:{port}{path}", heading, time.perf_counter())
            out.update({f"warm {k}": v for k, v in warm.items()})
            out["warm"] = warm["full render"]
        finally:
            stop_process(proc)
    return out


@contextlib.contextmanager
def baseline_tree(ref: str):
    """REF checked out beside this repository (same ``../shared``); removed afterwards."""
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    where = ROOT.parent / f".startup-baseline-{sha}"
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(where), sha], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        yield where, sha
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=ROOT, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pages", default="/,/explorer", help="comma-separated URL paths of app.py to time")
    ap.add_argument("--baseline", default=None, help="a git ref whose app is timed side by side")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench-startup.md"))
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    paths = [p for p in a.pages.split(",") if p]
    t_start = time.perf_counter()
    load0 = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stn-minimal-")))
        (tmp / "minimal.py").write_text(MINIMAL_APP)
        variants = [("minimal app", tmp, "minimal.py", "/", "Minimal")]
        variants += [(f"STN Lab {p}", ROOT, "app.py", p, HEADINGS[p]) for p in paths]
        if a.baseline:
            base, sha = stack.enter_context(baseline_tree(a.baseline))
            variants += [(f"STN Lab {p} @ {sha} (before)", base, "app.py", p, HEADINGS[p]) for p in paths]
        pw = stack.enter_context(sync_playwright())
        browser = pw.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS, headless=True)
        stack.callback(browser.close)
        times: dict[str, list[dict[str, float]]] = {v[0]: [] for v in variants}
        for r in range(a.rounds):
            for label, app_dir, script, path, heading in variants:
                times[label].append(measure(browser, app_dir, script, path, heading))
                print(f"round {r + 1}: {label}: " + ", ".join(f"{k} {v:.2f}" for k, v in times[label][-1].items()),
                      flush=True)

    def med(label: str, key: str) -> float:
        return statistics.median(m[key] for m in times[label])

    def every(label: str, key: str) -> str:
        return ", ".join(f"{m[key]:.2f}" for m in times[label])

    floor = med("minimal app", "full render")
    lines = ["# App start-up: fresh server → first full render, and a warm new tab", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
             f"headless Chromium on the same machine. {a.rounds} rounds, the variants alternating in each; "
             f"medians (all rounds in brackets). First full render: the script run finished, the h1 shown, no "
             f"stale element or skeleton, every plotly chart drawn and every image loaded "
             f"(`bench/startup.py`, `FULL_RENDER_JS`). Warm: a new tab on the same server once it has gone "
             f"quiet (under 5 % of a core for 2 s running: its background warm-up has run and finished).", "",
             "| variant | cold: server launch → full render | cold / minimal app | warm new tab |",
             "|---|---|---|---|"]
    for label, _d, _s, _p, _h in variants:
        c = med(label, "full render")
        lines.append(f"| {label} | **{c:.2f} s** ({every(label, 'full render')}) | {c / floor:.2f}× | "
                     f"**{med(label, 'warm'):.2f} s** ({every(label, 'warm')}) |")
    lines += ["", "Where a cold start goes (medians, seconds since the server process was launched): the server "
              "answers its health check, the page's h1 appears, the script run finishes (everything sent), the "
              "browser has drawn it all.", "",
              "| variant | healthy | h1 | script done | full render | warm: h1 | warm: script done | warm: full |",
              "|---|---|---|---|---|---|---|---|"]
    for label, _d, _s, _p, _h in variants:
        lines.append(f"| {label} | " + " | ".join(f"{med(label, k):.2f}" for k in (
            "healthy", "h1", "script done", "full render", "warm h1", "warm script done", "warm full render")) + " |")
    lines += ["", "Targets (issue #21): home cold ≤ 1.7× the minimal app; explorer cold ≤ 4 s; warm new tab: "
              "home ≤ 1.5 s, explorer ≤ 2.5 s. Where a cold explorer's server time goes (imports, then its first "
              "script run): results/profile-explorer.md (`python bench/explorer_profile.py`).", "",
              command_footer("bench/startup.py", t_start, load0)]
    write_report(a.out, lines)


if __name__ == "__main__":
    main()
