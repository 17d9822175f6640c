"""Table 1 models: output shapes, equal parameter budgets, identity transformers at init."""

import pytest
import torch

from stn_core.models.mnist import (MODEL_NAMES, _classifier_count, build_model, count_params, solve_width)

CONFIGS = [("fcn", None), ("cnn", None)] + [(m, t) for m in ("st-fcn", "st-cnn") for t in ("affine", "projective", "tps")]


def _x(n, side):
    return torch.rand(n, 1, side, side, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("side", [28, 42])
def test_shapes_and_parameter_counts_are_balanced(side):
    counts = {}
    for name, tr in CONFIGS:
        m = build_model(name, tr, side)
        assert m(_x(2, side)).shape == (2, 10)
        assert (m.transformer is None) == (tr is None)
        counts[(name, tr)] = count_params(m)
    lo, hi = min(counts.values()), max(counts.values())
    assert hi <= 1.15 * lo, counts
    assert all(abs(c - 400_000) < 0.05 * 400_000 for c in counts.values()), counts


def test_closed_form_count_matches_the_modules():
    for side, ds in ((28, 1), (21, 1), (42, 1)):
        for base in ("fcn", "cnn"):
            m = build_model(base, None, side, width=17)
            assert _classifier_count(base, side // ds, 10, 17) == count_params(m)
    assert solve_width("cnn", None, 28, target_params=100_000) < solve_width("cnn", None, 28)


@pytest.mark.parametrize("name,tr", [c for c in CONFIGS if c[1]])
@pytest.mark.parametrize("side", [28, 42])
def test_spatial_transformers_start_at_the_identity(name, tr, side):
    m = build_model(name, tr, side)
    x = _x(3, side)
    torch.testing.assert_close(m.transformer(x), x, atol=1e-5, rtol=0)
    seen = m.transformed(x)
    expect_side = 21 if side == 42 else side  # RTS: the ST output is 2× average-pooled
    assert seen.shape == (3, 1, expect_side, expect_side)
    assert m.views(x).grid.shape == (3, side, side, 2)


def test_channels_last_gives_the_same_logits():
    m = build_model("st-cnn", "affine", 28)
    x = _x(4, 28)
    ref = m(x)
    m.use_channels_last()
    torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-5)


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet", None, 28)
    with pytest.raises(ValueError, match="no spatial transformer"):
        build_model("cnn", "affine", 28)
    with pytest.raises(ValueError, match="needs transform"):
        build_model("st-cnn", None, 28)
    assert set(MODEL_NAMES) == {"fcn", "cnn", "st-fcn", "st-cnn"}


def test_gradients_reach_the_localisation_net():
    m = build_model("st-cnn", "tps", 28)
    x = _x(8, 28)
    torch.nn.functional.cross_entropy(m(x), torch.arange(8)).backward()
    assert m.transformer.regression.weight.grad.abs().sum() > 0
