"""The background warm-up's work (started by ``pages.shell.preload``): importing this module loads
``pages.lab`` (the heavy modules, in their fixed order) and the helpers every page uses; :func:`warm`
then fills the caches shared by all sessions and imports torchvision for the DCN and CUB pages."""

from __future__ import annotations


from pages.lab import common
from pages.lab import figures  # noqa: F401 (plotly figures: imported once, here)
from pages.lab import playground  # noqa: F401
from stn_core import torchvision_lazy


def warm() -> None:
    """Shipped samples, the checkpoint catalogue, and torchvision (no element drawn, no spinner)."""
    common.catalog()
    common.discover_checkpoints()
    torchvision_lazy.preload()
