"""Streamlit-only widgets shared by every page: links to the current view and download buttons."""

from __future__ import annotations

from collections.abc import Callable

import base64
import html
from urllib.parse import urlencode, urlsplit, urlunsplit

import streamlit as st


def query_dict() -> dict[str, str]:
    """The current URL query parameters as a plain dict (last value wins)."""
    return {k: st.query_params.get(k, "") for k in st.query_params.keys()}


def view_url(params: dict[str, str] | None = None) -> str:
    """The absolute URL of this page with ``params`` (default: the current query string)."""
    base = str(getattr(st.context, "url", "") or "")
    parts = urlsplit(base)
    query = urlencode(query_dict() if params is None else params)
    if not parts.scheme:  # no browser context (tests): a relative link
        return "?" + query if query else "./"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def copy_link(where=None, params: dict[str, str] | None = None) -> None:
    """A "Link to this view" button that opens a box with a copy button (``st.code``'s clipboard icon).

    A popover, not an expander: the browser mounts a popover's content only when it is opened, so the code
    box's syntax-highlighter bundle no longer delays every page's first full render (~0.2–0.5 s of a warm
    new tab, measured with ``bench/startup.py``)."""
    where = st.sidebar if where is None else where
    with where.popover(":material/link: Link to this view", width="stretch" if where is st.sidebar else "content"):
        st.code(view_url(params), language=None, wrap_lines=True)
        st.caption("Copy with the icon at the right; the link reopens this page with these settings.")


def png_download(image_png: bytes | Callable[[], bytes], filename: str, label: str = "Download PNG", where=st,
                 key: str | None = None) -> None:
    """A download button for a PNG: its bytes, or a function that makes them (``lambda: viz.png_bytes(x)``),
    called only when the button is clicked (Streamlit's deferred download), so a rerun encodes nothing."""
    where.download_button(label, data=image_png, file_name=filename, mime="image/png",
                          icon=":material/download:", key=key)


def svg_img_tag(svg: str, alt: str = "", max_width: int = 1200) -> str:
    """Wrap an SVG document as an ``<img>`` with a data URI: it survives HTML sanitisers
    (st.html strips inline <svg>) and scales to the container width, at most ``max_width`` CSS pixels."""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (f'<img src="data:image/svg+xml;base64,{data}" alt="{html.escape(alt, quote=True)}" '
            f'style="width:100%;max-width:{int(max_width)}px;height:auto"/>')
