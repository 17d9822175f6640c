"""The app's pages in sidebar order: ``app.py`` turns them into ``st.Page`` objects for ``st.navigation``.

A page script (``pages/<name>.py``) composes widgets and figures; its helpers live in ``pages/lab/``.
To add a page, add a :class:`PageSpec` here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageSpec:
    """One page: its script, sidebar title, Material icon, URL path (None: the default page at ``/``) and
    the heading (h1) the page script shows (checked against the script by the browser tests)."""

    script: str
    title: str
    icon: str
    url_path: str | None
    heading: str

    @property
    def path(self) -> str:
        """The page's URL path: ``"/"`` or ``"/<url_path>"``."""
        return "/" + (self.url_path or "")


PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/home.py", "Home", ":material/home:", None,
             "STN Lab"),
    PageSpec("pages/tour.py", "Guided tour", ":material/school:", "tour",
             "Guided tour: Spatial Transformer Networks"),
    PageSpec("pages/playground.py", "Transform playground", ":material/transform:", "playground",
             "Transform playground"),
    PageSpec("pages/tps.py", "Thin-plate spline", ":material/grid_on:", "tps",
             "Thin-plate spline"),
    PageSpec("pages/sampler.py", "Nearest vs bilinear", ":material/blur_on:", "sampler",
             "Nearest vs bilinear sampling"),
    PageSpec("pages/explorer.py", "Trained model explorer", ":material/model_training:", "explorer",
             "Trained model explorer"),
    PageSpec("pages/dcn.py", "STN vs deformable conv", ":material/scatter_plot:", "dcn",
             "Spatial transformer vs deformable convolution"),
    PageSpec("pages/cub.py", "CUB attention", ":material/flutter_dash:", "cub",
             "CUB birds: where do the attention transformers look?"),
    PageSpec("pages/addition.py", "MNIST addition", ":material/add_circle:", "addition",
             "MNIST addition: two digits, two transformers"),
    PageSpec("pages/multidigit.py", "Digit strings", ":material/pin:", "multidigit",
             "Digit strings: transformers inside the network"),
    PageSpec("pages/colocalisation.py", "Co-localisation", ":material/center_focus_strong:", "colocalisation",
             "Co-localisation without labels"),
    PageSpec("pages/volume.py", "3-D transformer", ":material/view_in_ar:", "volume",
             "3-D spatial transformer"),
    PageSpec("pages/live.py", "Live training", ":material/play_circle:", "live",
             "Live training"),
)
