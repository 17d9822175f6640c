"""STN Lab: an interactive lab for spatial transformer networks (Jaderberg et al., NIPS 2015).

Run with ``streamlit run app.py``. To add a page, append an ``st.Page`` to ``PAGES``.
"""

import streamlit as st
import torch

# Page-sized tensors: one intra-op thread is faster than a thread pool that concurrent
# sessions (and a 2-core laptop) contend for.
torch.set_num_threads(1)

st.set_page_config(page_title="STN Lab", page_icon="🧭", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/tour.py", title="Guided tour", icon=":material/school:", url_path="tour"),
    st.Page("pages/playground.py", title="Transform playground", icon=":material/transform:",
            url_path="playground"),
    st.Page("pages/tps.py", title="Thin-plate spline", icon=":material/grid_on:", url_path="tps"),
    st.Page("pages/sampler.py", title="Nearest vs bilinear", icon=":material/blur_on:", url_path="sampler"),
    st.Page("pages/explorer.py", title="Trained model explorer", icon=":material/model_training:",
            url_path="explorer"),
    st.Page("pages/dcn.py", title="STN vs deformable conv", icon=":material/scatter_plot:", url_path="dcn"),
    st.Page("pages/cub.py", title="CUB attention", icon=":material/flutter_dash:", url_path="cub"),
    st.Page("pages/addition.py", title="MNIST addition", icon=":material/add_circle:", url_path="addition"),
    st.Page("pages/live.py", title="Live training", icon=":material/play_circle:", url_path="live"),
]

st.navigation(PAGES).run()
