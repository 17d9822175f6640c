"""Real-browser test of the MNIST addition page: with a tiny untrained 2×ST-FCN checkpoint
($STN_LAB_CHECKPOINTS) the page shows both transformers' boxes and outputs; "Random pair" draws a
new pair (the URL follows) without an error box; screenshots in results/screenshots/addition-*.png."""
from __future__ import annotations

from browser_util import (PAD, SCREENSHOT_DIR, assert_clean, draw_stroke, element_pixels, fresh_page, mean_abs_diff,
                          open_page, query_params, require_browser, save_full_page, settled_pixels, streamlit_server,
                          wait_idle)

require_browser()

MAIN = '[data-testid="stMainBlockContainer"]'
CHART = f'{MAIN} [data-testid="stPlotlyChart"]'


def test_addition_page_random_pair(browser, tmp_path, monkeypatch):
    from tiny_checkpoints import make_tiny_addition_checkpoint

    make_tiny_addition_checkpoint(tmp_path, "2st-fcn")
    monkeypatch.setenv("STN_LAB_CHECKPOINTS", str(tmp_path))
    with streamlit_server() as server:
        with fresh_page(browser) as page:
            open_page(page, server.url, "/addition?a=3&b=7&seed=1&model=2st-fcn")
            pair = page.locator(CHART).filter(has_text="Input pair").first
            pair.locator(".main-svg").first.wait_for(state="visible", timeout=60_000)
            wait_idle(page)
            assert_clean(page, "/addition (tiny 2×ST-FCN)")
            assert page.get_by_text("transformer 2", exact=False).count() >= 1
            page.locator(CHART).filter(has_text="What each transformer passes on").first.wait_for(state="visible")
            page.mouse.move(1, 1)
            before = element_pixels(pair)
            save_full_page(page, SCREENSHOT_DIR / "addition-2st-fcn.png")
            q0 = query_params(page)
            page.get_by_role("button", name="Random pair").first.click()
            page.wait_for_function(
                "q => { const p = new URL(location.href).searchParams;"
                " return p.get('a') !== q.a || p.get('b') !== q.b || p.get('seed') !== q.seed; }",
                arg=q0, timeout=60_000)
            wait_idle(page)
            assert_clean(page, "/addition after Random pair")
            after = settled_pixels(page, page.locator(CHART).filter(has_text="Input pair").first)
            assert before.shape != after.shape or mean_abs_diff(before, after) > 0.5, "the pair did not change"
            save_full_page(page, SCREENSHOT_DIR / "addition-random.png")




def test_addition_page_draw_digit_two(browser, tmp_path, monkeypatch):
    """Digit 2 drawn with real mouse events on its pad: the pair's title says "drawn" and the
    picture changes; no error box."""
    from tiny_checkpoints import make_tiny_addition_checkpoint

    make_tiny_addition_checkpoint(tmp_path, "2st-fcn")
    monkeypatch.setenv("STN_LAB_CHECKPOINTS", str(tmp_path))
    with streamlit_server() as server:
        with fresh_page(browser) as page:
            open_page(page, server.url, "/addition?a=3&b=7&seed=1&model=2st-fcn&src_b=draw")
            pad = page.locator(PAD).first
            pad.wait_for(state="visible", timeout=60_000)
            wait_idle(page)
            assert_clean(page, "/addition with digit 2 to draw")
            pair = page.locator(CHART).filter(has_text="Input pair").first
            page.mouse.move(1, 1)
            blank = element_pixels(pair)
            draw_stroke(page, pad)
            page.get_by_text("Digit 2 is empty", exact=False).wait_for(state="detached", timeout=60_000)
            wait_idle(page)
            assert_clean(page, "/addition after drawing digit 2")
            after = settled_pixels(page, page.locator(CHART).filter(has_text="Input pair").first)
            assert blank.shape != after.shape or mean_abs_diff(blank, after) > 0.5, "drawing did not change the pair"
            save_full_page(page, SCREENSHOT_DIR / "addition-drawn.png")
