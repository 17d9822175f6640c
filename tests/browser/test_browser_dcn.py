"""Real-browser test of the STN vs deformable convolution page: with tiny untrained checkpoints
($STN_LAB_CHECKPOINTS) both sides render; clicking an output location of the DCN (a white square)
moves the drawn taps and the URL; the row slider does too (keyboard). Screenshots in
results/screenshots/dcn-*.png."""
from __future__ import annotations

from browser_util import (SCREENSHOT_DIR, assert_clean, fresh_page, open_page, query_params, require_browser,
                          save_full_page, streamlit_server, wait_idle)

require_browser()

MAIN = '[data-testid="stMainBlockContainer"]'
CHART = f'{MAIN} [data-testid="stPlotlyChart"]'
TAPS_JS = """el => { const g = el.querySelector('.js-plotly-plot');
  const t = (g && g._fullData || []).find(d => String(d.name).startsWith('conv 2 (7×7) taps at row'));
  return t ? [t.name, Array.from(t.x), Array.from(t.y)] : null; }"""


def test_dcn_page_click_and_slider(browser, tmp_path, monkeypatch):
    from tiny_checkpoints import make_tiny

    make_tiny(tmp_path, "r", "dcn")
    make_tiny(tmp_path, "r", "st-cnn-aff")
    monkeypatch.setenv("STN_LAB_CHECKPOINTS", str(tmp_path))
    with streamlit_server() as server:
        with fresh_page(browser, height=1000) as page:
            open_page(page, server.url, "/dcn?dist=r&index=2&row=0&col=0")
            taps = page.locator(CHART).filter(has_text="taps for conv 2").first
            taps.locator(".main-svg").first.wait_for(state="visible", timeout=60_000)
            wait_idle(page)
            assert_clean(page, "/dcn (tiny checkpoints)")
            before = taps.evaluate(TAPS_JS)
            assert before is not None and before[0].endswith("row 0, col 0"), before
            save_full_page(page, SCREENSHOT_DIR / "dcn-r.png")

            # click the white square of output (row 3, col 3): the first scatter trace, point 15
            point = taps.locator(".scatterlayer .trace").first.locator("path.point").nth(15)
            point.scroll_into_view_if_needed()
            point.click(force=True)
            page.wait_for_function("() => new URL(location.href).searchParams.get('row') === '3'", timeout=60_000)
            wait_idle(page)
            assert_clean(page, "/dcn after a click")
            assert query_params(page).get("col") == "3"
            taps = page.locator(CHART).filter(has_text="taps for conv 2").first
            after = taps.evaluate(TAPS_JS)
            assert after[0].endswith("row 3, col 3") and (after[1] != before[1] or after[2] != before[2])

            # the row slider (keyboard): row 3 → 2
            slider = page.locator(f'{MAIN} [data-testid="stSlider"]').filter(has_text="Output row").first
            thumb = slider.get_by_role("slider").first  # react-aria: a visually hidden <input type=range>
            thumb.focus()
            thumb.press("ArrowLeft")
            page.wait_for_function("() => new URL(location.href).searchParams.get('row') === '2'", timeout=60_000)
            wait_idle(page)
            assert_clean(page, "/dcn after the slider")
            taps = page.locator(CHART).filter(has_text="taps for conv 2").first
            assert taps.evaluate(TAPS_JS)[0].endswith("row 2, col 3")
            save_full_page(page, SCREENSHOT_DIR / "dcn-r-clicked.png")
