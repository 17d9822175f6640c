"""Benchmark the app under a lecture hall: 20 browser sessions at once, 2 of them training live.

Usage: python bench/sessions.py [--sessions 20] [--live 3] [--seconds 60] [--interval 0.5]
                                [--browser-nice 0] [--samples FILE.json] [--out results/bench-sessions.md]

Everything runs on this machine, on 127.0.0.1 only, and stops by itself:

1. a fresh ``streamlit run app.py`` server on a free loopback port (``tests/browser_util.streamlit_server``);
2. *warm-up*: one headless Chromium session opens ``/`` (the first run imports torch); the
   server's RSS after it is the reference; the session is closed;
3. *baseline*: ``GET /_stcore/health`` every ``--interval`` s for ``--seconds`` s with no
   browser session open;
4. *opening*: ``--sessions`` browser contexts open at once, ``--live`` of them on ``/live`` and
   the rest spread over the other pages; each must render its page's h1 without an error box;
5. the first ``--live`` sessions on ``/live`` press **Start** one after the other: at most
   ``stn_core.train.live.MAX_ACTIVE`` (2) train at once, so the third must get the "busy" warning;
6. *steady*: the same health sampling for ``--seconds`` s with all sessions open and the live
   runs training (their pages redraw every second).

The server's RSS (``/proc/PID/status`` VmRSS), its CPU time and its main thread's (the event loop's)
CPU time and run-queue wait (``/proc/PID/task/PID/schedstat``) are sampled with every health request. The report:
health latency (median, p95, max, how many over 1 s) per phase, RSS over time, per-session memory
``(peak − RSS after the first page load) / sessions``, and the RSS growth over the steady window
(the live runs' curves and replay are bounded by design: ``stn_core.train.live_state.Series``,
``FrameHistory``). The browsers share the server's CPU here, so the numbers are pessimistic.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser_util import (CHROMIUM_ARGS, CHROMIUM_PATH, error_texts, nav_labels,  # noqa: E402
                          streamlit_server, wait_idle)
from timing import write_report  # noqa: E402

from pages import PAGES  # noqa: E402

MAIN = '[data-testid="stMainBlockContainer"]'
TITLES = {p.path: p.heading for p in PAGES}  # each page's h1, from pages/__init__.py
BUSY = "already going on this machine"  # stn_core.train.live.busy_message
HEALTH_TARGET_S = 1.0
GROWTH_OK_KIB = 32 * 1024  # RSS growth over the steady window that still counts as "not growing" (noise)
OPEN_TIMEOUT_S = 420.0  # all sessions rendered (bounded)
STEP = re.compile(r"step ([\d,]+)")


def cpu_s(pid: int) -> float | None:
    """User + system CPU seconds used so far by ``pid`` (None when the process is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def main_thread(pid: int) -> tuple[float, float] | None:
    """(CPU s, run-queue wait s) so far of the server's main thread (thread id = pid), which runs the
    web server's event loop: high CPU there means the loop itself is busy; high run-queue wait means
    the thread was runnable but the OS gave the cores to others (``/proc/PID/task/PID/schedstat``)."""
    try:
        fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        wait = int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9
        return cpu, wait
    except (OSError, IndexError, ValueError):
        return None


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB (None when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Sampler(threading.Thread):
    """Every ``interval`` s: one GET of the health URL (latency, or None on error/timeout) and the
    server's RSS, tagged with the current phase. Stops on :meth:`stop` or after ``max_s``."""

    def __init__(self, url: str, pid: int, interval: float, max_s: float) -> None:
        super().__init__(daemon=True)
        self.url, self.pid, self.interval, self.max_s = url, pid, interval, max_s
        self.phase = "start"
        self.samples: list[tuple[str, float, float | None, int | None]] = []  # (phase, t, latency s, rss KiB)
        self.cpu: list[tuple[str, float, float | None]] = []  # (phase, t, server CPU s so far)
        self.loop: list[tuple[str, float, tuple[float, float] | None]] = []  # (phase, t, main thread (CPU, wait))
        self._stop_ev = threading.Event()
        self.t0 = time.monotonic()

    def stop(self) -> None:
        self._stop_ev.set()
        self.join(15)

    def run(self) -> None:
        end = self.t0 + self.max_s
        nxt = time.monotonic()
        while not self._stop_ev.is_set() and time.monotonic() < end:
            phase = self.phase
            t = time.monotonic()
            lat: float | None
            try:
                with urllib.request.urlopen(self.url, timeout=10) as resp:
                    resp.read()
                    lat = time.monotonic() - t if resp.status == 200 else None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                lat = None
            self.samples.append((phase, t - self.t0, lat, rss_kib(self.pid)))
            self.cpu.append((phase, t - self.t0, cpu_s(self.pid)))
            self.loop.append((phase, t - self.t0, main_thread(self.pid)))
            nxt += self.interval
            self._stop_ev.wait(max(0.0, nxt - time.monotonic()))

    def cpu_share(self, phase: str) -> float | None:
        """Server CPU use in the phase, in cores (1.0 = one core busy all the time)."""
        c = [x for x in self.cpu if x[0] == phase and x[2] is not None]
        if len(c) < 2 or c[-1][1] <= c[0][1]:
            return None
        return (c[-1][2] - c[0][2]) / (c[-1][1] - c[0][1])

    def loop_share(self, phase: str) -> tuple[float, float] | None:
        """Main thread (event loop) in the phase: (CPU, run-queue wait), each in seconds per second."""
        c = [x for x in self.loop if x[0] == phase and x[2] is not None]
        if len(c) < 2 or c[-1][1] <= c[0][1]:
            return None
        dt = c[-1][1] - c[0][1]
        return (c[-1][2][0] - c[0][2][0]) / dt, (c[-1][2][1] - c[0][2][1]) / dt

    def of(self, phase: str) -> list[tuple[str, float, float | None, int | None]]:
        return [s for s in self.samples if s[0] == phase]


def session_paths(n: int, n_live: int) -> list[str]:
    """``n_live`` × /live, then the other pages in sidebar order, cycled, for the rest."""
    others = ["/" + (p.url_path or "") for p in PAGES if p.url_path != "live"]
    return ["/live"] * n_live + [others[i % len(others)] for i in range(n - n_live)]


def latency_stats(samples) -> dict:
    lats = [s[2] for s in samples]
    ok = sorted(x for x in lats if x is not None)
    failed = sum(1 for x in lats if x is None)
    if not ok:
        return {"n": len(lats), "failed": failed}
    p95 = ok[min(len(ok) - 1, int(round(0.95 * (len(ok) - 1))))]
    return {"n": len(lats), "failed": failed, "median": statistics.median(ok), "p95": p95, "max": ok[-1],
            "over": sum(1 for x in ok if x > HEALTH_TARGET_S) + failed}


def mib(kib: int | None) -> str:
    return "–" if kib is None else f"{kib / 1024:,.0f}"


def ms(x: float | None) -> str:
    return "–" if x is None else f"{x * 1000:,.1f}"


def live_button(page, label: str):
    return page.locator(f'{MAIN} [data-testid="stButton"] button').filter(has_text=label).first


def live_step(page) -> int:
    m = STEP.search(page.locator(MAIN).inner_text())
    return int(m.group(1).replace(",", "")) if m else -1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--live", type=int, default=3, help="sessions on /live that press Start")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each health-sampling window")
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--browser-nice", type=int, default=0,
                    help="run Chromium (and its scheduler autogroup) at this nice level (0: as the server): in a "
                         "lecture hall the browsers are on the students' machines, here they share the server's cores")
    ap.add_argument("--samples", help="also write the raw samples as JSON here")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench-sessions.md"))
    args = ap.parse_args()
    if not 1 <= args.live <= args.sessions <= 100:
        ap.error("need 1 <= --live <= --sessions <= 100")
    if not os.access(CHROMIUM_PATH, os.X_OK):
        sys.exit(f"{CHROMIUM_PATH} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    from stn_core.train import live as live_train
    from stn_core.train import live_state

    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so the finally blocks close the browser and the server
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    paths = session_paths(args.sessions, args.live)
    t_start = time.monotonic()
    notes: list[str] = []
    tmp = tempfile.TemporaryDirectory(prefix="stn-bench-sessions-")
    exe = CHROMIUM_PATH
    if args.browser_nice:
        exe = os.path.join(tmp.name, "chromium-nice")
        # Playwright starts Chromium in a new session, so with the kernel's autogroup scheduling
        # (/proc/sys/kernel/sched_autogroup_enabled) a plain `nice` only ranks Chromium's own processes
        # among themselves: lower the priority of its whole autogroup too (allowed for one's own group).
        n = int(args.browser_nice)
        Path(exe).write_text(f'#!/bin/sh\necho {n} > /proc/self/autogroup 2>/dev/null\n'
                             f'exec nice -n {n} {CHROMIUM_PATH} "$@"\n')
        os.chmod(exe, 0o755)
    with tmp, streamlit_server() as server, sync_playwright() as pw:
        pid = server.proc.pid
        rss_cold = rss_kib(pid)
        max_s = 2 * args.seconds + OPEN_TIMEOUT_S + 300  # hard stop of the sampler thread
        sampler = Sampler(f"{server.url}/_stcore/health", pid, args.interval, max_s)
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        ctxs = []
        try:
            # warm-up: one session loads the app (imports torch)
            sampler.phase = "warm-up"
            sampler.start()
            ctx = browser.new_context(viewport={"width": 1440, "height": 900})
            pg = ctx.new_page()
            t = time.monotonic()
            pg.goto(server.url + "/", wait_until="domcontentloaded", timeout=180_000)
            pg.locator(f"{MAIN} h1").filter(has_text=TITLES["/"]).first.wait_for(state="visible", timeout=180_000)
            wait_idle(pg, 180)
            warm_s = time.monotonic() - t
            rss_first = rss_kib(pid)
            ctx.close()

            # baseline: no session open
            sampler.phase = "baseline"
            base_end = time.monotonic() + args.seconds
            while time.monotonic() < base_end:
                time.sleep(min(1.0, max(0.0, base_end - time.monotonic())))

            # opening: all sessions at once
            sampler.phase = "opening"
            t = time.monotonic()
            pages = []
            for path in paths:
                c = browser.new_context(viewport={"width": 1440, "height": 900})
                ctxs.append(c)
                p = c.new_page()
                p.js_errors = []
                p.on("pageerror", lambda exc, p=p: p.js_errors.append(str(exc)))
                p.goto(server.url + path, wait_until="commit", timeout=120_000)
                pages.append(p)
            deadline = time.monotonic() + OPEN_TIMEOUT_S
            want_nav = [s.title for s in PAGES]
            problems = []
            for i, (p, path) in enumerate(zip(pages, paths)):
                left_ms = max(5_000, (deadline - time.monotonic()) * 1000)
                try:
                    p.locator(f"{MAIN} h1").filter(has_text=TITLES[path]).first.wait_for(state="visible",
                                                                                          timeout=left_ms)
                    wait_idle(p, max(5.0, min(120.0, deadline - time.monotonic())))
                except Exception as e:  # noqa: BLE001 - recorded in the report
                    problems.append(f"session {i + 1} {path}: not rendered ({type(e).__name__})")
                    continue
                errs = error_texts(p) + [f"JS: {x}" for x in p.js_errors]
                if errs:
                    problems.append(f"session {i + 1} {path}: " + "; ".join(errs)[:300])
                if nav_labels(p) != want_nav:
                    problems.append(f"session {i + 1} {path}: navigation {nav_labels(p)}")
            open_s = time.monotonic() - t
            rss_open = rss_kib(pid)

            # live: the /live sessions press Start one after the other
            sampler.phase = "live-start"
            t_live = time.monotonic()
            deadline = t_live + 240.0  # all Start clicks answered (bounded)
            live_pages = pages[:args.live]
            live_result = []
            for i, p in enumerate(live_pages):
                live_button(p, "Start").click()
                try:
                    p.wait_for_function(
                        "busy => { const t = document.querySelector('[data-testid=\"stMainBlockContainer\"]')"
                        ".innerText; return /step [1-9]/.test(t) || t.includes(busy); }",
                        arg=BUSY, timeout=max(5_000, min(180_000, (deadline - time.monotonic()) * 1000)),
                        polling=250)
                except Exception as e:  # noqa: BLE001
                    live_result.append(("timeout", type(e).__name__))
                    continue
                text = p.locator(MAIN).inner_text()
                live_result.append(("busy", "") if BUSY in text else ("training", f"step {live_step(p)}"))

            live_s = time.monotonic() - t_live
            # steady: all sessions open, live runs training
            sampler.phase = "steady"
            steps_before = [live_step(p) for p in live_pages]
            steady_end = time.monotonic() + args.seconds
            while time.monotonic() < steady_end:
                time.sleep(min(1.0, max(0.0, steady_end - time.monotonic())))
            sampler.phase = "after"
            steps_after = [live_step(p) for p in live_pages]
            for i, (p, path) in enumerate(zip(pages, paths)):
                errs = error_texts(p) + [f"JS: {x}" for x in p.js_errors]
                if errs:
                    problems.append(f"session {i + 1} {path} after the steady window: " + "; ".join(errs)[:300])
            for p in live_pages:  # free the CPU before closing
                try:
                    b = live_button(p, "Reset")
                    if b.is_enabled():
                        b.click()
                except Exception:  # noqa: BLE001
                    pass
        finally:
            sampler.stop()
            for c in ctxs:
                c.close()
            browser.close()
        traceback_in_log = "Traceback" in server.log_tail(200_000)
        log_tail = server.log_tail(3000)
    total_s = time.monotonic() - t_start

    # ------------------------------------------------------------ report
    base, opening, live_st, steady = (latency_stats(sampler.of(ph))
                                      for ph in ("baseline", "opening", "live-start", "steady"))
    rss_all = [s[3] for s in sampler.samples if s[3] is not None]
    rss_peak = max(rss_all + [rss_open or 0, rss_first or 0])
    steady_rss = [s[3] for s in sampler.of("steady") if s[3] is not None]
    per_session = (rss_peak - rss_first) / args.sessions if rss_first else None
    growth = (steady_rss[-1] - steady_rss[0]) if len(steady_rss) >= 2 else None
    steady_met = steady.get("over", 1) == 0 and steady.get("failed", 1) == 0
    n_training = sum(1 for r in live_result if r[0] == "training")
    n_busy = sum(1 for r in live_result if r[0] == "busy")
    want_training = min(args.live, live_train.MAX_ACTIVE)
    live_ok = n_training == want_training and n_busy == args.live - want_training
    load = os.getloadavg()
    phase_t0: dict[str, float] = {}
    for ph, t, _, _ in sampler.samples:
        phase_t0.setdefault(ph, t)
    if args.samples:
        Path(args.samples).write_text(json.dumps({"samples": sampler.samples, "cpu": sampler.cpu,
                                                  "loop": sampler.loop}))

    def row(name, st, phase):
        share, lp = sampler.cpu_share(phase), sampler.loop_share(phase)
        cpu = ("–" if share is None else f"{share:.2f}") + " | " + ("– | –" if lp is None else
                                                                    f"{lp[0]:.2f} | {lp[1]:.2f}")
        if "median" not in st:
            return f"| {name} | {st['n']} | – | – | – | {st['failed']} failed | {cpu} |"
        return (f"| {name} | {st['n']} | {ms(st['median'])} | {ms(st['p95'])} | {ms(st['max'])} | "
                f"{st['over']} ({st['failed']} failed) | {cpu} |")

    cmd = "python bench/sessions.py" + ("" if (args.sessions, args.live, args.seconds, args.interval,
                                               args.browser_nice) == (20, 3, 60.0, 0.5, 0) else
                                        f" --sessions {args.sessions} --live {args.live} --seconds {args.seconds:g}"
                                        f" --interval {args.interval:g} --browser-nice {args.browser_nice}")
    counts = {p: paths.count(p) for p in dict.fromkeys(paths)}
    if per_session is None or rss_first is None:
        mem_row = "| memory per session bounded | no RSS | |"
    else:
        end_per = (steady_rss[-1] - rss_first) / 1024 / args.sessions if steady_rss else float("nan")
        grew = "–" if growth is None else f"{growth / 1024:+,.1f} MiB"
        verdict = ("**met**: no growth while training" if growth is not None and growth <= GROWTH_OK_KIB
                   else "**check**: grew while training")
        mem_row = (f"| memory per session bounded | {per_session / 1024:,.1f} MiB per session at the peak "
                   f"({mib(rss_peak)} MiB − {mib(rss_first)} MiB after the first page load, / {args.sessions}); "
                   f"{end_per:,.1f} MiB per session at the end of the steady window; RSS change over the "
                   f"{args.seconds:g} s with live training: {grew} | {verdict} (≤ {GROWTH_OK_KIB // 1024} MiB "
                   "counts as noise) |")
    lines = [
        f"# {args.sessions} browser sessions at once: health latency and server memory",
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}; the server, "
        f"the headless Chromium with all {args.sessions} sessions and (at the time) a background training job "
        f"share these cores" + (f" (Chromium and its autogroup at nice {args.browser_nice}: in a lecture hall "
                                "the browsers run on other machines)" if args.browser_nice else "") + ". "
        f"Load average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. "
        f"Whole run: {total_s:.0f} s. **One run, on a shared machine: noisy.**",
        "",
        f"Sessions ({args.sessions} Chromium contexts, each its own Streamlit session, all opened at once): "
        + ", ".join(f"{p} ×{n}" for p, n in counts.items()) + ". "
        f"{args.live} of the /live sessions press Start one after the other; at most "
        f"{live_train.MAX_ACTIVE} runs train at once by design.",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| `/_stcore/health` under 1 s with {args.sessions} sessions ({n_training} training live) | "
        + (f"median {ms(steady.get('median'))} ms, p95 {ms(steady.get('p95'))} ms, max {ms(steady.get('max'))} ms, "
           f"{steady.get('over', '–')} of {steady['n']} over 1 s" if "median" in steady else "no answer")
        + f" | **{'met' if steady_met else 'missed'}** |",
        mem_row,
        "| the third Start gets the friendly busy message | "
        + ", ".join(f"session {i + 1}: {r[0]}{(' (' + r[1] + ')') if r[1] else ''}" for i, r in enumerate(live_result))
        + f" | **{'met' if live_ok else 'missed'}** |",
        "",
        "## Health latency (`GET /_stcore/health`, every "
        f"{args.interval:g} s, 10 s timeout)",
        "",
        "| phase | requests | median ms | p95 ms | max ms | over 1 s | server CPU (cores) | event-loop thread "
        "CPU (s/s) | event-loop thread run-queue wait (s/s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        row(f"baseline: 0 sessions, {args.seconds:g} s (after a warm-up session was closed)", base, "baseline"),
        row(f"opening: {args.sessions} sessions loading at once ({open_s:.0f} s until all rendered)", opening,
            "opening"),
        row(f"live start: {args.live} Start clicks, one after the other ({live_s:.0f} s)", live_st, "live-start"),
        row(f"steady: {args.sessions} sessions open, {n_training} live runs training, {args.seconds:g} s", steady,
            "steady"),
        "",
        "Health answers over 1 s (phase, seconds into the phase, latency ms): "
        + (", ".join(f"{ph} +{t - phase_t0[ph]:.1f} s: {ms(lat)}" for ph, t, lat, _ in sampler.samples
                     if (lat is None or lat > HEALTH_TARGET_S) and ph in phase_t0) or "none") + ".",
        "",
        "## Server memory (RSS of the `streamlit run` process, /proc/PID/status VmRSS)",
        "",
        "| moment | RSS MiB |",
        "|---|---:|",
        f"| server up, no page loaded yet | {mib(rss_cold)} |",
        f"| after the first page load (warm-up session, {warm_s:.0f} s; imports torch) | {mib(rss_first)} |",
        f"| all {args.sessions} sessions rendered | {mib(rss_open)} |",
        f"| start of the steady window | {mib(steady_rss[0] if steady_rss else None)} |",
        f"| end of the steady window | {mib(steady_rss[-1] if steady_rss else None)} |",
        f"| peak (all samples) | {mib(rss_peak)} |",
        "",
        "RSS during the steady window, every 10 s: "
        + ", ".join(f"{s[1] - sampler.of('steady')[0][1]:.0f} s: {mib(s[3])}"
                    for k, s in enumerate(sampler.of("steady")) if k % max(1, round(10 / args.interval)) == 0)
        + " MiB.",
        "",
        f"Live runs during the steady window: steps {steps_before} → {steps_after} (−1: no step counter, e.g. "
        f"the busy session). A run's curves are `Series` of at most `history_cap` = {live_state.LiveConfig().history_cap} "
        f"points that halve their resolution, its replay a `FrameHistory` of at most {live_state.REPLAY_FRAMES} frames "
        "(`stn_core/train/live_state.py`): a long run's memory stops growing by design; the growth above is "
        f"what {args.seconds:g} s of {n_training} runs plus {args.sessions} redrawing pages add.",
        "",
        "## Checks",
        "",
    ]
    if problems:
        lines += ["Problems seen:", ""] + [f"- {x}" for x in problems]
    else:
        lines.append(f"All {args.sessions} sessions rendered their page's title with the app's navigation and no "
                     "exception box, error alert or JavaScript error, before and after the steady window.")
    lines.append(f"Server log: {'a Traceback was logged' if traceback_in_log else 'no Traceback'}.")
    if traceback_in_log:
        lines += ["", "```", log_tail, "```"]
    lines += notes
    write_report(args.out, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
