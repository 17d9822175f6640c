"""The app's one navigation guard: every page runs through ``app.py``'s ``st.navigation``.

Streamlit (1.67, ``runtime/pages_manager.py``) puts a server whose entry point has a ``pages/`` folder
beside it in legacy multipage mode until some session executes ``st.navigation``; there is no setting
that turns this off. In legacy mode a first visit to ``/playground`` runs ``pages/playground.py`` alone
(no ``app.py``: no wide layout, a sidebar listing raw files). Several first visits at once each start in
legacy mode, so flipping the process-wide flag helps only the session that flips it.

So the guard is per run: ``app.py`` marks each run it executes (:func:`mark_app_run`), and a page whose
run carries no mark (:func:`require_app`, the first call of every page script) switches the process to
``st.navigation`` mode and reruns, which then goes through ``app.py``. A page run through ``app.py``
pays one attribute read.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

try:  # Streamlit's private flag (see the module docstring); the guard still reruns without it
    from streamlit.runtime.pages_manager import PagesManager
except ImportError:  # pragma: no cover - internal API moved
    PagesManager = None

_MARK = "_stn_lab_via_app"


def mark_app_run() -> None:
    """Called by ``app.py`` before ``st.navigation``: this script run goes through the app."""
    ctx = get_script_run_ctx()
    if ctx is not None:
        setattr(ctx, _MARK, True)


def via_app() -> bool:
    """True when this script run went through ``app.py`` (or runs outside a server, e.g. bare tests)."""
    ctx = get_script_run_ctx()
    return ctx is None or bool(getattr(ctx, _MARK, False))


def require_app() -> None:
    """First call of every page script: rerun through ``app.py`` when this run bypassed it."""
    if via_app():
        return
    if PagesManager is not None:
        PagesManager.uses_pages_directory = False
    st.rerun()
