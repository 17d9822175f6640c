"""Shared pytest fixtures: a Streamlit server and a headless Chromium.

Only the browser tests use these fixtures; nothing here runs for other tests.
"""
from __future__ import annotations

import os

import pytest

from browser_util import CHROMIUM_ARGS, CHROMIUM_PATH, streamlit_server

VIEWPORT = {"width": 1440, "height": 900}  # a typical presentation screen


@pytest.fixture(scope="session")
def app_server():
    """`streamlit run app.py` on a free 127.0.0.1 port for the whole session."""
    with streamlit_server() as server:
        yield server


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (no downloaded browser needed)."""
    if not os.access(CHROMIUM_PATH, os.X_OK):
        pytest.skip(f"{CHROMIUM_PATH} not found (install with: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def page(browser):
    """A fresh browser context (own cookies/session) and page per test.
    Uncaught JavaScript errors are collected in page.js_errors."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    pg = context.new_page()
    pg.js_errors = []
    pg.on("pageerror", lambda exc: pg.js_errors.append(str(exc)))
    pg.set_default_timeout(60_000)
    try:
        yield pg
    finally:
        context.close()
