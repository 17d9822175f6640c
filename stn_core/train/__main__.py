"""``python -m stn_core.train …``: see :mod:`stn_core.train`."""

from stn_core.checkpoints import CheckpointError
from stn_core.train import main

try:
    main()
except CheckpointError as e:
    raise SystemExit(f"error: {e}") from None
