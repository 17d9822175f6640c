"""stn_core.train.loop.run_schedule (the single-process loop of the volume and digit-string trainers) and
stn_core.modes.eval_mode (the evaluation helpers' train/eval switch)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from stn_core.modes import eval_mode
from stn_core.train.loop import run_schedule


def _run(start: int, history: list[dict]) -> tuple[list[int], list[dict]]:
    """Run steps ``start``..4 with an evaluation every 2 steps; the steps at which it evaluated, and the history."""
    a = SimpleNamespace(steps=4, lr=0.1, schedule="cosine", eval_every=2, ckpt_every=2, time_limit=None)
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=0.1)
    at = {"step": start}
    evaluated = []

    def step_once(step: int) -> torch.Tensor:
        at["step"] = step + 1
        return torch.tensor(1.0)

    def evaluate_now() -> tuple[float, float]:
        evaluated.append(at["step"])
        return 50.0, 1.0

    meta = lambda step, err, final, s: {"steps": step, "final": final}  # noqa: E731
    run_schedule(a, opt, start, history, 0.0, 0, step_once, evaluate_now, lambda *x: None, meta, lambda *x: None)
    return evaluated, history


def test_every_eval_step_is_evaluated_once_also_when_a_run_stopped_right_after_it():
    assert _run(0, [])[0] == [2, 4]                                   # a whole run: steps 2 and 4 (final)
    evaluated, history = _run(2, [])                                  # stopped after saving step 2, not evaluated
    assert evaluated == [2, 4] and [h["step"] for h in history] == [2, 4]
    done = [{"step": 2, "test_error": 50.0, "test_loss": 1.0}]
    assert _run(2, done)[0] == [4]                                    # step 2 already in the history: not again


@pytest.mark.parametrize("start", [True, False])
def test_eval_mode_restores_the_previous_mode_also_when_the_block_raises(start):
    net = torch.nn.Sequential(torch.nn.Dropout(0.5)).train(start)
    with eval_mode(net):
        assert not net.training and not net[0].training
    assert net.training is start and net[0].training is start
    with pytest.raises(RuntimeError), eval_mode(net):
        raise RuntimeError("boom")
    assert net.training is start and net[0].training is start
