"""AppTest of the Guided tour page: every step renders from a link, Next / Previous move the
step and the URL, a bad step number falls back to step 1 with a warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from apptest_util import assert_no_exception, downloads, open_page, record_downloads
from pages.lab import tour
from stn_core import registry as reg

TOUR = "pages/tour.py"


def _step(at) -> int:
    return int(at.selectbox(key="tour_sel").value)


@pytest.mark.parametrize("n", range(1, tour.N_STEPS + 1))
def test_every_step_renders_from_a_link(n):
    at = open_page(TOUR, {"step": str(n)})
    assert _step(at) == n
    assert at.query_params["step"] == [str(n)] or at.query_params["step"] == str(n)
    assert not at.error, [e.value for e in at.error]
    assert not at.warning, [w.value for w in at.warning]
    assert any(f"Step {n} of {tour.N_STEPS}" in p.proto.text for p in at.get("progress"))


def _q(at, name: str) -> str:
    v = at.query_params[name]
    return v[-1] if isinstance(v, list) else v


def test_next_and_previous_change_the_step_and_the_url():
    at = open_page(TOUR, {"step": "2"})
    at.button(key="tour_next").click().run()
    assert_no_exception(at)
    assert _step(at) == 3 and _q(at, "step") == "3"
    at.button(key="tour_prev").click().run()
    at.button(key="tour_prev").click().run()
    assert_no_exception(at)
    assert _step(at) == 1 and _q(at, "step") == "1"
    assert at.button(key="tour_prev").disabled


def test_selector_jumps_and_last_step_disables_next():
    at = open_page(TOUR)
    at.selectbox(key="tour_sel").set_value(tour.N_STEPS).run()
    assert_no_exception(at)
    assert _q(at, "step") == str(tour.N_STEPS) and at.button(key="tour_next").disabled


@pytest.mark.parametrize("bad", ["0", "99", "three"])
def test_invalid_step_falls_back_with_a_warning(bad):
    at = open_page(TOUR, {"step": bad})
    assert _step(at) == 1 and _q(at, "step") == "1"
    assert any("step 1" in w.value for w in at.warning)


def test_step_one_keeps_angle_and_digit_in_the_url():
    at = open_page(TOUR, {"step": "1", "angle": "-30", "digit": "7"})
    if not at.slider:  # no pair of checkpoints in this checkout
        pytest.skip("no distorted-MNIST checkpoints")
    assert at.slider(key="tour_angle").value == -30
    assert _q(at, "angle") == "-30" and _q(at, "digit") == "7"
    at.slider(key="tour_angle").set_value(60).run()
    assert_no_exception(at)
    assert _q(at, "angle") == "60"


def test_presentation_mode_toggle_runs():
    at = open_page(TOUR, {"step": "3"})
    at.toggle(key="tour_present").set_value(True).run()
    assert_no_exception(at)
    assert any("stSidebar" in h.proto.body for h in at.html)


def test_step_one_mean_curve_toggle():
    at = open_page(TOUR, {"step": "1"})
    if not at.slider:
        pytest.skip("no distorted-MNIST checkpoints")
    at.toggle(key="tour_mean").set_value(True).run()
    assert_no_exception(at)
    assert not at.error
    assert "Mean confidence" in at.get("plotly_chart")[0].proto.spec


def test_step_survives_a_visit_to_another_page():
    at = open_page(TOUR, {"step": "4"})
    at.switch_page("pages/home.py").run()
    at.query_params.clear()
    at.switch_page(TOUR).run()
    assert_no_exception(at)
    assert _step(at) == 4


def test_steps_with_tiny_checkpoints_including_a_deformable_cnn(monkeypatch, tmp_path):
    """Tiny untrained checkpoints in $STN_LAB_CHECKPOINTS: step 1 falls back to the RTS pair, step 9 shows a
    deformable CNN's own taps (the other helper's pages.lab.dcn)."""
    import torch

    from stn_core.checkpoints import save_checkpoint
    from stn_core.models import build_model
    from tiny_checkpoints import TINY, make_tiny_checkpoint

    make_tiny_checkpoint(tmp_path, "rts", "st-cnn-aff")
    make_tiny_checkpoint(tmp_path, "rts", "cnn")
    torch.manual_seed(0)
    dcn = build_model("dcn", None, 42, target_params=TINY)
    with torch.no_grad():
        for layer in dcn.deform_layers:
            layer.offset_conv.weight.normal_(0.0, 0.05)
    save_checkpoint(tmp_path / "mnist_rts_dcn", dcn, {"task": "mnist-rts", "final": True})
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(tmp_path))
    seen = record_downloads(monkeypatch)
    for n in (1, 5, 6, 9):
        at = open_page(TOUR, {"step": str(n)})
        assert not at.error, (n, [e.value for e in at.error])
        if n == 6:  # Figure 1 row: PNG and SVG downloads
            assert downloads(at, seen, "Download PNG")[0].startswith(b"\x89PNG\r\n\x1a\n")
            assert downloads(at, seen, "Download SVG")[0].startswith(b"<svg")
        infos = " ".join(i.value for i in at.info)
        assert "not available yet" not in infos, infos
    assert any("deformable" in str(c.proto.spec).lower() for c in at.get("plotly_chart"))
    caps = " ".join(c.value for c in at.caption)
    assert "mean |Δp|" in caps and "conv 1 (9×9)" in caps and "conv 2 (7×7)" in caps




def test_step_one_adds_the_upright_cnn_when_it_is_there(monkeypatch, tmp_path):
    """With a CNN trained on upright digits, step 1 sweeps three networks and says what the curves show."""
    from stn_core.checkpoints import save_checkpoint
    from stn_core.models import build_model
    from tiny_checkpoints import TINY, make_tiny_checkpoint

    make_tiny_checkpoint(tmp_path, "r", "cnn")
    make_tiny_checkpoint(tmp_path, "r", "st-cnn-aff")
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(tmp_path))
    at = open_page(TOUR, {"step": "1"})
    assert_no_exception(at)
    assert len(at.metric) == 2 and "not here yet" in " ".join(c.value for c in at.caption)
    save_checkpoint(tmp_path / reg.UPRIGHT_CNN, build_model("cnn", None, 28, target_params=TINY),
                    {"task": "mnist", "final": True, "test_error": 1.5,
                     "command": "python -m stn_core.train --task mnist --model cnn --steps 7 --out elsewhere"})
    at = open_page(TOUR, {"step": "1"})
    assert_no_exception(at)
    assert [m.label for m in at.metric] == ["CNN (R)", "ST-CNN Aff (R)", "CNN (upright)"]
    [conf] = [c for c in at.get("plotly_chart") if "Confidence in the true class" in str(c.proto.spec)]
    assert "CNN (upright)" in str(conf.proto.spec)
    assert "What the curves say" in " ".join(m.value for m in at.markdown)
    captions = " ".join(c.value for c in at.caption)
    assert "CNN (upright) 1.5 %" in captions
    assert "--steps 7 --out elsewhere" in captions, "the command shown is the checkpoint's own, from its JSON"


def test_pipeline_picture_downloads_as_png_and_svg(monkeypatch):
    seen = record_downloads(monkeypatch)
    at = open_page(TOUR, {"step": "2"})
    [png] = downloads(at, seen, "Download PNG")
    [svg] = downloads(at, seen, "Download SVG")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and svg.startswith(b"<svg")


CUB_BASELINE = Path(__file__).resolve().parents[2] / "checkpoints" / "cub50_baseline"


@pytest.mark.skipif(not CUB_BASELINE.with_suffix(".json").is_file(), reason="no CUB checkpoint in checkpoints/")
def test_cub_step_with_a_bird_model(monkeypatch, tmp_path):
    """Step 7 runs the bird model through pages.lab.cub (here the baseline copied as cub50_2st: no boxes)."""
    import shutil


    for name in ("cub50_2st", "cub50_baseline"):
        for ext in (".json", ".safetensors"):
            shutil.copy(CUB_BASELINE.with_suffix(ext), tmp_path / f"{name}{ext}")
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(tmp_path))
    at = open_page(TOUR, {"step": "8"})
    assert not at.error and not at.info, ([e.value for e in at.error], [i.value for i in at.info])
    assert any("Top 5" in m.value for m in at.markdown)


def test_step_seven_draws_the_four_transformers_of_a_string_reader(monkeypatch, tmp_path):
    """Step 7 (transformers on feature maps): with ST-CNN Multi present, the string with the product of the
    four maps, and each transformer's input and output; without it, the string and the training command."""
    import torch

    from stn_core.checkpoints import save_checkpoint
    from stn_core.models.sequence import build_sequence_model

    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(tmp_path))
    at = open_page(TOUR, {"step": "7"})
    assert not at.error and "python -m stn_core.train.sequence" in " ".join(i.value for i in at.info)
    assert len(at.get("image")) == 1
    torch.manual_seed(0)
    model = build_sequence_model("seq-st-multi")
    save_checkpoint(tmp_path / reg.sequence_stem_name("seq-st-multi", "tight"), model,
                    {"task": "mnist-strings-tight", "model": "seq-st-multi", "transform": "affine", "input_size": 64,
                     "num_classes": 10, "final": True})
    at = open_page(TOUR, {"step": "7"})
    assert not at.error and not at.info, [e.value for e in at.error]
    assert len(at.get("image")) == 1 + 2 * 4
    at.slider(key="tour_f_seed").set_value(9).run()
    assert not at.error
