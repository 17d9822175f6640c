"""The lr schedules (``--schedule paper|cosine``), AdamW / weight decay, how they are recorded, and
exact resume of a cosine run; plus the recipe study's grid and deadline arithmetic
(scripts/recipe_study.py). Training runs use the tiny MNIST fixture ``data_root`` (tests/conftest.py)."""

import datetime as dt
import json
import math
from pathlib import Path

import pytest
import torch

from stn_core.checkpoints import read_safetensors
from stn_core.train import loop as L
from stn_core.train import mnist as T
from script_util import load_script

ROOT = Path(__file__).resolve().parents[2]


def _args(data_root, out, *extra):
    return ["--data-root", str(data_root), "--no-verify", "--out", str(out), "--threads", "1", "--no-progress",
            *extra]


def test_paper_schedule_is_unchanged():
    for s in (0, 49_999, 50_000, 99_999, 100_000, 149_999):
        assert L.lr_at(s, 150_000, 0.01) == L.lr_at(s, 150_000, 0.01, "paper", 0) == \
            pytest.approx(0.01 * 0.1 ** (s // 50_000))
    assert [L.lr_at(s, 9, 1.0) for s in range(9)] == pytest.approx([1, 1, 1, .1, .1, .1, .01, .01, .01])
    with pytest.raises(ValueError):
        L.lr_at(0, 10, 1.0, "paper", 2)


def test_cosine_schedule_values():
    lr, steps, w = 0.05, 1000, 50
    f = [L.lr_at(s, steps, lr, "cosine", w) for s in range(steps)]
    assert f[0] == pytest.approx(lr / w)  # warm-up moves from the first step
    assert f[24] == pytest.approx(lr * 25 / w)
    assert f[w - 1] == pytest.approx(lr) and f[w] == pytest.approx(lr)  # the peak
    assert f[w + (steps - w) // 2] == pytest.approx(lr / 2, rel=1e-3)  # half-way through the decay
    assert f[-1] == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * (steps - 1 - w) / (steps - w))))
    assert 0 < f[-1] < 1e-6 * 1000 * lr
    assert L.lr_at(steps, steps, lr, "cosine", w) == pytest.approx(0.0, abs=1e-15)
    assert all(a <= b for a, b in zip(f[:w], f[1:w]))  # rises, then falls
    assert all(a >= b for a, b in zip(f[w:], f[w + 1:]))
    assert L.lr_at(0, 10, 1.0, "cosine", 0) == pytest.approx(1.0)  # no warm-up: starts at lr
    assert L.default_warmup(977) == 49 and L.default_warmup(10) == 0
    with pytest.raises(ValueError):
        L.lr_at(0, 10, 1.0, "linear")


def test_cli_flags_defaults_and_checks():
    base = ["--task", "mnist", "--model", "fcn", "--out", "x"]
    a = T.parse_args(base)
    assert (a.schedule, a.warmup, a.optimizer, a.weight_decay) == ("paper", 0, "sgd", 0.0)
    a = T.parse_args(base + ["--schedule", "cosine", "--steps", "1000"])
    assert a.warmup == 50
    a = T.parse_args(base + ["--optimizer", "adamw"])
    assert a.weight_decay == 1e-4
    assert T.parse_args(base + ["--optimizer", "adamw", "--weight-decay", "0"]).weight_decay == 0.0
    for bad in (["--warmup", "5"], ["--schedule", "cosine", "--steps", "10", "--warmup", "11"],
                ["--optimizer", "adamw", "--momentum", "0.9"], ["--weight-decay", "-1"]):
        with pytest.raises(SystemExit):
            T.parse_args(base + bad)
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr_mult": 1.0}]
    opt = L.make_optimizer(groups, "adamw", 1e-3, weight_decay=1e-4)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 1e-4


def test_paper_runs_record_nothing_new_and_old_checkpoints_resume(data_root, tmp_path):
    common = ["--task", "mnist", "--model", "fcn", "--steps", "4", "--batch", "8", "--test-limit", "10",
              "--stop-at", "2"]
    meta = T.main(_args(data_root, tmp_path / "p", *common))
    assert set(meta["train_args"]) == set(T.RESUME_FIXED)  # as before the new flags
    # a checkpoint from before the flags (no such keys) matches the defaults
    L.check_same_settings("old", {"train_args": dict(meta["train_args"])}, {**meta["train_args"], "schedule": "paper",
                                                                           "warmup": 0, "weight_decay": 0.0})
    done = T.main(_args(data_root, tmp_path / "p", *common[:-2], "--resume"))
    assert done["final"] and done["steps"] == 4
    with pytest.raises(SystemExit, match="different settings"):
        T.main(_args(data_root, tmp_path / "p", *common[:-2], "--schedule", "cosine", "--resume"))


def test_cosine_adamw_run_resumes_bit_exactly_and_records_its_settings(data_root, tmp_path):
    common = ["--task", "mnist-rts", "--model", "st-cnn", "--transform", "affine", "--steps", "8", "--batch", "16",
              "--optimizer", "adamw", "--lr", "0.002", "--schedule", "cosine", "--warmup", "2",
              "--loc-lr-mult", "0.1", "--seed", "1", "--ckpt-every", "3", "--test-limit", "20"]
    full = T.main(_args(data_root, tmp_path / "full", *common))
    part = T.main(_args(data_root, tmp_path / "part", *common, "--stop-at", "5"))
    assert part["final"] is False and part["steps"] == 5
    T.main(_args(data_root, tmp_path / "part", *common, "--resume"))
    a, _ = read_safetensors(tmp_path / "full.safetensors")
    b, _ = read_safetensors(tmp_path / "part.safetensors")
    for k in a:
        assert torch.equal(b[k], a[k]), k  # bitwise: the schedule is a pure function of the step
    again = json.loads((tmp_path / "part.json").read_text())
    assert again["test_error"] == full["test_error"]
    ta = full["train_args"]
    assert (ta["schedule"], ta["warmup"], ta["optimizer"], ta["weight_decay"]) == ("cosine", 2, "adamw", 1e-4)
    assert "--schedule cosine" in full["command"]
    with pytest.raises(SystemExit, match="warmup was 2, now 0"):
        T.main(_args(data_root, tmp_path / "part", *[c for c in common if c not in ("--warmup", "2")], "--resume",
                     "--warmup", "0"))


def test_cosine_sgd_momentum_resume_with_default_warmup(data_root, tmp_path):
    common = ["--task", "mnist", "--model", "fcn", "--steps", "40", "--batch", "8", "--momentum", "0.9",
              "--lr", "0.05", "--schedule", "cosine", "--seed", "2", "--test-limit", "20"]
    T.main(_args(data_root, tmp_path / "full", *common))
    T.main(_args(data_root, tmp_path / "part", *common, "--stop-at", "17"))
    meta = T.main(_args(data_root, tmp_path / "part", *common, "--resume"))
    assert meta["train_args"]["warmup"] == 2 and "weight_decay" not in meta["train_args"]
    a, _ = read_safetensors(tmp_path / "full.safetensors")
    b, _ = read_safetensors(tmp_path / "part.safetensors")
    for k in a:
        assert torch.equal(b[k], a[k]), k


def _study():
    mod = load_script("recipe_study")
    return mod


def test_recipe_study_grid_and_deadline():
    S = _study()
    g = S.grid()
    assert len(g) == len(set(g)) == 3 * 3 * 4 + 3 * 3  # 3 MNIST models × 3 recipes × 4 budgets; CUB: 3 × 3 epochs
    assert g[:6] == [("st-cnn-aff", r, b) for b in ("0.25M", "0.5M") for r in S.RUN_ORDER]
    assert sorted(S.RUN_ORDER) == sorted(S.RECIPES)
    assert [S.steps_of(b) for b in S.BUDGETS] == [977, 1953, 3906, 7812]  # 2M: 7812.5 rounds to even
    cmd = S.train_command("st-cnn-aff", "sgdm-cosine", "1M")
    assert cmd[cmd.index("--loc-lr-mult") + 1] == "0.1" and cmd[cmd.index("--steps") + 1] == "3906"
    assert "--loc-lr-mult" not in S.train_command("cnn", "adamw-cosine", "1M")
    T.parse_args(S.train_command("st-cnn-aff", "paper", "2M"))  # a valid command line
    now = dt.datetime(2026, 1, 1, 2, 30, tzinfo=dt.timezone.utc)
    assert S.parse_deadline("03:15", now) - now.timestamp() == 45 * 60
    assert S.parse_deadline("600", now) - now.timestamp() == 600
    assert S.parse_deadline("2026-01-01T04:00", now) - now.timestamp() == 90 * 60


def test_recipe_verdict_says_when_a_larger_budget_reverses_the_order():
    """The choice is made at the largest budget all three recipes finished; a larger budget where only some
    finished is reported beside it, with a warning when the leader there is another recipe."""
    S = _study()
    errors = {(m, r, b): 5.0 for m in S.MODELS for r in S.RECIPES for b in ("0.25M", "0.5M", "1M")}
    errors.update({("cnn", "sgdm-cosine", "1M"): 2.29, ("cnn", "adamw-cosine", "1M"): 2.71,
                   ("cnn", "sgdm-cosine", "2M"): 1.83, ("cnn", "adamw-cosine", "2M"): 1.74,
                   ("fcn", "sgdm-cosine", "1M"): 4.0, ("fcn", "sgdm-cosine", "2M"): 10.0,
                   ("fcn", "adamw-cosine", "2M"): 11.8})
    lines, _ = S.verdicts(errors)
    text = "\n".join(lines)
    assert "**CNN**: use **sgdm-cosine** from now on — 2.29 % test error at 1M" in text
    assert ("At 2M, where 2 of 3 recipes finished: adamw-cosine 1.74 %, sgdm-cosine 1.83 % — **adamw-cosine is "
            "ahead of sgdm-cosine there**") in text
    assert "At 2M, where 2 of 3 recipes finished: sgdm-cosine 10.00 %, adamw-cosine 11.80 %; sgdm-cosine still leads." \
        in text
    assert text.count("At 2M") == 2  # the ST-CNN has no 2M run here: no line


def test_recipe_verdict_calls_a_lead_within_noise_a_tie_and_gives_it_to_the_shared_recipe():
    """A lead smaller than one binomial standard error of the difference (10,000 test digits: 0.19 points at
    ~1.8 %) is a tie, which goes to the recipe that clearly wins the other families; a clear lead is kept."""
    S = _study()
    assert abs(S.difference_se(1.74, 1.83) - 0.1876) < 1e-3  # 100·sqrt((.0174·.9826 + .0183·.9817) / 10⁴)
    errors = {(m, r, "2M"): e for m, es in {"st-cnn-aff": (8.36, 0.97, 1.14), "cnn": (25.69, 1.83, 1.74),
                                            "fcn": (78.26, 10.03, 11.82)}.items()
              for r, e in zip(("paper", "sgdm-cosine", "adamw-cosine"), es)}
    text = "\n".join(S.verdicts(errors)[0])
    assert "**CNN**: use **sgdm-cosine** from now on — 1.83 %" in text
    assert "A tie: adamw-cosine (1.74 %) and sgdm-cosine (1.83 %) differ by 0.09 points" in text
    assert "**ST-CNN Aff**: use **sgdm-cosine** from now on — 0.97 %" in text and text.count("A tie") == 1
    errors[("cnn", "adamw-cosine", "2M")] = 1.40  # a clear lead (0.43 > 0.18 points) is not overruled
    text = "\n".join(S.verdicts(errors)[0])
    assert "**CNN**: use **adamw-cosine** from now on — 1.40 %" in text and "A tie" not in text


def test_recipe_study_has_one_cub_model_with_its_own_budgets_and_the_same_verdict_rule():
    """Issue #16's CUB model: the CUB baseline's runs come last in the grid, one per recipe and epoch budget, each
    a valid CUB CLI command with that recipe's optimiser and schedule; its verdict uses the tie rule with its own
    test set (1,389 birds: one standard error of a difference at ~25 % error is ~1.6 points)."""
    from stn_core.train import cub as C

    S = _study()
    cub_runs = [g for g in S.grid() if g[0] == S.CUB]
    assert S.grid()[-len(cub_runs):] == cub_runs and len(cub_runs) == len(S.RECIPES) * len(S.CUB_BUDGETS)
    for _, recipe, budget in cub_runs:
        a = C.parse_args(S.train_command(S.CUB, recipe, budget))
        assert (a.model, a.task, a.epochs, a.input_size, a.batch) == ("cub-baseline", "cub50", S.CUB_BUDGETS[budget],
                                                                       224, 16)
        assert (a.optimizer, a.schedule) == {"paper": ("sgd", "paper"), "sgdm-cosine": ("sgd", "cosine"),
                                             "adamw-cosine": ("adamw", "cosine")}[recipe]
        assert a.momentum == (0.0 if recipe == "paper" else 0.9) and a.out.endswith(f"cub_{recipe}_{budget}")
    assert abs(S.difference_se(25.0, 26.0, S.CUB_TEST_IMAGES) - 1.65) < 0.01
    errors = {(m, r, "2M"): e for m, es in {"st-cnn-aff": (8.36, 0.97, 1.14), "cnn": (25.69, 1.83, 1.74),
                                            "fcn": (78.26, 10.03, 11.82)}.items()
              for r, e in zip(("paper", "sgdm-cosine", "adamw-cosine"), es)}
    errors.update({(S.CUB, r, "4ep"): e for r, e in (("paper", 27.0), ("sgdm-cosine", 25.9), ("adamw-cosine", 25.0))})
    errors[(S.CUB, "sgdm-cosine", "8ep")] = 24.0
    text = "\n".join(S.verdicts(errors)[0])
    assert ("**CUB baseline**: use **sgdm-cosine** from now on — 25.90 % test error at 4 epochs, the largest budget "
            "all three recipes reached (others: adamw-cosine 25.00 %, paper 27.00 %). A tie: adamw-cosine (25.00 %) "
            "and sgdm-cosine (25.90 %)") in text and "1,389 test birds" in text
    assert "At 8ep" not in text  # one recipe at 8 epochs: nothing to compare there yet
    errors.update({(S.CUB, "paper", "8ep"): 97.91, (S.CUB, "sgdm-cosine", "8ep"): 25.20,
                   (S.CUB, "adamw-cosine", "8ep"): 23.18})  # a lead of 2.02 > 1.62 points: clear
    text = "\n".join(S.verdicts(errors)[0])
    assert ("**CUB baseline**: use **adamw-cosine** from now on — 23.18 % test error at 8 epochs") in text
    assert "its lead over sgdm-cosine is 1.2 standard errors of the difference (binomial, 1,389 test birds)" in text
    note = " ".join(S.collapsed_note(errors))
    assert "At chance (98 % error for 50 classes): paper at 8 epochs (97.91 %)" in note
    assert "not collapsed: paper at 4 epochs (27.00 %)" in note and S.collapsed_note({}) == []


def test_reports_describe_the_new_settings():
    from stn_core.analysis.addition import optimizer_text

    assert optimizer_text({"optimizer": "adamw", "lr": 0.001, "weight_decay": 1e-4, "schedule": "cosine",
                           "warmup": 49, "loc_lr_mult": 0.1}) == \
        "AdamW (β = 0.9, 0.999) lr 0.001, weight decay 0.0001, 49 warm-up steps then cosine decay to 0, " \
        "localisation nets at 0.1× that lr"


def test_recipe_record_keeps_finished_runs_whose_folders_are_gone(tmp_path, monkeypatch):
    """The report's finished rows come back from results/recipe-runs.json when runs/recipe/ is empty, a run's
    own JSON wins over its entry, and a record naming runs outside the grid is refused, not dropped."""
    S = _study()
    monkeypatch.setattr(S, "RUN_DIR", tmp_path / "runs")
    monkeypatch.setattr(S, "RECORD", tmp_path / "record.json")
    cmd = "python -m stn_core.train --task mnist-rts --model cnn --out runs/recipe/cnn_paper_0.25M"
    report = ("| run | state | test error % | samples/s | train s | command |\n|---|---|---|---|---|---|\n"
              f"| cnn_paper_0.25M | final | 75.95 | 451.1 | 554.42 | `{cmd}` |\n"
              "| cnn_paper_1M | partial 185/3906 |  | 986.3 | 48.02 | `x` |\n"
              "| cnn_paper_2M | not run yet | | | | `y` |\n")
    rec = S.record_from_report(report)
    assert rec == {"cnn_paper_0.25M": {"final": True, "steps": 977, "test_error": 75.95, "samples_per_s": 451.1,
                                       "train_seconds": 554.42, "command": cmd}}
    S.save_record(rec)
    assert S.load_record() == rec and S.cell("cnn_paper_0.25M") == ("**75.95**", 75.95)
    assert S.cell("cnn_paper_1M") == ("not run yet", None)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "cnn_paper_0.25M.json").write_text(json.dumps({"final": True, "test_error": 70.0}))
    assert S.cell("cnn_paper_0.25M") == ("**70.00**", 70.0)
    assert S.update_record()["cnn_paper_0.25M"]["test_error"] == 70.0 == S.load_record()["cnn_paper_0.25M"]["test_error"]
    (tmp_path / "bad.json").write_text('{"someone_else_1M": {"final": true, "test_error": 1.0}}')
    with pytest.raises(SystemExit, match="not a record"):
        S.load_record(tmp_path / "bad.json")
