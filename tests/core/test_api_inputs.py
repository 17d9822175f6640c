"""Bad numeric inputs to the public API (issue: 22 of 287 raised something other than ValueError, 66 gave
silent NaN/inf output). A seeded generator feeds every public grid generator, the sampler and the
module hostile shapes, dtypes, sizes and values; each call must either raise ``ValueError`` /
``TypeError`` with a message, or return a finite result (the documented outcome for values such as a
NaN θ: the grid is NaN there and the sampler reads 0).
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch

import stn_core as S

VALUES = (float("nan"), float("inf"), -float("inf"), 1e38, -1e38, 3e38, 1e-45, 0.0, -0.0, 1e6)
SIZES = ((8, 8), (0, 8), (8, -1), (10**9, 8), (1 << 20, 1 << 20), (8,), (8, 8, 8), (1.5, 8), ("8", 8), (True, 8))
SHAPES = {"affine": (2, 3), "attention": (3,), "projective": (8,), "tps": (16, 2)}
OK = (ValueError, TypeError)


def _theta(kind: str, n: int, fill: float | None, dtype=torch.float32) -> torch.Tensor:
    base = S.identity_params(kind, 16).to(dtype).view(1, *SHAPES[kind]).repeat(n, *([1] * len(SHAPES[kind])))
    if fill is not None:
        base.view(n, -1)[:, 0] = fill
    return base


def _cases(seed: int, n: int):
    rng = random.Random(seed)
    kinds = list(SHAPES)
    for i in range(n):
        kind = rng.choice(kinds)
        what = rng.choice(["value", "size", "shape", "dtype", "batch"])
        if what == "value":
            yield f"{i}-{kind}-value", kind, _theta(kind, 2, rng.choice(VALUES)), (8, 8)
        elif what == "size":
            yield f"{i}-{kind}-size", kind, _theta(kind, 1, None), rng.choice(SIZES)
        elif what == "shape":
            shape = rng.choice([(1,), (1, 5), (1, 2, 2), (1, 3, 3, 3), (2, 7), (1, 16, 3), (1, 15, 2)])
            yield f"{i}-{kind}-shape", kind, torch.zeros(shape), (8, 8)
        elif what == "dtype":
            dt = rng.choice([torch.int64, torch.bool, torch.complex64, torch.float16, torch.bfloat16])
            yield f"{i}-{kind}-dtype", kind, _theta(kind, 1, None).to(dt), (8, 8)
        else:
            yield f"{i}-{kind}-batch", kind, _theta(kind, 0, None), (8, 8)


CASES = list(_cases(seed=2015, n=300))


def _check(call):
    try:
        out = call()
    except OK as e:
        assert str(e), "an exception without a message"
        return None
    return out


@pytest.mark.parametrize("name,kind,theta,size", CASES, ids=[c[0] for c in CASES])
def test_grid_generators_and_sampler_on_bad_inputs(name, kind, theta, size):
    flat = theta.reshape(theta.shape[0], -1) if theta.dim() > 1 and theta.numel() else theta
    grid = _check(lambda: S.make_grid(kind, flat, size))
    if grid is None:
        return
    assert grid.shape[-1] == 2
    u = torch.rand(grid.shape[0], 1, 6, 7, dtype=grid.dtype if grid.is_floating_point() else torch.float32)
    for backend, mode, padding in itertools.product(("fast", "reference"), ("bilinear", "nearest"), ("zeros", "border")):
        v = _check(lambda: S.sample(u, grid.to(u.dtype), mode=mode, backend=backend, padding=padding))
        if v is not None:
            assert torch.isfinite(v).all(), f"{backend}/{mode}/{padding}: non-finite output for {name}"


@pytest.mark.parametrize("bad", [dict(transform="nope"), dict(out_size=(0, 28)), dict(out_size=(10**9, 10**9)),
                                 dict(transform="tps", tps_points=15), dict(transform="tps", tps_points=10_000),
                                 dict(mode="cubic"),
                                 dict(backend="gpu"), dict(padding="reflect")])
def test_spatial_transformer_refuses_bad_settings(bad):
    kw = dict(transform="affine", out_size=(28, 28), in_channels=1, in_size=(28, 28)) | bad
    with pytest.raises(OK):
        st = S.SpatialTransformer(**kw)
        st(torch.rand(1, 1, 28, 28))


@pytest.mark.parametrize("x", [torch.rand(1, 28, 28), torch.rand(1, 2, 28, 28), torch.rand(1, 1, 27, 28),
                               torch.full((1, 1, 28, 28), float("nan"))])
def test_spatial_transformer_forward_on_bad_input(x):
    st = S.SpatialTransformer("affine", (28, 28), in_channels=1, in_size=(28, 28))
    if x.shape != (1, 1, 28, 28):
        with pytest.raises(ValueError, match="takes|shape"):
            st(x)
        return
    v = st(x)  # a NaN image: NaN θ → a NaN grid → the sampler reads 0 there (documented)
    assert v.shape == (1, 1, 28, 28)
