"""Real-browser test of the CUB attention page: picking another bird in the sidebar changes the
picture (and the link), with no error. Runs with whatever checkpoints/ holds (maybe none)."""
from __future__ import annotations


from browser_util import (SCREENSHOT_DIR, element_pixels, error_texts, mean_abs_diff, open_page, require_browser,
                          save_full_page, wait_idle)

require_browser()

MAIN = '[data-testid="stMainBlockContainer"]'
SIDEBAR = '[data-testid="stSidebar"]'


def test_cub_pick_another_bird(app_server, page):
    open_page(page, app_server.url, "/cub?src=sample&cls=0&i=0")
    first_img = page.locator(f'{MAIN} [data-testid="stImage"] img').first
    first_img.wait_for(state="visible", timeout=120_000)
    assert not error_texts(page), error_texts(page)
    before = element_pixels(first_img)
    box = page.locator(f'{SIDEBAR} [data-testid="stNumberInput"] input').first
    box.fill("7")
    box.press("Enter")
    page.wait_for_function("() => window.location.search.includes('i=7')", timeout=120_000, polling=250)
    wait_idle(page)
    assert not error_texts(page), error_texts(page)
    after = element_pixels(page.locator(f'{MAIN} [data-testid="stImage"] img').first)
    assert mean_abs_diff(before, after) > 5.0, "the bird picture did not change"
    assert not page.js_errors, page.js_errors
    save_full_page(page, SCREENSHOT_DIR / "cub-bird7.png")
