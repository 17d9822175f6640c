"""``python -m stn_core.train …``: see :mod:`stn_core.train`."""

from stn_core.train import main
from stn_core.train.loop import cli

cli(main)
