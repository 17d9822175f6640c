"""Real-browser load test: a lecture hall opens the app at once. Twenty browser sessions (own
contexts: own cookies, own Streamlit session) on a fresh server, the app's pages in turn (every page
at least once), all in flight before any is drawn. Every one must render its page's title (h1), finish its
script run, show the app's navigation (the titles of ``pages.PAGES``, in order) and no exception
box, error alert or uncaught JavaScript error.

Bounded: the server starts fresh (``streamlit_server``), every wait has a timeout, and one overall
deadline covers the twenty first renders (a cold server imports torch while all twenty runs start;
on the shared 2-core machine that takes minutes, not seconds).
"""
from __future__ import annotations

import time
import urllib.parse

from browser_util import (REPO_ROOT, assert_clean, nav_labels, require_browser, streamlit_server,
                          wait_idle)

require_browser()

from pages import PAGES  # noqa: E402

MAIN = '[data-testid="stMainBlockContainer"]'
N_SESSIONS = 20  # a lecture hall; the pages in turn
TITLES = {p.path: p.heading for p in PAGES}  # each page's h1, from pages/__init__.py
ALL_RENDERED_S = 420.0  # all twenty first renders together (cold server, busy 2-core machine)
PER_PAGE_IDLE_S = 120.0  # one page's remaining run after its title shows


def _sessions() -> list[str]:
    """Twenty URL paths, the pages in turn (home, tour, …, live, home, tour, …): every page at least once."""
    assert len(PAGES) <= N_SESSIONS, "more pages than sessions: raise N_SESSIONS"
    return [PAGES[i % len(PAGES)].path for i in range(N_SESSIONS)]


def test_titles_match_the_page_scripts():
    """Every page's heading in pages/__init__.py is the one its script shows."""
    for spec in PAGES:
        src = (REPO_ROOT / spec.script).read_text(encoding="utf-8")
        assert f'"{TITLES[spec.path]}"' in src, f"{spec.script}: title {TITLES[spec.path]!r} not in the script"


def test_twenty_sessions_at_once(browser):
    want_nav = [p.title for p in PAGES]
    paths = _sessions()
    assert len(paths) == 20
    with streamlit_server() as server:
        ctxs, pages = [], []
        try:
            for path in paths:  # all twenty in flight before any is drawn
                ctx = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
                ctxs.append(ctx)
                pg = ctx.new_page()
                pg.js_errors = []
                pg.on("pageerror", lambda exc, pg=pg: pg.js_errors.append(str(exc)))
                pg.set_default_timeout(60_000)
                pg.goto(server.url + path, wait_until="commit", timeout=120_000)
                pages.append(pg)
            deadline = time.monotonic() + ALL_RENDERED_S
            for i, (pg, path) in enumerate(zip(pages, paths)):
                what = f"session {i + 1}/20 on {path}"
                left_ms = max(5_000, (deadline - time.monotonic()) * 1000)
                pg.locator(f"{MAIN} h1").filter(has_text=TITLES[path]).first.wait_for(
                    state="visible", timeout=left_ms)
                wait_idle(pg, PER_PAGE_IDLE_S)
                assert_clean(pg, what)
                # the sidebar navigation renders with the run; allow it a bounded moment to settle
                pg.wait_for_function(
                    "n => document.querySelectorAll('[data-testid=\"stSidebarNavLink\"], "
                    "[data-testid=\"stTopNavLink\"]').length === n", arg=len(want_nav), timeout=30_000, polling=250)
                assert nav_labels(pg) == want_nav, f"{what}: navigation {nav_labels(pg)} (legacy pages/ mode?)"
                got = urllib.parse.urlsplit(pg.url).path
                assert got == path, f"{what}: ended at {pg.url}"
            # a last look at all twenty together: none turned into an error while the others loaded
            for i, (pg, path) in enumerate(zip(pages, paths)):
                assert_clean(pg, f"session {i + 1}/20 on {path} (after all twenty rendered)")
            assert server.proc.poll() is None, f"the server exited:\n{server.log_tail()}"
            assert "Traceback" not in server.log_tail(20_000), f"the server logged a traceback:\n{server.log_tail()}"
        finally:
            for c in ctxs:
                c.close()

