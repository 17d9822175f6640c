"""The light shell: the home page's pipeline picture is a shipped file that the library renders
identically; neither ``app.py`` nor the home page imports torch, and no background preload runs under
AppTest; the warm-up a real server runs works."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

from pages.lab import home_figure
from pages.shell import home

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_picture_is_what_the_library_renders_now():
    fresh, shipped = home_figure.render(), home.load()
    assert shipped is not None, "run: python scripts/make_home_figure.py"
    assert shipped.what == fresh.what
    assert shipped.svg == fresh.svg  # thumbnails are embedded PNGs: a changed warp changes the text
    a = np.asarray(Image.open(io.BytesIO(shipped.png)).convert("RGB"), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(fresh.png)).convert("RGB"), dtype=np.int16)
    assert a.shape == b.shape
    assert np.abs(a - b).mean() < 0.5  # identical up to font rasterisation


def test_a_missing_picture_is_a_friendly_error_not_a_traceback(monkeypatch, tmp_path):
    monkeypatch.setattr(home, "SVG", tmp_path / "missing.svg")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "STN Lab"
    assert "make_home_figure.py" in at.error[0].value


def test_the_home_page_runs_without_importing_torch_or_the_heavy_helpers():
    code = ("import sys\nfrom streamlit.testing.v1 import AppTest\n"
            "at = AppTest.from_file('app.py', default_timeout=60).run()\n"
            "assert not at.exception and at.title[0].value == 'STN Lab'\n"
            "import time; time.sleep(3)  # a background preload (off under AppTest) would be importing by now\n"
            "print(' '.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    mods = set(out.stdout.split())
    assert "pages.shell.home" in mods
    heavy = {"torch", "pandas", "stn_core", "pages.lab"}
    assert not heavy & mods, heavy & mods


def test_the_warm_up_fills_the_shared_caches_and_loads_torchvision():
    from pages.lab import warmup

    warmup.warm()
    assert "torchvision.ops" in sys.modules and "torchvision.models" in sys.modules
