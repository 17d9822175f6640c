"""STN Lab: an interactive lab for spatial transformer networks (Jaderberg et al., NIPS 2015).

Run with ``streamlit run app.py``. The pages are listed in ``pages/__init__.py``.
"""

import streamlit as st
import torch

from pages import PAGES
from pages.lab import navigation

# Page-sized tensors: one intra-op thread is faster than a thread pool that concurrent
# sessions (and a 2-core laptop) contend for.
torch.set_num_threads(1)

st.set_page_config(page_title="STN Lab", page_icon="🧭", layout="wide")
navigation.mark_app_run()
st.navigation([st.Page(p.script, title=p.title, icon=p.icon, url_path=p.url_path, default=p.url_path is None)
               for p in PAGES]).run()
