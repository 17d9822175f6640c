"""Render the home page's pipeline picture with the library → pages/shell/assets/pipeline.{svg,png,json}.

Usage: python scripts/make_home_figure.py [--check]

The home page shows these files instead of computing the picture on every fresh server, so that its
first paint needs no torch (issue #21). ``--check`` renders and compares without writing (exit 1 on a
difference); ``tests/app/test_home_figure.py`` does the same check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pages.lab import home_figure  # noqa: E402
from pages.shell import home  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped files, write nothing")
    a = ap.parse_args()
    fig = home_figure.render()
    if a.check:
        same = home.load() == fig
        print("pages/shell/assets: " + ("up to date" if same else "DIFFERS from a fresh render"))
        return 0 if same else 1
    home_figure.write(fig)
    print(f"wrote {home.SVG.relative_to(ROOT)}, {home.PNG.relative_to(ROOT)}, {home.META.relative_to(ROOT)} "
          f"({fig.what}; SVG {len(fig.svg) // 1024} KiB, PNG {len(fig.png) // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
