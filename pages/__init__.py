"""The app's pages in sidebar order: ``app.py`` turns them into ``st.Page`` objects for ``st.navigation``.

A page script (``pages/<name>.py``) composes widgets and figures; its helpers live in ``pages/lab/``.
To add a page, add a :class:`PageSpec` here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageSpec:
    """One page: its script, sidebar title, Material icon and URL path (None: the default page at ``/``)."""

    script: str
    title: str
    icon: str
    url_path: str | None = None


PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/home.py", "Home", ":material/home:"),
    PageSpec("pages/tour.py", "Guided tour", ":material/school:", "tour"),
    PageSpec("pages/playground.py", "Transform playground", ":material/transform:", "playground"),
    PageSpec("pages/tps.py", "Thin-plate spline", ":material/grid_on:", "tps"),
    PageSpec("pages/sampler.py", "Nearest vs bilinear", ":material/blur_on:", "sampler"),
    PageSpec("pages/explorer.py", "Trained model explorer", ":material/model_training:", "explorer"),
    PageSpec("pages/dcn.py", "STN vs deformable conv", ":material/scatter_plot:", "dcn"),
    PageSpec("pages/cub.py", "CUB attention", ":material/flutter_dash:", "cub"),
    PageSpec("pages/addition.py", "MNIST addition", ":material/add_circle:", "addition"),
    PageSpec("pages/live.py", "Live training", ":material/play_circle:", "live"),
)
