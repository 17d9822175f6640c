"""The co-localisation pieces (appendix A.2): data and true boxes, the attention window as a box, IoU,
the triplet loss, the encoder's features and the bounded transformer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stn_core import colocalisation as C
from script_util import load_script


def _digits(n: int = 5) -> torch.Tensor:
    x = torch.zeros(n, 28, 28, dtype=torch.uint8)
    x[:, 4:24, 12:16] = 255
    return x


def test_each_image_holds_its_digit_inside_its_true_box():
    data = C.make_set(_digits(), clutter=False, generator=torch.Generator().manual_seed(0))
    assert data.x.shape == (5, 1, 84, 84) and data.boxes.shape == (5, 4)
    for img, (x0, y0, x1, y1) in zip(data.x[:, 0], data.boxes.long()):
        assert x1 - x0 == 28 and y1 - y0 == 28
        assert img[y0:y1, x0:x1].sum() == img.sum() == 20 * 4  # all the ink is inside the box


def test_clutter_adds_ink_outside_the_box():
    g = torch.Generator().manual_seed(1)
    data = C.make_set(_digits(), clutter=True, generator=g, pool=torch.full((3, 28, 28), 255, dtype=torch.uint8))
    inside = sum(float(img[y0:y1, x0:x1].sum()) for img, (x0, y0, x1, y1) in zip(data.x[:, 0], data.boxes.long()))
    assert float(data.x.sum()) > inside


def test_the_window_of_the_identity_is_the_canvas_and_iou_is_exact():
    full = C.boxes_of(torch.tensor([[1.0, 0.0, 0.0]]))
    torch.testing.assert_close(full, torch.tensor([[0.0, 0.0, 84.0, 84.0]]))
    third = C.boxes_of(torch.tensor([[1 / 3, -2 / 3, 2 / 3]]))  # the bottom-left 28×28 cell of a 3×3 split
    torch.testing.assert_close(third, torch.tensor([[0.0, 56.0, 28.0, 84.0]]), atol=1e-4, rtol=0)
    a, b = torch.tensor([[0.0, 0.0, 28.0, 28.0]]), torch.tensor([[14.0, 0.0, 42.0, 28.0]])
    torch.testing.assert_close(C.iou(a, b), torch.tensor([1 / 3]))
    torch.testing.assert_close(C.iou(a, a), torch.tensor([1.0]))


def test_the_triplet_loss_is_the_mean_hinge_over_ordered_pairs():
    f_t = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    f_r = torch.tensor([[0.0, 1.0], [1.0, 3.0], [0.0, 2.0]])
    d = torch.cdist(f_t, f_t) ** 2
    r = ((f_t - f_r) ** 2).sum(1)
    want = sum(max(0.0, float(d[n, m] - r[n] + 1.0)) for n in range(3) for m in range(3) if n != m) / 6
    assert float(C.triplet_loss(f_t, f_r)) == pytest.approx(want)
    with pytest.raises(ValueError):
        C.triplet_loss(f_t[:1], f_r[:1])


def test_the_transformer_starts_centred_and_stays_inside_the_canvas():
    model = C.CoLocaliser()
    x = torch.rand(4, 1, 84, 84)
    out = model(x)
    assert out.crops.shape == (4, 1, 28, 28)
    torch.testing.assert_close(out.params, torch.tensor([[C.S_START, 0.0, 0.0]] * 4), atol=1e-6, rtol=0)
    wild = C.bounded_attention(torch.tensor([[50.0, 50.0, -50.0], [-50.0, 3.0, 0.2]]))
    boxes = C.boxes_of(wild)
    assert torch.all(boxes >= -1e-4) and torch.all(boxes <= 84 + 1e-4)
    assert torch.all((wild[:, 0] >= C.S_MIN - 1e-6) & (wild[:, 0] <= C.S_MAX + 1e-6))


def test_encoder_features_concatenate_every_hidden_layer_and_the_logits():
    from stn_core.models import build_model

    cnn = build_model("cnn", None, 28).eval()
    f = C.encoder_features(cnn.classifier, torch.rand(3, 1, 28, 28), normalise=False)
    relus = [m for m in cnn.classifier if isinstance(m, torch.nn.ReLU)]
    assert len(relus) == 2 and f.shape[0] == 3 and f.shape[1] > 10 + 2 * 10


def test_a_short_run_records_its_history_and_scores_every_image():
    data = C.make_set(_digits(6), clutter=False, generator=torch.Generator().manual_seed(2))
    from stn_core.models import build_model

    _, run = C.train(data, build_model("cnn", None, 28).classifier, C.CoLocConfig(steps=4, batch=4, every=2, track=3))
    assert run.history_steps == [0, 2, 4] and all(b.shape == (3, 4) for b in run.history_boxes)
    assert len(run.losses) == 4 and run.ious.shape == (6,) and 0.0 <= run.correct <= 1.0


def test_candidate_windows_are_native_scale_and_inside_the_canvas():
    w = C.candidate_windows(4)
    assert w.shape == (15 * 15, 3) and torch.allclose(w[:, 0], torch.full((225,), 28 / 84))
    boxes = C.boxes_of(w)
    assert float(boxes.min()) >= 0 and float(boxes.max()) <= 84
    assert torch.allclose(boxes[:, 2] - boxes[:, 0], torch.full((225,), 28.0))


def test_search_finds_shipped_digits_of_one_class_with_the_shipped_cnn():
    # the shipped R CNN as the encoder and 12 shipped test "1"s: the search, which sees neither labels nor
    # boxes, should put most windows on the digits (the full 100-image runs: results/colocalisation.md)
    from stn_core.checkpoints import load_model
    from stn_core.data.samples import load_mnist_sample
    from stn_core.registry import checkpoint_dir

    stem = checkpoint_dir() / "mnist_r_cnn"
    if not stem.with_suffix(".json").is_file():
        pytest.skip("the shipped R CNN checkpoint is missing")
    x, y = load_mnist_sample()
    ones = torch.as_tensor(x[y == 1][:12])
    data = C.make_set(ones, clutter=False, generator=torch.Generator().manual_seed(0))
    res = C.search(data, load_model(stem)[0].classifier.eval(), iters=3)
    assert len(res.changed) == 3 and res.changed[0] > 0
    assert res.final_correct >= 0.75, res.correct


def test_search_reports_every_sweep_and_its_loss_falls():
    from stn_core.models import build_model

    data = C.make_set(_digits(6), clutter=False, generator=torch.Generator().manual_seed(3))
    seen = []
    res = C.search(data, build_model("cnn", None, 28).classifier.eval(), iters=2,
                   callback=lambda sweep, params, r: seen.append((sweep, params.shape, len(r.losses))))
    assert seen == [(0, (6, 3), 1), (1, (6, 3), 2), (2, (6, 3), 3)]
    assert len(res.losses) == 3 and res.losses[-1] <= res.losses[0]   # each move takes the lowest loss at that time


def test_distil_learns_to_predict_given_windows_with_a_fixed_native_scale():
    """The localisation net trained on the true boxes' windows (a stand-in for a search result) reproduces
    them: every predicted window overlaps its digit at IoU > 0.5, the scale stays native."""
    data = C.make_set(_digits(16), clutter=False, generator=torch.Generator().manual_seed(3))
    s = C.CROP / C.CANVAS
    centre = (data.boxes[:, :2] + data.boxes[:, 2:]) / 2 / C.CANVAS * 2 - 1
    windows = torch.cat([torch.full((16, 1), s), centre], 1)
    model = C.distil(data, windows, steps=400)
    params = model.loc(data.x).detach()
    assert torch.allclose(params[:, 0], torch.full((16,), s))
    assert C.correct_fraction(model, data) == 1.0
    with pytest.raises(ValueError, match="windows"):
        C.distil(data, windows[:3])
    with pytest.raises(ValueError, match="fixed_scale"):
        C.CoLocaliser(fixed_scale=5.0)


def test_training_can_continue_from_a_given_localiser():
    from stn_core.models import build_model

    data = C.make_set(_digits(6), clutter=False, generator=torch.Generator().manual_seed(2))
    start = C.CoLocaliser(fixed_scale=C.CROP / C.CANVAS)
    before = [p.detach().clone() for p in start.parameters()]
    model, run = C.train(data, build_model("cnn", None, 28).classifier, C.CoLocConfig(steps=2, batch=4, every=1),
                         model=start)
    assert model is start and len(run.losses) == 2
    assert torch.allclose(model.loc(data.x)[:, 0], torch.full((6,), C.CROP / C.CANVAS))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_bank_saves_loads_and_runs_the_net_of_the_asked_class(tmp_path):
    from stn_core.checkpoints import load_model, save_checkpoint

    bank = C.CoLocBank()
    with torch.no_grad():  # make class 3's net point somewhere else than the others (b_x = 1 → right)
        bank.nets[3].loc.head.bias[1] = 1.0
    save_checkpoint(tmp_path / "coloc_t", bank, {"task": C.BANK_TASKS["T"], "final": True, "test_error": 12.5})
    loaded, meta = load_model(tmp_path / "coloc_t")
    assert isinstance(loaded, C.CoLocBank) and meta["model"] == C.BANK_MODEL and meta["input_size"] == C.CANVAS
    x = torch.zeros(2, 1, C.CANVAS, C.CANVAS)
    out3, out0 = loaded(x, 3), loaded(x, 0)
    assert out3.crops.shape == (2, 1, C.CROP, C.CROP)
    assert torch.allclose(out3.params[:, 0], torch.full((2,), C.CROP / C.CANVAS))  # native scale
    assert (out3.params[:, 1] > 0.3).all() and (out0.params[:, 1:] == 0).all()
    with pytest.raises(ValueError, match="digit must be in 0..9"):
        loaded(x, 10)


@pytest.mark.parametrize("change, message", [({"num_classes": 11, "classes": [str(i) for i in range(11)]},
                                              "num_classes of a co-localisation bank"),
                                             ({"input_size": 90}, "input_size of a co-localisation bank"),
                                             ({"transform": "affine"}, "coloc-bank transform must be")])
def test_a_bank_checkpoint_with_impossible_settings_is_refused(tmp_path, change, message):
    import json

    from stn_core.checkpoints import CheckpointError, load_model, save_checkpoint

    save_checkpoint(tmp_path / "b", C.CoLocBank(), {"task": "coloc-t"})
    meta = json.loads((tmp_path / "b.json").read_text())
    (tmp_path / "b.json").write_text(json.dumps({**meta, **change}))
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path / "b")


def test_descent_alignment_scores_each_window_and_leaves_windows_without_ink_out():
    from stn_core.models import build_model

    torch.manual_seed(0)
    x = torch.zeros(6, 1, C.CANVAS, C.CANVAS)
    boxes = torch.zeros(6, 4)
    for i in range(6):  # three digits overlapping the centred native window, three in the far corner
        top, left = (30, 36 + i) if i < 3 else (0, 0)
        x[i, 0, top + 4:top + 24, left + 10:left + 18] = torch.rand(20, 8) * 0.5 + 0.5
        boxes[i] = torch.tensor([left, top, left + C.CROP, top + C.CROP])
    encoder = build_model("cnn", None, 28).classifier.eval()
    cos = C.descent_alignment(C.CoLocSet(x, boxes), encoder, C.CROP / C.CANVAS)
    assert cos.shape == (6,)
    assert cos[3:].isnan().all()  # a window on empty canvas has no gradient: no direction to score
    assert not cos[:3].isnan().any() and (cos[:3].abs() <= 1 + 1e-6).all()


def test_the_sgd_results_script_writes_a_row_per_class_beside_the_paper(monkeypatch, tmp_path):
    """scripts/colocalisation_sgd.py on the shipped sample (no MNIST files needed): one class, a few steps."""

    from stn_core.data import tasks as ds
    from stn_core.data.samples import load_mnist_sample

    x, y = load_mnist_sample()
    monkeypatch.setattr(ds, "load_split", lambda split, *a, **k: (torch.as_tensor(x), torch.as_tensor(y)))
    mod = load_script("colocalisation_sgd")
    out = tmp_path / "sgd.md"
    mod.main(["--digits", "3", "--steps", "3", "--basin-steps", "2", "--out", str(out)])
    text = out.read_text()
    assert "| 3 | " in text and "| paper | 100 % | | 75–93 % | |" in text and "3 steps" in text
    assert "--digits 3 --steps 3 --basin-steps 2" in text  # the command that made it
    assert "## Where the loss sends the windows from a shared start" in text and "| **all** | **" in text
    assert "## How far the loss pulls: windows started near their digits" in text and "| 3 | " in text.split("pulls")[1]
    assert f"(momentum {C.BASIN_MOMENTUM:g}, lr {C.BASIN_LR:g} per window" in text  # the probe's own settings


def test_the_basin_probe_keeps_windows_on_their_digits_and_reports_start_and_end():
    """Windows started on their digits (offset 0) with no SGD step are all correct at distance 0; started 20 px
    away none is; SGD steps change the end, not the start; fewer than two images are refused."""
    from stn_core.models import build_model

    torch.manual_seed(0)
    data = C.make_set(_digits(6), False, torch.Generator().manual_seed(0))
    encoder = build_model("cnn", None, 28).classifier.eval()
    still = C.basin_probe(data, encoder, 0.0, steps=0)
    assert still.correct_start == still.correct_end == 1.0 and still.dist_start < 1e-4
    seen = []
    far = C.basin_probe(data, encoder, 20.0, steps=3, every=2, callback=lambda *a: seen.append(a))
    assert [a[0] for a in seen] == [0, 2, 3] and all(a[1].shape == (6, 3) for a in seen)
    assert np.isnan(seen[0][2]) and not np.isnan(seen[-1][2])  # no loss before the first step
    assert far.correct_start == 0.0 and 10.0 < far.dist_start <= 20.0 + 1e-4  # clamping inside the canvas may shorten it
    assert far.dist_end != far.dist_start
    with pytest.raises(ValueError, match="two images"):
        C.basin_probe(C.CoLocSet(data.x[:1], data.boxes[:1]), encoder, 5.0)


def test_the_results_sentence_on_sgd_after_teaching_names_the_classes_it_moved_off():
    """scripts/colocalisation.py's closing sentence is computed from the rows: a fall of more than 5 pp on the set
    names the class and both shares; none, no list."""

    mod = load_script("colocalisation")
    cell = lambda taught, after: (None, {"distilled": (taught, 0.5), "sgd": (after, 0.5)})  # noqa: E731
    rows = [(7, {"T": cell(0.59, 0.24), "TC": cell(0.61, 0.60)}), (9, {"T": cell(1.0, 0.97), "TC": cell(1.0, 0.01)})]
    text = mod._kept_sentence(rows, 2)
    assert "for 1 of 2 classes without clutter and 1 with" in text
    assert "T 7s (59 % → 24 %), TC 9s (100 % → 1 %)." in text
    steady = [(7, {"T": cell(0.6, 0.6), "TC": cell(0.6, 0.58)})]
    assert "moved them off" not in mod._kept_sentence(steady, 1) and "for 1 of 1 classes" in mod._kept_sentence(steady, 1)


def test_tiled_grid_spans_the_canvas_edge_to_edge_row_by_row():
    t = C.tiled_grid(4)
    assert t.shape == (16, 2)
    s = C.CROP / C.CANVAS
    assert torch.allclose(t[0], torch.tensor([-(1 - s), -(1 - s)])) and torch.allclose(t[-1], torch.tensor([1 - s, 1 - s]))
    assert torch.allclose(t[1, 1], t[0, 1]) and t[1, 0] > t[0, 0]  # x varies first


def test_tiled_sgd_prunes_to_one_window_per_image_and_reports_each_point():
    """The schedule's kept counts appear in order at the history points; every image ends with one native-scale
    window inside the canvas; a window already on its digit and kept alone with no step is scored correct; bad
    schedules and single images are refused."""
    from stn_core.models import build_model

    torch.manual_seed(0)
    data = C.make_set(_digits(6), False, torch.Generator().manual_seed(0))
    encoder = build_model("cnn", None, 28).classifier.eval()
    seen = []
    res = C.tiled_sgd(data, encoder, tiles=3, schedule=((9, 2), (4, 4), (1, 6)), every=2,
                      callback=lambda *a: seen.append(a))
    assert res.steps == [0, 2, 4, 6] and res.kept == [9, 9, 4, 1]
    assert [a[1].shape for a in seen] == [(6, 9, 3), (6, 9, 3), (6, 4, 3), (6, 1, 3)]
    assert np.isnan(seen[0][3]) and not np.isnan(seen[-1][3]) and seen[-1][2].tolist() == [0] * 6
    assert res.windows.shape == (6, 3) and torch.allclose(res.windows[:, 0], torch.tensor(C.CROP / C.CANVAS))
    assert (res.windows[:, 1:].abs() <= 1 - C.CROP / C.CANVAS + 1e-6).all()
    assert res.ious.shape == (6,) and res.correct[-1] == C.share_correct(res.ious)
    with pytest.raises(ValueError, match="end with one window"):
        C.tiled_sgd(data, encoder, tiles=2, schedule=((4, 2), (2, 4)))
    for bad in (((2, 2), (1, 4)), ((4, 2), (4, 2), (1, 6)), ((4, 2), (2, 4), (3, 5), (1, 6))):
        with pytest.raises(ValueError, match="start with all"):
            C.tiled_sgd(data, encoder, tiles=2, schedule=bad)
    with pytest.raises(ValueError, match="two images"):
        C.tiled_sgd(C.CoLocSet(data.x[:1], data.boxes[:1]), encoder)


def test_tiled_sgd_finds_shipped_digits_of_one_class_with_the_shipped_cnn():
    # 12 shipped test "0"s and the shipped R CNN: SGD from the tiled starts (no labels, no boxes) should end with
    # most windows on the digits (the full 100-image runs: results/colocalisation-tiled.md)
    from stn_core.checkpoints import load_model
    from stn_core.data.samples import load_mnist_sample
    from stn_core.registry import checkpoint_dir

    stem = checkpoint_dir() / "mnist_r_cnn"
    if not stem.with_suffix(".json").is_file():
        pytest.skip("the shipped R CNN checkpoint is missing")
    x, y = load_mnist_sample()
    data = C.make_set(torch.as_tensor(x[y == 0][:12]), clutter=False, generator=torch.Generator().manual_seed(0))
    res = C.tiled_sgd(data, load_model(stem)[0].classifier.eval(), schedule=((16, 10), (4, 20), (1, 40)))
    assert C.share_correct(res.ious) >= 0.75, res.correct


def test_the_tiled_results_script_writes_a_row_per_class_with_its_phases(monkeypatch, tmp_path):
    """scripts/colocalisation_tiled.py on the shipped sample (no MNIST files needed), one class, short phases: the
    row gives the final share and the share at the start and at the end of every phase, beside the paper."""

    from stn_core.data import tasks as ds
    from stn_core.data.samples import load_mnist_sample

    x, y = load_mnist_sample()
    monkeypatch.setattr(ds, "load_split", lambda split, *a, **k: (torch.as_tensor(x), torch.as_tensor(y)))
    monkeypatch.setattr(C, "TILED_SCHEDULE", ((C.TILES ** 2, 10), (4, 20), (1, 30)))
    monkeypatch.setattr(C, "N_IMAGES", 12)
    mod = load_script("colocalisation_tiled")
    out = tmp_path / "tiled.md"
    mod.main(["--digits", "0", "--out", str(out)])
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| 0 | "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1].endswith("%") and cells[3].count("→") == 3 and cells[4].count("→") == 3  # start + 3 phases
    assert cells[3].split(" → ")[-1] + " %" == cells[1]  # the last phase's end is the final share
    assert "| paper (a localisation net, SGD) | 100 % | 75–93 % | | |" in text
    assert "`python scripts/colocalisation_tiled.py --digits 0 --out" in text  # the command that made it
    assert "16 until 10, 4 until 20, 1 until 30" in text


def test_the_paper_set_takes_the_first_digits_of_the_class_and_clutters_only_tc():
    x = torch.zeros(6, 28, 28, dtype=torch.uint8)
    x[:, 10:18, 10:18] = 255
    y = torch.tensor([1, 2, 1, 1, 2, 1])
    t, tc = C.paper_set(x, y, 1, "T"), C.paper_set(x, y, 1, "TC")
    assert t.x.shape == (4, 1, C.CANVAS, C.CANVAS) and torch.equal(t.boxes, tc.boxes)  # same seed, same places
    assert tc.x.sum() > t.x.sum()  # the clutter's ink
    with pytest.raises(ValueError, match="'T' or 'TC'"):
        C.paper_set(x, y, 1, "C")
    order = [(d, st, ds.x.shape[0]) for d, st, ds in C.paper_sets(x, y, [2, 1])]
    assert order == [(2, "T", 2), (2, "TC", 2), (1, "T", 4), (1, "TC", 4)]
