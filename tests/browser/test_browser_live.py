"""Real-browser test of the Live training page: Start trains in the background and the page
redraws by itself (the step counter moves without any click), Pause stops it, Reset clears it."""
from __future__ import annotations

import re

from browser_util import SCREENSHOT_DIR, error_texts, open_page, require_browser, save_full_page, wait_idle

require_browser()

MAIN = '[data-testid="stMainBlockContainer"]'
STEP = re.compile(r"step ([\d,]+)")


def _step(page) -> int:
    m = STEP.search(page.locator(MAIN).inner_text())
    return int(m.group(1).replace(",", "")) if m else -1


def _button(page, label: str):
    return page.locator(f'{MAIN} [data-testid="stButton"] button').filter(has_text=label).first


def test_live_start_updates_by_itself_then_pause(app_server, page):
    open_page(page, app_server.url, "/live")
    assert not error_texts(page)
    _button(page, "Start").click()
    try:
        page.wait_for_function(  # the fragment redraws every second: a step count appears, then grows
            "() => /step [1-9]/.test(document.querySelector('[data-testid=\"stMainBlockContainer\"]').innerText)",
            timeout=240_000, polling=250)  # generous: the shared test machine can be heavily loaded
        first = _step(page)
        page.wait_for_function(
            "(n) => { const m = document.querySelector('[data-testid=\"stMainBlockContainer\"]').innerText"
            ".match(/step ([\\d,]+)/); return m && parseInt(m[1].replace(/,/g, '')) > n; }",
            arg=first, timeout=60_000, polling=250)
        page.locator(f'{MAIN} [data-testid="stImage"] img').first.wait_for(state="visible", timeout=30_000)
        _button(page, "Pause").click()
        page.get_by_text("Paused", exact=False).first.wait_for(state="visible", timeout=30_000)
        wait_idle(page)
        assert not error_texts(page), error_texts(page)
        assert not page.js_errors, page.js_errors
        paused_at = _step(page)
        page.wait_for_timeout(2500)
        assert _step(page) == paused_at, "the step counter moved while paused"
        save_full_page(page, SCREENSHOT_DIR / "live-paused.png")
    finally:
        _button(page, "Reset").click()  # free the server's CPU for the other tests
        wait_idle(page)
