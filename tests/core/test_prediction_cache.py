"""stn_core.checkpoints.prediction_cache: arrays cached by checkpoint id, checked by image id."""
from __future__ import annotations

import numpy as np
import pytest

import stn_core.checkpoints.prediction_cache as pc


@pytest.fixture()
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(pc, "repo_root", lambda: tmp_path)
    return tmp_path


def test_cache_path_is_named_by_stem_prefix_and_checkpoint_id(root):
    assert pc.cache_path(root / "checkpoints" / "cub50_2st.json", "ab12") == root / "runs/cub_eval/cub50_2st_ab12.npz"
    assert pc.cache_path("run", "ab12", prefix="val_") == root / "runs/cub_eval/val_run_ab12.npz"


def test_saved_arrays_come_back_exactly_with_their_image_ids(root):
    path, logits = pc.cache_path("m", "c1"), np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    pc.save_cached(path, [7, 8, 9], logits=logits, boxes=np.zeros((3, 0, 4)))
    got = pc.load_cached(path, [7, 8, 9])
    assert np.array_equal(got["logits"], logits) and got["boxes"].shape == (3, 0, 4)
    assert got["image_ids"].tolist() == [7, 8, 9]
    assert not [p for p in path.parent.iterdir() if p != path]  # no temporary left beside it


def test_other_images_missing_or_corrupt_files_are_a_miss_not_wrong_rows(root):
    path = pc.cache_path("m", "c1")
    assert pc.load_cached(path) is None
    pc.save_cached(path, [1, 2], boxes=np.ones((2, 1, 4)))
    assert pc.load_cached(path, [2, 1]) is None and pc.load_cached(path, [1, 2, 3]) is None
    assert pc.load_cached(path) is not None
    path.write_bytes(b"PK\x03\x04 not a zip")
    assert pc.load_cached(path, [1, 2]) is None


def test_a_cache_holding_pickled_objects_is_refused(root):
    path = pc.cache_path("m", "c1")
    path.parent.mkdir(parents=True)
    np.savez(path, image_ids=np.array([1]), boxes=np.array([{"evil": 1}], dtype=object))
    assert pc.load_cached(path, [1]) is None
