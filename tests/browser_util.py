"""Helpers for the real-browser tests: a Streamlit server process and page waits.

Used by tests/conftest.py (fixtures) and tests/test_browser.py. Nothing here
imports playwright at module level, so importing it never fails.
"""
from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT_DIR = REPO_ROOT / "results" / "screenshots"

CHROMIUM_PATH = "/usr/bin/chromium"
# `playwright install` cannot download here: use Debian's Chromium.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
]

HEALTH_TIMEOUT_S = 60.0  # server process up and answering /_stcore/health
FIRST_RUN_TIMEOUT_S = 120.0  # first script run imports torch: slow on 2 cores
RUN_TIMEOUT_S = 60.0  # any later rerun


def in_ci() -> bool:
    """True when the CI variable says we run in CI (then nothing may be skipped)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitServer:
    """A `streamlit run app.py` subprocess on 127.0.0.1; `url` is its base URL."""

    def __init__(self, port: int, proc: subprocess.Popen, log_path: Path) -> None:
        self.port = port
        self.proc = proc
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"

    def log_tail(self, n_chars: int = 4000) -> str:
        """The last characters of the server's combined stdout/stderr."""
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError:
            return "<no log>"


def wait_healthy(server: StreamlitServer, timeout_s: float, poll_s: float = 0.25) -> None:
    """Poll ``/_stcore/health`` every ``poll_s`` until it answers 200; a clear error when the server
    exits first or stays silent for ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    health = f"{server.url}/_stcore/health"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"streamlit exited with code {server.proc.returncode} before it was "
                f"healthy. Log tail:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(health, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(poll_s)
    raise TimeoutError(
        f"streamlit did not answer {health} within {timeout_s:.0f}s. "
        f"Log tail:\n{server.log_tail()}"
    )


def stop_process(proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """Terminate ``proc`` if it still runs, kill it after ``timeout_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)


def launch_streamlit(app: str, port: int, log, cwd: Path = REPO_ROOT) -> subprocess.Popen:
    """``streamlit run <app>`` headless on 127.0.0.1:``port`` (no file watcher, no usage stats), run
    from ``cwd``, stdout and stderr to ``log`` (a file or descriptor)."""
    cmd = [
        sys.executable, "-m", "streamlit", "run", app,
        "--server.headless", "true",
        "--server.address", "127.0.0.1",
        "--server.port", str(port),
        "--server.fileWatcherType", "none",  # no file watching: saves CPU
        "--browser.gatherUsageStats", "false",
    ]
    return subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)


@contextlib.contextmanager
def streamlit_server(app: str = "app.py") -> Iterator[StreamlitServer]:
    """Start `streamlit run <app>` headless on a free port, wait until healthy, stop at exit."""
    port = free_port()
    log_fd, log_name = tempfile.mkstemp(prefix="stn-streamlit-", suffix=".log")
    log_path = Path(log_name)
    proc = launch_streamlit(app, port, log_fd)
    os.close(log_fd)
    server = StreamlitServer(port, proc, log_path)
    try:
        wait_healthy(server, HEALTH_TIMEOUT_S)
        yield server
    finally:
        stop_process(proc)
        with contextlib.suppress(OSError):
            log_path.unlink()


# ---------------------------------------------------------------- page waits

APP = '[data-testid="stApp"]'
# Streamlit marks the root element with the connection and script-run state.
CONNECTED = f'{APP}[data-test-connection-state="CONNECTED"]'
IDLE = f'{APP}[data-test-script-state="notRunning"]'
ERROR_SELECTORS = {
    "exception": '[data-testid="stException"]',
    "error alert": '[data-testid="stAlertContentError"]',
}
NAV_LINKS = '[data-testid="stSidebarNavLink"], [data-testid="stTopNavLink"]'


def wait_idle(page, timeout_s: float = RUN_TIMEOUT_S) -> None:
    """Wait (bounded) until the app is connected, no script run is in progress,
    no element is stale from a previous run, and every <img> has loaded."""
    timeout_ms = timeout_s * 1000
    page.wait_for_selector(CONNECTED, state="attached", timeout=timeout_ms)
    page.wait_for_selector(IDLE, state="attached", timeout=timeout_ms)
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
            if (document.querySelector('[data-stale="true"]')) return false;
            if (document.querySelector('[data-testid="stSkeleton"]')) return false;
            // lazy images below the fold never load by themselves: ignore them
            return Array.from(document.images).filter(i => i.loading !== 'lazy').every(i => i.complete);
        }""",
        timeout=timeout_ms,
        polling=200,
    )
    page.wait_for_timeout(300)  # let the last layout/paint settle


def open_page(page, base_url: str, path: str, timeout_s: float = FIRST_RUN_TIMEOUT_S) -> None:
    """Navigate to base_url+path and wait until the app run has finished."""
    page.goto(base_url + path, wait_until="domcontentloaded", timeout=timeout_s * 1000)
    # The run state is "initial" until the first run starts, so IDLE cannot
    # match before the script has run once.
    wait_idle(page, timeout_s)


def error_texts(page) -> list[str]:
    """Visible text of every exception box / error alert on the page."""
    found = []
    for kind, sel in ERROR_SELECTORS.items():
        for el in page.locator(sel).all():
            found.append(f"{kind}: {el.inner_text()[:800]}")
    return found


def nav_labels(page) -> list[str]:
    """Labels of the navigation links (sidebar or top navigation), without icon names."""
    return [t.strip().splitlines()[-1].strip() if t.strip() else "" for t in page.locator(NAV_LINKS).all_inner_texts()]


def nav_paths(page) -> list[str]:
    """URL paths ('' for the default page) of the navigation links."""
    hrefs = page.locator(NAV_LINKS).evaluate_all("els => els.map(e => e.href || '')")
    out = []
    for h in hrefs:
        path = urllib.parse.urlsplit(h).path if h else ""
        out.append(path.strip("/"))
    return out


def save_full_page(page, path: Path, max_height: int = 8000) -> None:
    """Full-page screenshot written atomically. Streamlit scrolls inside its main
    container, not the document, so grow the viewport to the content height first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    vp = page.viewport_size
    height = page.evaluate(
        """() => {
            const m = document.querySelector('[data-testid="stMain"]')
                   || document.querySelector('[data-testid="stAppViewContainer"]');
            return Math.max(m ? m.scrollHeight : 0, document.documentElement.scrollHeight);
        }"""
    )
    page.set_viewport_size({"width": vp["width"], "height": int(min(max(height, vp["height"]), max_height))})
    try:
        page.wait_for_timeout(300)
        tmp = path.with_name(path.stem + ".tmp.png")
        page.screenshot(path=str(tmp), full_page=True)
        os.replace(tmp, path)
    finally:
        page.set_viewport_size(vp)


def element_pixels(locator) -> np.ndarray:
    """RGB pixels (H, W, 3) uint8 of an element screenshot."""
    from PIL import Image

    png = locator.screenshot(animations="disabled")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


#: The drawing pad (custom component ``components.draw_digit``).
PAD = '[data-testid="draw-digit"] canvas'


def draw_stroke(page, pad) -> None:
    """Draw one near-vertical stroke (a "1") on the drawing pad ``pad`` with real mouse events."""
    box = pad.bounding_box()
    assert box is not None, "drawing pad not visible"
    x = box["x"] + box["width"] * 0.5
    page.mouse.move(x, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(x + 10, box["y"] + box["height"] * 0.8, steps=15)
    page.mouse.up()


def settled_pixels(page, locator, wait_ms: int = 500) -> np.ndarray:
    """:func:`element_pixels` of ``locator`` after moving the mouse off the page (no hover
    overlay) and a short wait for the chart to redraw."""
    page.mouse.move(1, 1)
    page.wait_for_timeout(wait_ms)
    return element_pixels(locator)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute per-channel difference (0..255) of two RGB images.
    Different sizes (layout change) count as maximally different."""
    if a.shape != b.shape:
        return 255.0
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())



def require_browser(hint: str = "") -> None:
    """Call at module level of a browser-test file: skip the module when Debian's Chromium or
    playwright is missing, but fail collection (RuntimeError) under CI=true without Chromium."""
    import pytest

    if not os.access(CHROMIUM_PATH, os.X_OK):
        reason = f"{CHROMIUM_PATH} is missing: the browser tests need Debian's Chromium{hint}"
        if in_ci():
            raise RuntimeError(f"CI=true but {reason}")  # collection error: CI must not pass without them
        pytest.skip(reason, allow_module_level=True)
    pytest.importorskip("playwright.sync_api",
                        reason="playwright is not installed (pip install -r requirements-dev.txt)")


def assert_clean(page, what: str) -> None:
    """Fail when the page shows an error box or recorded an uncaught JS error (page.js_errors)."""
    errors = error_texts(page)
    assert not errors, f"{what}: the app shows errors:\n" + "\n".join(errors)
    assert not page.js_errors, f"{what}: uncaught JavaScript errors: {page.js_errors}"


def query_params(page) -> dict[str, str]:
    """The page URL's query string as a dict."""
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.url).query))


@contextlib.contextmanager
def fresh_page(browser, width: int = 1440, height: int = 900):
    """A page in its own browser context (closed on exit) that records uncaught JS errors in
    page.js_errors and waits at most 60 s by default."""
    ctx = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
    try:
        page = ctx.new_page()
        page.js_errors = []
        page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
        page.set_default_timeout(60_000)
        yield page
    finally:
        ctx.close()
