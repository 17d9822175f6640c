"""STN Lab: an interactive lab for spatial transformer networks (Jaderberg et al., NIPS 2015).

Run with ``streamlit run app.py``. The pages are listed in ``pages/__init__.py``. This script imports
the light shell only (``pages/shell``): the home page paints without torch, and the heavy modules load
in the background afterwards (``pages.shell.preload``) or when a page needs them.
"""

import streamlit as st

from pages import PAGES
from pages.shell import navigation, preload

st.set_page_config(page_title="STN Lab", page_icon="🧭", layout="wide")
navigation.mark_app_run()
try:
    # expanded: every page stays listed (Streamlit folds a list of more than twelve behind "View more")
    st.navigation([st.Page(p.script, title=p.title, icon=p.icon, url_path=p.url_path, default=p.url_path is None)
                   for p in PAGES], expanded=True).run()
finally:  # also when the page stopped or asked for a rerun
    preload.start_once()
