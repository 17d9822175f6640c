"""Real-browser check of the Live training page's training replay: after a short run and Pause,
"Training replay (GIF)" downloads (the GIF is made on click, Streamlit's deferred download) a GIF
that Pillow decodes to at least two frames."""
from __future__ import annotations

import io

from PIL import Image

from browser_util import error_texts, open_page, require_browser, wait_idle

require_browser()

MAIN = '[data-testid="stMainBlockContainer"]'


def _button(page, label: str):
    """The button named exactly ``label`` (a has_text filter "Start" would also match "restart_alt Reset")."""
    return page.locator(MAIN).get_by_role("button", name=label, exact=True).first


def test_live_training_replay_gif_downloads(app_server, page):
    open_page(page, app_server.url, "/live")
    _button(page, "Start").click()
    try:
        page.wait_for_function(  # the display batch is refreshed every 10 steps: two frames after step 10
            "() => { const m = document.querySelector('[data-testid=\"stMainBlockContainer\"]').innerText"
            ".match(/step ([\\d,]+)/); return m && parseInt(m[1].replace(/,/g, '')) >= 12; }",
            timeout=240_000, polling=250)
        _button(page, "Pause").click()
        page.get_by_text("Paused", exact=False).first.wait_for(state="visible", timeout=30_000)
        wait_idle(page)
        button = _button(page, "Training replay (GIF)")
        button.wait_for(state="visible", timeout=30_000)
        with page.expect_download(timeout=60_000) as info:
            button.click()
        path = info.value.path()
        assert info.value.suggested_filename.startswith("live-replay-step")
        data = open(path, "rb").read()
        im = Image.open(io.BytesIO(data))
        assert im.format == "GIF" and im.n_frames >= 2
        assert not error_texts(page), error_texts(page)
        assert not page.js_errors, page.js_errors
    finally:
        _button(page, "Reset").click()  # free the server's CPU for the other tests
        wait_idle(page)
