"""Shared pytest fixtures and markers for ``tests/core`` (the library), ``tests/app`` (the pages: view
logic and Streamlit AppTest) and ``tests/browser`` (the app in headless Chromium).

Browser fixtures (server, Chromium, page), the tiny-MNIST fixture of the training-CLI tests, and the
one CUDA marker: ``@pytest.mark.cuda`` tests skip, with the reason, on a machine without a GPU.
"""
from __future__ import annotations

import os
import signal

import pytest
import torch

from browser_util import CHROMIUM_ARGS, CHROMIUM_PATH, streamlit_server

VIEWPORT = {"width": 1440, "height": 900}  # a typical presentation screen
NO_CUDA = "no CUDA device on this machine"


def _stop_on_sigterm(*_) -> None:
    raise KeyboardInterrupt  # pytest then stops and runs the fixtures' clean-up (servers, browsers)


def pytest_configure(config):
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    config.addinivalue_line("markers", f"cuda: needs a CUDA device (skipped with the reason '{NO_CUDA}')")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=NO_CUDA)
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


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


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """A tiny MNIST in the official idx layout, cut from the shipped sample (500 train, 200 test
    digits), for training-CLI tests that must not need the full dataset."""
    import numpy as np

    from stn_core.data.mnist import write_idx
    from stn_core.data.samples import load_mnist_sample

    root = tmp_path_factory.mktemp("mnist")
    x, y = load_mnist_sample()
    for img, lab, n in (("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 500),
                        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 200)):
        write_idx(root / img, x[:n].astype(np.uint8))
        write_idx(root / lab, y[:n].astype(np.uint8))
    return root
