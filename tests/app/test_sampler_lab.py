"""Pure logic of the "Nearest vs bilinear" page (pages.lab.sampler): kernels and
sub-gradients, per-pixel reads, gradient fields, the θ experiment and the aliasing demo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stn_core import affine_grid, compose_affine, sample
from pages.lab import sampler as sl


def _image(h: int = 20, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def _grid(out=(16, 18), rot=17.0, scale=0.8, t=(0.05, -0.1)) -> np.ndarray:
    theta = compose_affine(rotation_deg=rot, scale=(scale, scale), translation=t)
    return affine_grid(theta[None], out)[0].numpy()


def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0).double()


# --------------------------------------------------------------------------- kernels

def test_kernel_values() -> None:
    d = np.array([-1.5, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(sl.bilinear_kernel(d), [0, 0, 0.5, 0.75, 1, 0.75, 0.5, 0])
    np.testing.assert_allclose(sl.nearest_kernel(d), [0, 0, 1, 1, 1, 1, 0, 0])  # ⌊x + ½⌋ = m ⟺ −½ ≤ d < ½
    np.testing.assert_allclose(sl.bilinear_subgradient(d), [0, 0, 1, 1, 1, -1, -1, 0])  # +1 at d = 0 (paper)
    np.testing.assert_allclose(sl.nearest_subgradient(d), 0)


def test_subgradient_is_the_derivative_away_from_kinks() -> None:
    d = np.linspace(-1.9, 1.9, 77)
    d = d[np.abs(d - np.round(d)) > 0.02]
    h = 1e-6
    fd = (sl.bilinear_kernel(d + h) - sl.bilinear_kernel(d - h)) / (2 * h)
    np.testing.assert_allclose(sl.bilinear_subgradient(d), fd, atol=1e-6)


def test_kernel_curves_follow_the_kernels() -> None:
    curves = sl.kernel_curves()
    assert set(curves) == {"bilinear", "nearest", "bilinear_grad", "nearest_grad"}
    for key, fn in (("bilinear", sl.bilinear_kernel), ("nearest", sl.nearest_kernel),
                    ("bilinear_grad", sl.bilinear_subgradient)):
        c = curves[key]
        ok = np.isfinite(c.x)
        xs, ys = c.x[ok], c.y[ok]
        mids = []  # midpoints of each drawn segment must lie on the function
        for a in range(len(c.x) - 1):
            if np.isfinite(c.x[a]) and np.isfinite(c.x[a + 1]) and c.x[a + 1] > c.x[a]:
                mids.append((0.5 * (c.x[a] + c.x[a + 1]), 0.5 * (c.y[a] + c.y[a + 1])))
        mids = np.array(mids)
        np.testing.assert_allclose(fn(mids[:, 0]), mids[:, 1], atol=1e-12)
        assert xs.min() == -2 and xs.max() == 2 and len(ys) == len(xs)
    taken = [(x, y) for x, y, t in curves["bilinear_grad"].dots if t]
    assert (0.0, 1.0) in taken  # the paper's choice at the kink


# --------------------------------------------------------------------------- reads and zoom

def test_reads_reproduce_the_reference_sampler() -> None:
    img = _image()
    grid = _grid()
    u = _tensor(img)
    g = torch.from_numpy(grid).double()[None]
    v_bil = sample(u, g, "bilinear", backend="reference")[0].permute(1, 2, 0).numpy()
    v_near = sample(u, g, "nearest", backend="reference")[0].permute(1, 2, 0).numpy()
    for i, j in [(0, 0), (3, 7), (15, 17), (8, 2)]:
        x, y = sl.source_pixel(grid, img.shape[:2], i, j)
        reads = sl.bilinear_reads(img, x, y)
        assert len(reads) == 4 and sum(r.weight for r in reads) == pytest.approx(1.0)
        np.testing.assert_allclose(sl.value_from_reads(reads), v_bil[i, j], atol=1e-6)
        np.testing.assert_allclose(sl.value_from_reads([sl.nearest_read(img, x, y)]), v_near[i, j], atol=1e-6)


def test_reads_outside_the_image_count_as_zero() -> None:
    img = np.ones((4, 4, 3), np.float32)
    reads = sl.bilinear_reads(img, -0.5, 1.0)  # half a pixel left of column 0
    assert [r.inside for r in reads] == [False, True, False, True]
    assert sl.value_from_reads(reads)[0] == pytest.approx(0.5)
    assert not sl.nearest_read(img, -0.6, 1.0).inside


def test_zoom() -> None:
    img = _image()
    grid = _grid()
    z = sl.zoom(img, grid, 5, 6, radius=2)
    assert z.patch.shape == (6, 6, 3) and z.sources.shape == (3, 3, 2)
    np.testing.assert_allclose(z.sources[1, 1], (z.x, z.y))
    assert z.n0 == math.floor(z.y) - 2 and z.m0 == math.floor(z.x) - 2
    n, m = z.bilinear[0].n - z.n0, z.bilinear[0].m - z.m0
    np.testing.assert_allclose(z.patch[n, m], z.bilinear[0].value)
    corner = sl.zoom(img, grid, 0, 0)  # neighbours outside the output are NaN
    assert np.isnan(corner.sources[0]).all() and np.isfinite(corner.sources[1, 1]).all()
    clamped = sl.zoom(img, grid, 99, -5)
    assert (clamped.i, clamped.j) == (15, 0)


def test_difference_helpers() -> None:
    a = np.zeros((3, 4, 3))
    b = a.copy()
    b[2, 1, 0] = 0.5
    b[0, 3, 2] = 0.25
    assert sl.largest_difference(a, b) == (2, 1)
    d = sl.difference(a, b)
    assert d.shape == (3, 4) and d.max() == 0.5 and d[0, 3] == 0.25


# --------------------------------------------------------------------------- gradient fields

def test_gradient_fields_agree_and_match_finite_differences() -> None:
    img = _image()
    grid = _grid()
    gf = sl.gradient_fields(img, grid)
    assert gf.gx.shape == (16, 18) and gf.n_kink == 0
    assert gf.max_diff < 1e-10 and gf.max_diff_all < 1e-10 and gf.nearest_max == 0.0
    np.testing.assert_allclose(gf.gx, gf.gx_ref, atol=1e-10)
    # central difference: move one source point by ±h pixels in x
    u = _tensor(img)
    g = torch.from_numpy(grid).double()[None]
    i, j, h = 7, 9, 1e-5
    step = h * 2 / img.shape[1]
    vals = []
    for s in (step, -step):
        gg = g.clone()
        gg[0, i, j, 0] += s
        vals.append(float(sample(u, gg, "bilinear").mean(1)[0, i, j]))
    assert gf.gx[i, j] == pytest.approx((vals[0] - vals[1]) / (2 * h), abs=1e-6)


def test_gradient_fields_on_pixel_centres_are_kinks() -> None:
    img = _image(8, 8)
    grid = _grid((8, 8), rot=0.0, scale=1.0, t=(0.0, 0.0))  # identity: every source point is a pixel centre
    gf = sl.gradient_fields(img, grid)
    assert gf.n_kink == gf.n_total == 64
    assert gf.max_diff == 0.0 and gf.max_diff_all > 0  # the sub-gradients differ by design there
    assert gf.nearest_max == 0.0


# --------------------------------------------------------------------------- experiment

def _digit() -> np.ndarray:
    img = np.zeros((28, 28), np.float32)
    img[5:23, 12:16] = 1.0
    img[5:9, 8:21] = 1.0
    img[13:16, 12:19] = 1.0
    return img


def test_alignment_learns_with_bilinear_only() -> None:
    res = sl.align_experiment(_digit(), rotation_deg=25, shift=(0.15, -0.1), steps=60, lr=0.03)
    bil, near = res.runs["bilinear"], res.runs["nearest"]
    assert bil.losses.shape == (61,) and bil.thetas.shape == (61, 6)
    assert bil.losses[-1] < 0.2 * bil.losses[0]
    assert np.abs(bil.thetas[-1] - res.target).max() < np.abs(bil.thetas[0] - res.target).max()
    np.testing.assert_array_equal(near.thetas, np.tile([1, 0, 0, 0, 1, 0], (61, 1)))  # no gradient, no step
    assert np.ptp(near.losses) == 0.0
    assert res.template.shape == res.moved.shape == bil.final.shape == (28, 28)
    assert res.seconds < 10.0  # typically ~0.1 s; only a sanity bound


def test_alignment_target_undoes_the_motion() -> None:
    res = sl.align_experiment(_digit(), rotation_deg=20, shift=(0.1, 0.0), steps=1)
    theta = torch.tensor(res.target, dtype=torch.float32).view(1, 2, 3)
    moved = torch.from_numpy(res.moved).view(1, 1, 28, 28)
    back = sample(moved, affine_grid(theta, (28, 28)))[0, 0].numpy()
    inner = (slice(6, 22), slice(6, 22))
    assert np.abs(back[inner] - res.template[inner]).mean() < 0.1


# --------------------------------------------------------------------------- aliasing

def test_downscale_reads_what_the_notes_say() -> None:
    img = _image(16, 24)
    ds = sl.downscale(img, 4)
    assert ds.nearest.shape == ds.bilinear.shape == ds.area.shape == (4, 6, 3)
    # source point of output pixel j is x = 4j + 1.5: nearest reads 4j + 2, bilinear averages 4j+1..4j+2
    np.testing.assert_allclose(ds.nearest, img[2::4, 2::4], atol=1e-6)
    two = 0.25 * (img[1::4, 1::4] + img[1::4, 2::4] + img[2::4, 1::4] + img[2::4, 2::4])
    np.testing.assert_allclose(ds.bilinear, two, atol=1e-6)
    area = F.avg_pool2d(torch.from_numpy(img).permute(2, 0, 1)[None], 4)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ds.area, area, atol=1e-6)
    assert sl.read_fraction(4) == (1 / 16, 4 / 16)
    with pytest.raises(ValueError, match="too small"):
        sl.downscale(np.zeros((3, 3)), 4)


def test_zone_plate_aliases_more_than_the_area_average() -> None:
    zp = sl.zone_plate(64)
    assert zp.shape == (64, 64, 3) and 0 <= zp.min() and zp.max() <= 1
    np.testing.assert_allclose(zp, zp[::-1, ::-1], atol=1e-6)
    ds = sl.downscale(zp, 4)
    # the outer rings (beyond the new Nyquist limit) should average out to grey; point sampling keeps contrast
    ring = np.hypot(*np.mgrid[-7.5:8, -7.5:8]) > 5
    assert ds.nearest[..., 0][ring].std() > 2 * ds.area[..., 0][ring].std()


# --------------------------------------------------------------------------- figures (pages.lab.figures)

def test_sampler_figures_build() -> None:
    from pages.lab import figures as viz

    img = _image()
    grid = _grid()
    figs = [viz.image_panel(img, "V"), viz.heatmap_panel(sl.difference(img, img[::-1]), "diff"),
            viz.gradient_pair_figure(np.ones((4, 5)), -np.ones((4, 5)), "g"),
            viz.kernel_figure(sl.kernel_curves()), viz.zoom_figure(sl.zoom(img, grid, 3, 4))]
    res = sl.align_experiment(_digit(), steps=3)
    figs += [viz.loss_figure(res.runs), viz.theta_figure(res.runs, res.target)]
    for f in figs:
        assert f.to_json()
    weights = [a.text for a in figs[4].layout.annotations]
    assert len(weights) == 4 and all(w.startswith("<b>") for w in weights)  # the bilinear weights, on the pixels
