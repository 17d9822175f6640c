"""pages/lab/common.py: the export helpers: the PNG download config and the link to the current view."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pages.lab import common  # noqa: E402


def test_plot_config_names_the_png_and_keeps_the_camera_button() -> None:
    cfg = common.plot_config("playground-output")
    assert cfg["displayModeBar"] == "hover"  # camera button on hover, never over a title
    assert cfg["toImageButtonOptions"] == {"format": "png", "scale": 2, "filename": "playground-output"}
    assert common.PLOT_CONFIG["toImageButtonOptions"].get("filename") is None  # the shared default is untouched


def test_view_url_without_a_browser_is_a_relative_link_with_the_params() -> None:
    assert common.view_url({"step": "3", "image": "mnist-7"}) == "?step=3&image=mnist-7"
    assert common.view_url({}) == "./"
