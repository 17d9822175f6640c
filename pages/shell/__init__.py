"""The app's light shell: what ``app.py`` and the home page need, importing Streamlit and the standard
library only, so that a fresh server paints its first page without loading torch, plotly or pandas.

* ``navigation``: the per-run guard that sends every page through ``app.py``;
* ``widgets``: links to the current view and download buttons;
* ``preload``: after a run has finished, loads the heavy modules (``pages.lab``, in its fixed order)
  and the shared caches in a background thread, once per server;
* ``assets/``: the home page's pipeline picture, rendered by ``python scripts/make_home_figure.py``
  with the library (a test renders it again and compares).

Heavy helpers live in ``pages/lab/``.
"""
