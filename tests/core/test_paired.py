"""McNemar's exact test (stn_core.analysis.paired): the counts and p-values by hand."""

from __future__ import annotations

import pytest
import torch

from stn_core.analysis.paired import binomial_two_sided, mcnemar


def test_binomial_two_sided_matches_hand_computed_tails():
    assert binomial_two_sided(0, 10) == pytest.approx(2 / 1024)            # 2 × 0.5¹⁰
    assert binomial_two_sided(10, 10) == pytest.approx(2 / 1024)           # symmetric
    assert binomial_two_sided(1, 5) == pytest.approx(2 * 6 / 32)           # 2 × (1 + 5) / 2⁵
    assert binomial_two_sided(5, 10) == 1.0 and binomial_two_sided(0, 0) == 1.0
    # a whole test set of disagreements (2.0 ** 3000 would overflow a float)
    assert binomial_two_sided(1500, 3000) == 1.0 and binomial_two_sided(1300, 3000) < 1e-10


def test_mcnemar_counts_only_the_items_the_models_disagree_on():
    a = torch.tensor([1, 1, 1, 0, 0, 1, 1, 1], dtype=torch.bool)
    b = torch.tensor([1, 0, 0, 0, 1, 1, 0, 0], dtype=torch.bool)
    r = mcnemar(a, b)
    assert (r.n, r.a_only, r.b_only) == (8, 4, 1)
    assert r.p_value == pytest.approx(2 * 6 / 32)
    # both right or both wrong everywhere: no evidence either way
    assert mcnemar(a, a).p_value == 1.0


def test_mcnemar_rejects_masks_of_different_shapes():
    with pytest.raises(ValueError, match="one shape"):
        mcnemar(torch.ones(3, dtype=torch.bool), torch.ones(4, dtype=torch.bool))
