"""The background warm-up's work (started by ``pages.shell.preload``): importing this module loads
``pages.lab`` (the heavy modules, in their fixed order) and the helpers every page uses; :func:`warm`
then fills the caches shared by all sessions and imports torchvision for the DCN and CUB pages."""

from __future__ import annotations

from pages.lab import figures  # noqa: F401 (plotly figures: imported once, here)
from pages.lab import playground  # noqa: F401
from pages.lab import common
from pages.lab import explorer as ex
from stn_core import registry as reg
from stn_core import torchvision_lazy
from stn_core.data import test_digits as td


def warm() -> None:
    """Shipped samples, the checkpoint catalogue, the explorer's first test set and torchvision. Only
    caches that draw nothing: Streamlit's with ``show_spinner=False``, and the library's own (the test
    set goes into ``stn_core.data.tasks``' memory cache, so the explorer's first visit finds it)."""
    common.catalog()
    choice = ex.default_choice(common.discover_checkpoints())
    if choice is not None:
        td.test_digits(reg.DIST_TASK[choice[0]])
    torchvision_lazy.preload()
