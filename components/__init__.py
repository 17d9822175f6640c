"""Custom Streamlit components of STN Lab: plain ES-module JavaScript and CSS bundled in the repo
(no build step, no CDN), mounted with ``st.components.v2``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


class BundledComponent:
    """A components-v2 component whose ``<stem>.js`` and ``<stem>.css`` sit in ``folder``;
    registered with Streamlit once per process, on first use."""

    def __init__(self, name: str, folder: Path, stem: str) -> None:
        self.name = name
        self.js_path = folder / f"{stem}.js"
        self.css_path = folder / f"{stem}.css"
        self._renderer: Callable[..., Any] | None = None

    def assets(self) -> tuple[str, str]:
        """The component's JavaScript and CSS source (read from the bundled files)."""
        return self.js_path.read_text(encoding="utf-8"), self.css_path.read_text(encoding="utf-8")

    def mount(self) -> Callable[..., Any]:
        """Register the component (once) and return its mounting command."""
        if self._renderer is None:
            import streamlit as st

            js, css = self.assets()
            self._renderer = st.components.v2.component(self.name, js=js, css=css, isolate_styles=True)
        return self._renderer


def event_value(key: str, event: str, session_state: Any = None) -> Any:
    """Inside a component callback: the value of trigger ``event`` of component ``key`` (or None)."""
    if session_state is None:
        import streamlit as st

        session_state = st.session_state
    try:
        value = session_state[key]
    except (KeyError, AttributeError):
        return None
    getter = getattr(value, "get", None)
    return getter(event) if getter else None
