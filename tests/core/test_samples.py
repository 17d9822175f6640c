"""The shipped samples in data/samples/ load with the stated shapes and match their source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stn_core.data.samples import list_sample_images, load_cub_metadata, load_cub_sample, load_mnist_sample, samples_dir

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_total_size_small():
    total = sum(p.stat().st_size for p in samples_dir().rglob("*") if p.is_file())
    assert total < 3 * 1024 * 1024
    assert (samples_dir() / "README.md").is_file()


def test_mnist_sample():
    x, y = load_mnist_sample()
    assert x.shape == (500, 28, 28) and x.dtype == np.uint8
    assert y.shape == (500,) and y.dtype == np.int64
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert set(np.unique(y)) == set(range(10))
    with np.load(samples_dir() / "mnist_test_500.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["images", "labels"]
    x[0, 0, 0] = 77  # callers get copies
    assert load_mnist_sample()[0][0, 0, 0] == 0


@pytest.mark.skipif(not (SHARED / "mnist" / "t10k-images-idx3-ubyte.gz").is_file(), reason="real MNIST copy absent")
def test_mnist_sample_is_first_500_official():
    from stn_core.data.mnist import load_mnist

    xs, ys = load_mnist("test", root=SHARED / "mnist")
    x, y = load_mnist_sample()
    np.testing.assert_array_equal(x, xs[:500])
    np.testing.assert_array_equal(y, ys[:500])


def test_cub_sample_records():
    recs = load_cub_sample()
    assert len(recs) == 40
    by_class: dict[int, int] = {}
    for r in recs:
        by_class[r["class_id"]] = by_class.get(r["class_id"], 0) + 1
    assert len(by_class) == 8 and set(by_class.values()) == {5}
    meta = load_cub_metadata()
    assert len(meta["part_names"]) == 15
    inside = total = 0
    for r in recs:
        img = r["image"]
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
        h, w = img.shape[:2]
        assert max(h, w) == 448 and [w, h] == r["size"]  # the 448-px models' input
        assert r["is_train"] is False
        x, y, bw, bh = r["bbox"]
        assert -1 <= x and -1 <= y and x + bw <= w + 1 and y + bh <= h + 1
        assert len(r["parts"]) == 15 and r["parts_xyv"].shape == (15, 3)
        assert [p["name"] for p in r["parts"]] == meta["part_names"]
        for p in r["parts"]:
            if p["visible"]:
                total += 1
                inside += x - 2 <= p["x"] <= x + bw + 2 and y - 2 <= p["y"] <= y + bh + 2
            else:
                assert p["x"] == 0 and p["y"] == 0
    assert inside / total > 0.97
    lazy = load_cub_sample(load_images=False)
    assert lazy[0]["image"] is None and Path(lazy[0]["path"]).is_file()


@pytest.mark.skipif(not (SHARED / "cub" / "available_images.txt").is_file(), reason="real CUB copy absent")
def test_cub_sample_coordinates_match_official():
    from stn_core.data.cub import load_cub

    recs = {r.image_id: r for r in load_cub(SHARED / "cub")}
    for s in load_cub_sample(load_images=False):
        r = recs[s["image_id"]]
        assert r.class_id == s["class_id"] and not r.is_train
        with Image.open(s["path"]) as im:
            w, h = im.size
        assert [w, h] == s["size"]
        sx, sy = w / r.size[0], h / r.size[1]
        assert s["bbox"] == pytest.approx([r.bbox[0] * sx, r.bbox[1] * sy, r.bbox[2] * sx, r.bbox[3] * sy], abs=0.02)
        vis = r.parts[:, 2] > 0
        got = s["parts_xyv"]
        np.testing.assert_allclose(got[vis, 0], r.parts[vis, 0] * sx, atol=0.02)
        np.testing.assert_allclose(got[vis, 1], r.parts[vis, 1] * sy, atol=0.02)
        np.testing.assert_array_equal(got[:, 2], r.parts[:, 2])


def test_list_sample_images():
    items = list_sample_images()
    digits = {k: v for k, v in items.items() if k.startswith("MNIST")}
    birds = {k: v for k, v in items.items() if k.startswith("CUB")}
    assert len(digits) == 10 and len(birds) == 40 and len(items) == 50
    for v in digits.values():
        assert v.shape == (28, 28) and v.dtype == np.float32 and 0 <= v.min() and v.max() <= 1
    for v in birds.values():
        assert v.ndim == 3 and v.shape[2] == 3 and v.dtype == np.float32 and v.max() <= 1
    assert "MNIST digit 7 (test #0)" in items
