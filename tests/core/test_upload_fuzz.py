"""Hostile uploads (tests/hostile_uploads.py): each is either decoded to a finite RGB picture within the
stated limits, or refused with ImageError; the page-level decoder never raises."""

from __future__ import annotations

import os

import numpy as np
import pytest

from hostile_uploads import bad_uploads
from pages.lab.playground import decode_upload
from stn_core.data.images import MAX_SIDE, ImageError, load_image

N = int(os.environ.get("STN_LAB_FUZZ_UPLOADS", "120"))
CASES = bad_uploads(seed=438, n=N)


@pytest.mark.parametrize("name,data", CASES, ids=[c[0] for c in CASES])
def test_upload_is_decoded_or_refused(name, data):
    try:
        img, warns = load_image(data)
    except ImageError as e:
        assert str(e)
    else:
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
        assert max(img.shape[:2]) <= MAX_SIDE and np.isfinite(img).all()
        assert 0.0 <= img.min() and img.max() <= 1.0
        assert all(isinstance(w, str) and w for w in warns)
    res = decode_upload(data, name)  # what the pages call: never raises
    assert (res.image is None) != (res.error is None)
