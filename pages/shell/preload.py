"""Warm the server once, in the background, after a page has been drawn.

A fresh server's first page run would otherwise pay for everything at once: torch, plotly, pandas and
``stn_core`` (~3 s here), the shared caches, and torchvision (~2 s, DCN and CUB only). The home page
needs none of it (see ``pages/shell/__init__.py``), so ``app.py`` calls :func:`start_once` after each
run; the first call starts one low-priority daemon thread that waits :data:`DELAY_S` (the browser is
drawing the first page meanwhile) and then imports ``pages.lab.warmup`` — the heavy modules in
``pages.lab``'s fixed order, then the caches (:func:`pages.lab.warmup.warm`). A page that needs a
module while the thread is still importing it waits on Python's import lock and then finds it loaded,
so nothing is imported twice or from two threads at once.

Off under Streamlit's ``AppTest`` (which runs scripts inside a runtime of its own, in the test's
process) and whenever ``STN_LAB_PRELOAD=0`` (the test suite sets it): only a real server preloads.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time

import streamlit as st
from streamlit.runtime.scriptrunner_utils.script_run_context import add_script_run_ctx, get_script_run_ctx

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_thread: threading.Thread | None = None


def enabled() -> bool:
    """True in a real server unless ``STN_LAB_PRELOAD=0``."""
    if os.environ.get("STN_LAB_PRELOAD", "1").strip() == "0" or "streamlit.testing.v1.app_test" in sys.modules:
        return False
    return st.runtime.exists()


#: Seconds the warm-up waits after the run that starts it: the browser is drawing that first page then,
#: and on a 2-core machine an import burst beside it would slow the paint it is meant to speed up.
DELAY_S = 1.5


def _run() -> None:
    time.sleep(DELAY_S)
    try:  # below the server's other threads for the CPU (Linux: a thread's nice value is its own)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass
    try:
        importlib.import_module("pages.lab.warmup").warm()
    except Exception:  # noqa: BLE001 - a failed warm-up only costs the first visitor the time it saves
        _log.exception("STN Lab: background warm-up failed; pages load what they need themselves")


def start_once() -> threading.Thread | None:
    """Start the warm-up thread if this server has not yet; returns it (None when disabled)."""
    global _thread
    if not enabled():
        return None
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_run, name="stn-lab-preload", daemon=True)
            # the caches are Streamlit's: give the thread this run's context (no element is drawn from it)
            add_script_run_ctx(_thread, get_script_run_ctx())
            _thread.start()
    return _thread
