"""Part analysis (stn_core.analysis.cub) and the CUB page logic (pages.lab.cub)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pages.lab import cub as ca
from stn_core import registry as reg
from stn_core.analysis import cub as an
from stn_core.models.cub import build_cub_model
from cub_util import lively_cub_model
from script_util import load_script

torch.set_num_threads(1)
NAMES = ("back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg", "left wing", "nape",
         "right eye", "right leg", "right wing", "tail", "throat")


def bird(head_xy, body_xy, bbox=(-0.8, -0.8, 0.8, 0.8)) -> an.Bird:
    """A synthetic bird in normalised coords: all head parts at head_xy, body parts at body_xy."""
    parts = np.zeros((15, 3))
    for i, n in enumerate(NAMES):
        if n in an.HEAD_PARTS:
            parts[i] = (*head_xy, 1)
        elif n in an.BODY_PARTS:
            parts[i] = (*body_xy, 1)
    return an.Bird(parts, np.array(bbox, dtype=float), NAMES)


def test_geometry():
    assert np.allclose(an.to_normalised([[0, 0], [100, 50]], 100, 50), [[-1, -1], [1, 1]])
    assert np.allclose(an.bbox_to_normalised((25, 0, 50, 25), 100, 50), [-0.5, -1, 0.5, 0])
    box = np.array([-1, -1, 0, 0])
    assert an.box_contains(box, np.array([[-0.5, -0.5], [0.5, 0.5]])).tolist() == [True, False]
    assert an.group_hit(box, np.zeros((0, 2))) is None
    assert an.group_hit(box, np.array([[-0.5, -0.5], [0.5, 0.5]])) is True  # half is enough
    assert an.union_iou(np.array([[-0.5, -0.5, 0.5, 0.5]]), np.array([-0.5, -0.5, 0.5, 0.5])) == pytest.approx(1.0)
    assert an.union_iou(np.array([[-1, -1, -0.5, -0.5]]), np.array([0.5, 0.5, 1, 1])) == 0.0
    # union of two halves = the whole image
    assert an.union_iou(np.array([[-1, -1, 0, 1], [0, -1, 1, 1]]), np.array([-1, -1, 1, 1])) == pytest.approx(1.0)


def test_part_stats_and_verdict():
    rng = np.random.default_rng(0)
    birds, boxes = [], []
    for _ in range(60):
        hx, hy = rng.uniform(-0.7, 0.7, 2)
        bx, by = -hx * 0.8, -hy * 0.8
        birds.append(bird((hx, hy), (bx, by)))
        # transformer 0 follows the head, transformer 1 sits on the body
        boxes.append([[hx - 0.2, hy - 0.2, hx + 0.2, hy + 0.2], [bx - 0.2, by - 0.2, bx + 0.2, by + 0.2]])
    st = an.part_stats(np.array(boxes), birds)
    r = st.rates()
    assert r[0]["head_hit"] == 1.0 and r[1]["body_hit"] == 1.0 and r[1]["head_hit"] < 0.2
    v = an.head_detector_verdict(st)
    assert v["holds"] and v["best"] == 0 and v["ci"][0] > 0
    same = an.part_stats(np.array([[b[0], b[0]] for b in boxes]), birds)
    assert not an.head_detector_verdict(same)["holds"]
    with pytest.raises(ValueError):
        an.part_stats(np.zeros((3, 2, 4)), birds)


def test_invisible_parts_are_left_out():
    b = bird((0.5, 0.5), (-0.5, -0.5))
    b.parts[:, 2] = 0
    st = an.part_stats(np.array([[[-1, -1, 1, 1]]]), [b])
    assert st.rates()[0]["head_hit"] is None and st.rates()[0]["n_head"] == 0


def test_tiled_boxes_and_ci():
    t = an.tiled_boxes(2, 3)
    assert t.shape == (3, 2, 4) and np.allclose(t[0], [[-1, -0.5, 0, 0.5], [0, -0.5, 1, 0.5]])
    d, lo, hi = an.paired_diff_ci(np.ones(50), np.zeros(50))
    assert d == 1 and lo == 1 and hi == 1
    assert np.isnan(an.paired_diff_ci(np.full(3, np.nan), np.ones(3))[0])


# --------------------------------------------------------------------------- page logic

def tiny_model():
    torch.manual_seed(0)
    m = build_cub_model("cub-2st", [1, 12, 14], input_size=64, crop_size=32, backbone_weights=None).eval()
    meta = {"input_size": 64, "classes": [1, 12, 14], "extra": {"class_names": {"1": "Albatross", "12": "Blackbird"}}}
    return m, meta


def test_predict_bird_api():
    m, meta = tiny_model()
    img = np.random.default_rng(0).random((80, 120, 3)).astype(np.float32)
    p = ca.predict_bird(m, meta, img)
    assert p.boxes.shape == (2, 4)
    # tiled start: left and right halves, vertically centred, in pixels of the 120x80 image
    assert np.allclose(p.boxes, [[0, 20, 60, 60], [60, 20, 120, 60]], atol=0.3)
    assert len(p.crops) == 2 and p.crops[0].shape == (32, 32, 3)
    assert len(p.top5) == 3 and abs(sum(q for _, _, q in p.top5) - 1) < 1e-5
    assert [q for _, _, q in p.top5] == sorted([q for _, _, q in p.top5], reverse=True)
    assert {c for c, _, _ in p.top5} == {1, 12, 14} and dict((c, n) for c, n, _ in p.top5)[14] == "class 14"
    base = build_cub_model("cub-baseline", [1, 12, 14], input_size=64, backbone_weights=None).eval()
    pb = ca.predict_bird(base, meta, img)
    assert pb.boxes.shape == (0, 4) and pb.crops == []


def test_draw_boxes_colours():
    img = np.zeros((40, 60, 3), np.float32)
    out = ca.draw_boxes(img, np.array([[0, 0, 30, 40], [30, 0, 60, 40]]), width=1)
    assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
    assert tuple(out[10, 0]) == ca.COLOURS[0] and tuple(out[10, 59]) == ca.COLOURS[1]
    assert tuple(out[20, 15]) == (0, 0, 0)
    parts = np.zeros((15, 3))
    parts[1] = (45, 20, 1)  # beak: a head part, white
    out2 = ca.draw_boxes(img, np.zeros((0, 4)), parts=parts, bbox=(5, 5, 20, 20), part_names=NAMES)
    assert tuple(out2[20, 45]) == (255, 255, 255) and out2[5, 6].sum() > 0


def test_page_state_and_helpers():
    s, w = ca.parse_state({"src": "dataset", "cls": "x", "i": "3", "parts": "1", "st": "9st"}, False)
    assert s.src == "sample" and s.i == 3 and s.parts and s.st_model == "2st" and len(w) == 3
    assert ca.parse_state(s.query(), False)[0] == s
    birds = [{"class_id": 1}, {"class_id": 2}, {"class_id": 1}]
    assert len(ca.filter_birds(birds, 1)) == 2 and len(ca.filter_birds(birds, 0)) == 3
    sbs = ca.side_by_side([np.zeros((10, 20, 3)), np.ones((20, 20, 3))], height=30)
    assert sbs.shape == (30, 60 + 30 + 8, 3)
    assert ca.history_frames({"extra": {}})[0] == []
    meta = {"extra": {"box_history": {"steps": [0, 5], "boxes": np.zeros((2, 1, 2, 4)).tolist(),
                                      "birds": [{"image_id": 1}]}}}
    steps, boxes, birds_h = ca.history_frames(meta)
    assert steps == [0, 5] and boxes.shape == (2, 1, 2, 4) and birds_h[0]["image_id"] == 1
    rows = ca.part_table_rows({"models": {"2st": {"transformers": [
        {"transformer": 0, "colour": "red", "head_hit": 0.5, "body_hit": 0.25, "tiled_head_hit": 0.4,
         "tiled_body_hit": None}]}}})
    assert rows[0]["head-hit %"] == 50.0 and rows[0]["start boxes body-hit %"] is None


def test_sample_birds_and_status(tmp_path):
    birds = ca.sample_birds()
    assert len(birds) >= 30 and birds[0]["parts"].shape == (15, 3) and birds[0]["image"].ndim == 3
    assert reg.cub_status("2st", tmp_path)["exists"] is False


def test_cub_stem_names_of_both_sizes_and_the_variants():
    assert reg.cub_stem_name("2st") == "cub50_2st" and reg.cub_stem_name("2st", 448) == "cub50_2st_448"
    assert reg.cub_stem_name("2st-heatmap", 448) == "cub50_2st_448_heatmap"
    assert reg.cub_key("2st-heatmap", 448) == "2st_448_heatmap" and reg.cub_key("baseline") == "baseline"
    assert reg.cub_stem("baseline", "/x", size=448) == Path("/x/cub50_baseline_448")
    with pytest.raises(ValueError, match="224, 448"):
        reg.cub_stem_name("2st", 300)


def test_one_table_of_cub_variants_feeds_the_app_the_trainer_and_the_report():
    tc, mr = load_script("train_cub"), load_script("make_cub_results")
    assert set(tc.VARIANTS) == set(reg.CUB_VARIANT_KEYS)
    assert set(mr.VARIANT_RUNS) == {k for k, v in reg.CUB_VARIANTS.items() if v.trained}
    assert "2st-branches" in reg.CUB_VARIANT_KEYS and "2st-branches" not in mr.VARIANT_RUNS  # untrained
    for key, v in reg.CUB_VARIANTS.items():
        assert key.partition("-")[0] in tc.MODELS and tc.VARIANTS[key] == list(v.train_flags)
        assert reg.CUB_LABELS[key] == v.label and mr.NAMES[key] == v.report_label
    assert len(set(reg.CUB_LABELS.values())) == len(reg.CUB_LABELS)  # every model told apart on the page


def test_the_cub_report_names_each_runs_optimiser_and_schedule():
    """A run's protocol line says its optimiser and schedule from train_args, with the CUB CLI's defaults (SGD,
    cosine, no warm-up) for the shipped runs, which do not record them."""
    text = load_script("make_cub_results").cub_optimiser_text
    assert text({"lr": 0.001, "optimizer": "sgd"}) == "SGD lr 0.001 (cosine)"
    assert text({"lr": 0.0001, "optimizer": "adamw", "warmup": 9}) == "AdamW lr 0.0001 (cosine after 9 warm-up steps)"
    assert text({"lr": 0.01, "optimizer": "sgd", "schedule": "paper"}) == "SGD lr 0.01 (÷10 at 1/3 and 2/3)"


def test_make_cub_results_on_tiny_checkpoints(tmp_path):
    """scripts/make_cub_results.py end to end: tiny untrained checkpoints on a CUB-layout folder."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from cub_fixture import make_tiny_cub

    from stn_core.checkpoints import save_checkpoint
    from stn_core.models.cub import arch_of

    root = make_tiny_cub(tmp_path / "cub")
    ck = tmp_path / "ck"
    for key, name in (("baseline", "cub-baseline"), ("2st", "cub-2st"), ("4st", "cub-4st"),
                      ("baseline_448", "cub-baseline"), ("2st_448", "cub-2st")):
        torch.manual_seed(0)
        m = build_cub_model(name, [1, 12, 14], input_size=64, crop_size=32, backbone_weights=None,
                            loc_init="centre" if key == "2st_448" else "tiled")
        save_checkpoint(ck / f"cub50_{key}", m, {
            "task": "cub", "model": name, "transform": "attention" if m.n_st else None, "input_size": 64,
            "num_classes": 3, "classes": [1, 12, 14], "final": key != "4st", "steps": 3,
            "command": f"python -m stn_core.train --task cub --model {name}", "extra": {"arch": arch_of(m)}})
    mod = load_script("make_cub_results")
    out = tmp_path / "cub.md"
    mod.main(["--data-root", str(root), "--checkpoints", str(ck), "--out", str(out)])
    text = out.read_text()
    assert "## Test accuracy" in text and "unfinished run" in text  # the 4st is not final: not reported
    assert "One transformer becomes a head detector:" in text and "paper" in text.lower()
    assert "python -m stn_core.train --task cub --model cub-2st" in text
    data = json.loads(out.with_suffix(".json").read_text())
    assert set(data["models"]) == {"baseline", "2st", "baseline_448", "2st_448"}
    assert "### 2×ST-CNN, 448 px" in text and "4×ST-CNN, 448 px | not trained" in text
    # the goals are checked from the numbers, each said met or missed
    goals = text.split("## Goal check")[1].split("##")[0]
    assert goals.count("**met**") + goals.count("**missed**") == 2 + 2 * 2  # 2 accuracy goals + 2 per ST model
    assert "448 px: 2×ST-CNN beats the baseline by ≥ 1 points" in goals
    assert len(data["models"]["2st"]["transformers"]) == 2 and 0 <= data["models"]["2st"]["accuracy"] <= 100
    assert ca.part_table_rows(data)


def test_mean_box_control_and_spread():
    boxes = np.array([[[-1, -1, 0, 0]], [[0, 0, 1, 1]]], dtype=float)
    mb = an.mean_boxes(boxes)
    assert mb.shape == (2, 1, 4) and np.allclose(mb[0, 0], [-0.5, -0.5, 0.5, 0.5]) and np.allclose(mb[0], mb[1])
    assert np.allclose(an.centre_spread(boxes), [[0.5, 0.5]])
    assert np.allclose(an.centre_spread(mb), 0)


def test_box_replay_frames_and_gif():
    import io

    from PIL import Image

    from pages.lab.export import MAX_FRAMES

    img = np.full((50, 100, 3), 0.5, np.float32)
    steps = list(range(0, 1000, 10))  # 100 recorded points: thinned to MAX_FRAMES
    first = np.array([[-1, -1, 0, 1], [0, -1, 1, 1]], float)  # left half red, right half green
    boxes = np.stack([first * (1 - t / 200) for t in range(len(steps))])  # (T, 2, 4) shrinking
    frames, caps = ca.box_replay_frames(img, steps, boxes, per_epoch=100, side=200)
    assert len(frames) == len(caps) == MAX_FRAMES
    assert caps[0] == "step 0 · epoch 0.00" and caps[-1] == "step 990 · epoch 9.90"  # first and last kept
    assert frames[0].shape == (100, 200, 3) and frames[0].dtype == np.uint8  # longer side = side
    assert tuple(frames[0][50, 0]) == ca.COLOURS[0] and tuple(frames[0][50, 199]) == ca.COLOURS[1]
    assert tuple(frames[-1][50, 0]) != ca.COLOURS[0]  # the box moved in by the end
    gif = Image.open(io.BytesIO(ca.box_replay_gif(img, steps, boxes, 100, side=200)))
    assert gif.n_frames == MAX_FRAMES and gif.size[0] == 200 and gif.size[1] > 100  # caption row
    short = Image.open(io.BytesIO(ca.box_replay_gif(img, [0, 5, 9], boxes[:3])))
    assert short.n_frames == 3
    assert ca.box_replay_frames(img, [0, 5], boxes[:2])[1] == ["step 0", "step 5"]  # no epoch length known
    with pytest.raises(ValueError, match="boxes"):
        ca.box_replay_frames(img, [0, 5], boxes[:3])
    assert ca.steps_per_epoch({"extra": {"steps_per_epoch": 93}}) == 93
    assert ca.steps_per_epoch({"extra": {}}) is None and ca.steps_per_epoch({}) is None


# --------------------------------------------------------------------------- the loss's pull on each box
def test_group_centroid_is_the_mean_of_the_visible_parts_and_nan_without_any():
    b = bird((0.2, -0.4), (0.0, 0.3))
    assert np.allclose(an.group_centroid(b, an.HEAD_PARTS), (0.2, -0.4))
    b.parts[:, 2] = 0  # nothing visible
    assert np.isnan(an.group_centroid(b, an.BODY_PARTS)).all()


@pytest.mark.parametrize("n", [2, 3, 50])
def test_derangement_pairs_every_bird_with_another_one_reproducibly(n):
    p = an.derangement(n, seed=1)
    assert sorted(p.tolist()) == list(range(n)) and (p != np.arange(n)).all()
    assert (an.derangement(n, seed=1) == p).all()
    with pytest.raises(ValueError):
        an.derangement(1)


def test_pull_cosines_measure_the_angle_to_the_target_and_skip_undefined_rows():
    descent = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [1.0, 1.0]])
    centres = np.zeros((5, 2))
    targets = np.array([[0.5, 0.0], [-0.5, 0.0], [0.3, 0.3], [0.1, 0.0], [np.nan, np.nan]])
    cos = an.pull_cosines(descent, centres + 0.1, targets + 0.1)  # only the offset from the centre counts
    assert np.allclose(cos[:3], [1.0, -1.0, np.sqrt(0.5)])
    assert np.isnan(cos[3]) and np.isnan(cos[4])  # no pull; no target


def test_box_pull_is_the_gradient_of_each_birds_own_loss_at_its_boxes():
    """Row i of the chunked, summed backward pass is ∂L_i/∂params_i: the same as bird i's loss differentiated
    alone (float32; the tolerance covers summation order). A random MobileNet's ReLU6 kinks make a finite-
    difference check of this size fragile, so the check is against autograd on one bird at a time."""
    from stn_core.analysis.box_pull import box_pull

    m = lively_cub_model()
    x = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    y = torch.tensor([0, 2, 1])
    params, grads, losses = box_pull(m, x, y, torch.device("cpu"), chunk=2)
    assert params.shape == grads.shape == (3, 2, 3) and losses.shape == (3,) and m.training  # mode restored
    assert grads[..., 1:].abs().amin((1, 2)).min() > 1e-3, "the loss depends on every box (else nothing is checked)"
    m.eval()
    xb = x.float() / 255
    with torch.no_grad():
        assert torch.allclose(params, m.attention_params(xb), atol=1e-6)
    for i in range(3):
        p = params[i:i + 1].clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(m.logits_at(xb[i:i + 1], p), y[i:i + 1])
        (g,) = torch.autograd.grad(loss, p)
        assert torch.allclose(loss.detach(), losses[i], rtol=1e-5)
        assert torch.allclose(g[0], grads[i], rtol=1e-3, atol=1e-3 * float(g.abs().max()))
    with pytest.raises(ValueError, match="no attention boxes"):
        box_pull(build_cub_model("cub-baseline", [1, 2], input_size=64, backbone_weights=None), x, y,
                 torch.device("cpu"))


def test_the_box_signal_experiment_trains_on_a_validation_split_with_the_448_protocol():
    bs = load_script("cub_box_signal")
    cmd = bs.command("spsa-loc3", 5.0, threads=1)
    assert cmd[cmd.index("--box-grad") + 1] == "spsa" and cmd[cmd.index("--val-fraction") + 1] == "0.2"
    assert cmd[cmd.index("--input-size") + 1] == "448" and cmd[cmd.index("--epochs") + 1] == "5"
    assert cmd.count("--loc-lr-mult") == 1 and cmd[cmd.index("--loc-lr-mult") + 1] == "3"  # the setting's, once
    blur = bs.command("blur8", 5.0, threads=1)
    assert blur[blur.index("--grad-blur") + 1] == "8" and "--box-grad" not in blur
    base = bs.command("baseline", 5.0, threads=1)
    assert "--grad-blur" not in base and base[base.index("--model") + 1] == "cub-baseline"
    assert bs.stem_of("spsa-loc3", 5.0).name == "cub50_2st_448_spsa-loc3_e5"
    four = bs.command("4st-spsa-loc3", 5.0, threads=1)  # a "4st-" setting trains the 4×ST-CNN, same flags
    assert four[four.index("--model") + 1] == "cub-4st" and four[four.index("--box-grad") + 1] == "spsa"
    assert bs.stem_of("4st-spsa-loc3", 5.0).name == "cub50_4st_448_spsa-loc3_e5"
    assert "not run" in bs.report(("blur16",), 99.0)  # no run of that length: said, not invented


def test_each_variant_trained_for_the_test_split_has_exactly_its_validated_settings_flags():
    bs, tc = load_script("cub_box_signal"), load_script("train_cub")
    for setting, variant in bs.VARIANT_OF.items():
        assert tc.VARIANTS[variant] == bs.SETTINGS[setting][1], (setting, variant)
        assert bs.model_of(setting) == tc.MODELS[variant.partition("-")[0]]


def test_the_pull_report_names_per_bird_pulls_only_where_the_interval_is_above_zero():
    bp = load_script("cub_box_pull")
    def row(lo: float) -> dict:
        part = {"own": 0.2, "other": 0.1, "towards": 0.6, "n": 10, "diff": 0.1, "ci": (lo, 0.2)}
        return {"grad_norm": 1.0, "head": part, "body": part}

    r = {"n": 10, "loss": 0.5, "seconds": 1.0, "fd_step": 0.1, "transformers": [row(-0.01), row(-0.02)],
         "smoothed": {8.0: [row(0.01), row(-0.1)]}, "slope": [row(0.05), row(0.02)]}
    text = bp.report({"m": r}, "train", "python scripts/cub_box_pull.py")
    blocks = text.split("Per-bird pull")
    assert blocks[1].startswith(" (own above another bird's, CI above 0): **none**")  # the exact gradient
    assert "transformer 1 towards the head, transformer 1 towards the body\n" in blocks[2]  # σ = 8: only 1
    assert "σ = 8 px" in text and "over ±0.1" in text


@pytest.mark.parametrize("n,grid", [(0, (1, 1)), (1, (1, 1)), (3, (1, 3)), (4, (2, 2)), (5, (2, 3)), (6, (2, 3)),
                                    (8, (3, 3)), (9, (3, 3))])
def test_the_cub_page_puts_at_most_three_models_in_a_row_and_balances_the_rows(n, grid):
    from pages.lab.cub import column_grid
    rows, per_row = column_grid(n)
    assert (rows, per_row) == grid and rows * per_row >= n and per_row <= 3


def test_a_missed_per_bird_goal_states_the_cap_its_mean_box_leaves():
    mod = load_script("make_cub_results")

    def model(label: str, mean_hit: float, diff: float) -> dict:
        return {"label": label, "accuracy": 80.0,
                "per_bird_vs_mean_box": {"diff": diff, "ci": [diff - 0.01, diff + 0.01]},
                "head_detector": {"best": 1, "diff": 0.3},
                "transformers": [{"mean_box_head_hit": 0.3}, {"mean_box_head_hit": mean_hit}]}

    lines = mod.goal_lines({"models": {"a": model("wide boxes", 0.92, 0.05), "b": model("small boxes", 0.5, 0.05),
                                       "c": model("met", 0.92, 0.12)}})
    wide, small, met = (next(s for s in lines if s.startswith(f"- {k}:")) for k in ("wide boxes", "small boxes", "met"))
    assert "its mean box already holds 92.0 % of the heads, so at most 8.0 points were possible" in wide
    assert "at most" not in small and "**missed**" in small  # room enough: no cap stated
    assert "at most" not in met and "**met**" in met


def test_box_slope_is_the_central_difference_of_each_birds_loss_moving_one_box_along_one_axis():
    from stn_core.analysis.box_pull import box_slope

    m = lively_cub_model()
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    y = torch.tensor([0, 2])
    params, slopes = box_slope(m, x, y, torch.device("cpu"), step=0.1)
    assert slopes.shape == (2, 2, 2) and m.training  # mode restored
    assert slopes.abs().min() > 1e-3, "the loss depends on every box (else nothing is checked)"
    m.eval()
    xb, ce = x.float() / 255, torch.nn.functional.cross_entropy
    with torch.no_grad():
        for k in range(2):
            for axis in range(2):
                up, down = params.clone(), params.clone()
                up[:, k, 1 + axis] += 0.1   # box k only, the other box held where it was
                down[:, k, 1 + axis] -= 0.1
                want = (ce(m.logits_at(xb, up), y, reduction="none") - ce(m.logits_at(xb, down), y,
                                                                          reduction="none")) / 0.2
                assert torch.allclose(slopes[:, k, axis], want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="step must be positive"):
        box_slope(m, x, y, torch.device("cpu"), step=0.0)


def test_box_signal_report_reads_a_runs_validation_boxes_from_its_cache_once_computed(tmp_path, monkeypatch):
    from cub_fixture import make_tiny_cub

    from stn_core.train import main

    import stn_core.checkpoints.prediction_cache as pc

    bs = load_script("cub_box_signal")
    monkeypatch.setattr(bs, "ROOT", tmp_path)
    monkeypatch.setattr(pc, "repo_root", lambda: tmp_path)
    root = make_tiny_cub(tmp_path / "cub")
    stem = tmp_path / "run"
    main(["--task", "cub", "--classes", "1,12,14", "--backbone-weights", "none", "--input-size", "64",
          "--crop-size", "32", "--batch", "2", "--steps", "2", "--threads", "1", "--no-progress", "--data-root",
          str(root), "--model", "cub-2st", "--val-fraction", str(bs.VAL_FRACTION), "--out", str(stem)])
    first = bs.val_parts(stem)
    cid = bs.read_meta(stem)["checkpoint_id"]
    assert bs.val_cache_path(stem, cid).parent == tmp_path / "runs" / "cub_eval"
    assert bs.val_cache_path(stem, cid).is_file() and first["n"] > 0 and len(first["rates"]) == 2
    monkeypatch.setattr(bs, "load_model", lambda *a, **k: pytest.fail("the cached boxes were not used"))
    assert bs.val_parts(stem) == first
