"""Helpers of the app's pages, never routes (Streamlit's legacy page scanner ignores sub-folders):
shared widgets and cached loaders (``common``), the plotly and SVG/PNG figures (``figures``), export
(``export``, ``export_ui``) and each page's view logic. The light shell that ``app.py`` and the home
page need lives in ``pages/shell``.

Importing this package first loads the heavy modules every page needs, in one fixed order. Python
imports a package once, holding its import lock meanwhile, so several first visits on a fresh server
(and the background warm-up, ``pages.shell.preload``) never import pandas, plotly, torch or
``stn_core`` from two threads at once (which raised "partially initialized module" and
``_DeadlockError`` before).
"""

import numpy  # noqa: F401
import pandas  # noqa: F401
import plotly.graph_objects  # noqa: F401
import torch
from PIL import Image  # noqa: F401

import stn_core  # noqa: F401

# Page-sized tensors: one intra-op thread is faster than a thread pool that concurrent sessions (and a
# 2-core laptop) contend for.
torch.set_num_threads(1)
