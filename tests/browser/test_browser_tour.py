"""Real-browser test of the Guided tour: click Next through every step, each renders without an
error box or JavaScript error, the URL follows (?step=N), and each step is saved as
results/screenshots/tour-<n>.png."""
from __future__ import annotations

import urllib.parse

from browser_util import SCREENSHOT_DIR, assert_clean, open_page, require_browser, save_full_page, wait_idle

require_browser()

from pages.lab.tour import N_STEPS, STEPS  # noqa: E402

MAIN = '[data-testid="stMainBlockContainer"]'


def _step_in_url(page) -> str:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.url).query)).get("step", "")


def test_click_next_through_the_tour(app_server, page):
    open_page(page, app_server.url, "/tour?step=1")
    for n in range(1, N_STEPS + 1):
        page.locator(f"{MAIN} h2").filter(has_text=f"{n} ·").first.wait_for(state="visible", timeout=60_000)
        wait_idle(page)
        assert _step_in_url(page) == str(n), page.url
        assert page.get_by_text(f"Step {n} of {N_STEPS}: {STEPS[n - 1].title}").count() >= 1
        assert_clean(page, f"tour step {n}")
        page.mouse.move(1, 1)
        save_full_page(page, SCREENSHOT_DIR / f"tour-{n}.png")
        if n < N_STEPS:
            page.get_by_role("button", name="Next ▶").first.click()
            page.wait_for_function("n => new URL(location.href).searchParams.get('step') === String(n)", arg=n + 1,
                                   timeout=60_000)
    assert page.get_by_role("button", name="Next ▶").first.is_disabled()


def test_link_opens_a_step_and_presentation_mode_hides_the_sidebar(app_server, page):
    open_page(page, app_server.url, "/tour?step=3")
    page.locator(f"{MAIN} h2").filter(has_text="3 ·").first.wait_for(state="visible", timeout=60_000)
    assert page.locator('[data-testid="stSidebar"]').first.is_visible()
    page.get_by_text("Presentation mode").first.click()
    wait_idle(page)
    page.wait_for_function("() => { const s = document.querySelector('[data-testid=\"stSidebar\"]');"
                           " return !s || getComputedStyle(s).display === 'none'; }", timeout=30_000)
    assert_clean(page, "tour in presentation mode")
    save_full_page(page, SCREENSHOT_DIR / "tour-presentation.png")
