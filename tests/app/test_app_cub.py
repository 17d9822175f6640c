"""Streamlit AppTest of the CUB attention page (pages/cub.py).

Checkpoints come from $STN_LAB_CHECKPOINTS: an empty folder (the "train them" message, no crash)
and a folder of tiny untrained checkpoints (random-init backbone, 64-px input) saved here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from apptest_util import assert_no_exception, open_page
from stn_core.checkpoints import save_checkpoint
from stn_core.models.cub import arch_of, build_cub_model

PAGE = "pages/cub.py"
CLASSES = [1, 12, 14, 17, 36, 42, 47, 50]


def make_tiny_cub_checkpoint(folder: Path, key: str, final: bool = True, size: int = 224) -> Path:
    """An untrained tiny CUB model saved as ``folder/cub50_<key>[_448]`` with a fake box history."""
    name = {"baseline": "cub-baseline", "2st": "cub-2st", "4st": "cub-4st"}[key.partition("-")[0]]
    torch.manual_seed(0)
    m = build_cub_model(name, CLASSES, input_size=64, crop_size=32, backbone_weights=None,
                        loc_head="heatmap" if key == "2st-heatmap" else "mlp")
    extra = {"arch": arch_of(m), "class_names": {"1": "Black footed Albatross", "12": "Yellow headed Blackbird"},
             "box_history": None}
    if m.n_st:
        b0 = np.array([[-1, -0.5, 0, 0.5], [0, -0.5, 1, 0.5]])[: m.n_st]
        if m.n_st == 4:
            b0 = np.array([[-1, -1, 0, 0], [0, -1, 1, 0], [-1, 0, 0, 1], [0, 0, 1, 1]])
        extra["box_history"] = {"birds": [{"image_id": 1, "class_id": 1, "class_name": "Black footed Albatross"},
                                          {"image_id": 99999, "class_id": 2, "class_name": "Missing bird"}],
                                "steps": [0, 10], "boxes": [[b0.tolist()] * 2, [(b0 * 0.9).tolist()] * 2]}
    meta = {"task": "cub50", "model": name, "transform": "attention" if m.n_st else None, "input_size": 64,
            "num_classes": len(CLASSES), "classes": CLASSES, "final": final, "steps": 10, "test_error": 50.0,
            "command": f"python -m stn_core.train --task cub50 --model {name}", "train_args": {"steps": 20},
            "extra": extra}
    from stn_core.registry import cub_stem_name

    return save_checkpoint(folder / cub_stem_name(key, size), m, meta)


@pytest.fixture(scope="module")
def ckdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cub_checkpoints")
    make_tiny_cub_checkpoint(d, "baseline")
    make_tiny_cub_checkpoint(d, "2st")
    make_tiny_cub_checkpoint(d, "4st", final=False)
    return d


def _q(at, key):
    v = at.query_params.get(key)
    return v[0] if isinstance(v, list) else v


def test_no_checkpoints_gives_the_training_command(monkeypatch, tmp_path):
    monkeypatch.setenv("STN_LAB_CHECKPOINTS", str(tmp_path))
    at = open_page(PAGE)
    infos = " ".join(i.value for i in at.info)
    assert "scripts/train_cub.py" in infos
    assert len(at.get("image")) >= 1, "the bird is shown even without a model"


def test_page_with_models(monkeypatch, ckdir):
    monkeypatch.setenv("STN_LAB_CHECKPOINTS", str(ckdir))
    at = open_page(PAGE, {"src": "sample", "cls": "0", "i": "2", "parts": "1", "bbox": "1"})
    assert_no_exception(at)
    assert _q(at, "i") == "2" and _q(at, "parts") == "1"
    assert any("training in progress" in w.value for w in at.warning), "the unfinished 4st is flagged"
    assert len(at.dataframe) >= 3  # top-5 tables of the three models
    # pick another bird: the URL follows
    at.number_input(key="cub_i").set_value(5).run()
    assert_no_exception(at)
    assert _q(at, "i") == "5"
    # one species only
    at.selectbox(key="cub_cls").set_value(17).run()
    assert_no_exception(at)
    assert _q(at, "cls") == "17"
    at.button(key="cub_random").click().run()
    assert_no_exception(at)
    # gallery model and replay slider
    at.radio(key="cub_st").set_value("4st").run()
    assert_no_exception(at)
    assert _q(at, "st") == "4st"
    at.select_slider(key="cub_step").set_value(0).run()
    assert_no_exception(at)
    assert any("not available here" in c.value for c in at.caption)


def test_bad_link_warns(monkeypatch, ckdir):
    monkeypatch.setenv("STN_LAB_CHECKPOINTS", str(ckdir))
    at = open_page(PAGE, {"src": "nowhere", "cls": "999", "i": "-4", "st": "7st"})
    assert_no_exception(at)
    assert len(at.warning) >= 2
    assert _q(at, "src") == "sample" and _q(at, "cls") == "0"


def test_upload_mode_without_file(monkeypatch, ckdir):
    monkeypatch.setenv("STN_LAB_CHECKPOINTS", str(ckdir))
    at = open_page(PAGE, {"src": "upload"})
    assert_no_exception(at)
    assert any("Upload a bird photo" in i.value for i in at.info)


def _png(w: int, h: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_upload_on_the_normal_click_path(monkeypatch, ckdir):
    """Open the page, pick a species, switch to "Your photo", upload: the species box is not drawn in upload
    mode (Streamlit drops its key), and the page must not read a missing key (was: KeyError 'cub_cls')."""
    monkeypatch.setenv("STN_LAB_CHECKPOINTS", str(ckdir))
    at = open_page(PAGE, {"src": "sample"})
    at.radio(key="cub_src").set_value("upload").run()
    assert_no_exception(at)
    at.file_uploader(key="cub_upload").upload("bird.png", _png(64, 48), "image/png").run()
    assert_no_exception(at)
    assert not at.error, [e.value for e in at.error]
    at.radio(key="cub_src").set_value("sample").run()  # and back: the species box returns with its value
    assert_no_exception(at)


@pytest.mark.parametrize("w,h", [(1, 1), (1, 40), (40, 1), (600, 2)])
def test_degenerate_uploads_give_a_picture_not_a_traceback(monkeypatch, ckdir, w, h):
    monkeypatch.setenv("STN_LAB_CHECKPOINTS", str(ckdir))
    at = open_page(PAGE, {"src": "upload"})
    at.file_uploader(key="cub_upload").upload("tiny.png", _png(w, h), "image/png").run()
    assert_no_exception(at)


def test_box_replay_gif_download(monkeypatch, ckdir):
    monkeypatch.setenv("STN_LAB_CHECKPOINTS", str(ckdir))
    at = open_page(PAGE, {"src": "sample", "st": "2st"})
    assert_no_exception(at)
    gifs = [str(b.proto) for b in at.get("download_button") if "cub_gif" in str(b.proto)]
    assert len(gifs) == 1 and "Box replay (GIF)" in gifs[0]
    # only the history bird whose photo is here (image 1) can be replayed; the missing one is not offered
    assert at.selectbox(key="cub_gif_bird").options == ["Black footed Albatross (CUB image 1)"]
    at.radio(key="cub_st").set_value("4st").run()
    assert_no_exception(at)
    assert any("cub_gif" in str(b.proto) for b in at.get("download_button"))


def test_both_input_sizes(monkeypatch, tmp_path):
    """448-px checkpoints present: the page opens on them (res=448 in the URL); the radio switches to the
    224-px models, which are missing here, so it says how to train them."""
    make_tiny_cub_checkpoint(tmp_path, "2st", size=448)
    make_tiny_cub_checkpoint(tmp_path, "2st-heatmap", size=448)
    monkeypatch.setenv("STN_LAB_CHECKPOINTS", str(tmp_path))
    at = open_page(PAGE)
    assert_no_exception(at)
    assert _q(at, "res") == "448" and at.radio(key="cub_res").value == 448
    md = " ".join(m.value for m in at.markdown)
    assert "2×ST-CNN, heatmap head" in md, "the 448-px variant is shown beside the models"
    at.radio(key="cub_st").set_value("2st-heatmap").run()  # the gallery / replay of the variant
    assert_no_exception(at)
    assert _q(at, "st") == "2st-heatmap"
    infos = " ".join(i.value for i in at.info)
    assert "Not trained yet at 448 px: CNN baseline, 4×ST-CNN" in infos
    at.radio(key="cub_res").set_value(224).run()
    assert_no_exception(at)
    assert _q(at, "res") == "224"
    assert "No 224-px CUB checkpoints yet" in " ".join(i.value for i in at.info)
    bad = open_page(PAGE, {"res": "300"})
    assert_no_exception(bad)
    assert any("Unknown input size" in w.value for w in bad.warning) and _q(bad, "res") == "448"


def test_six_models_at_448_each_get_a_labelled_panel_and_top5_table(monkeypatch, tmp_path):
    """Three models and three variants (the row wraps: column_grid, tested in test_cub_analysis.py)."""
    keys = ("baseline", "2st", "4st", "2st-heatmap", "2st-scale", "2st-spsa")
    for k in keys:
        make_tiny_cub_checkpoint(tmp_path, k, size=448)
    monkeypatch.setenv("STN_LAB_CHECKPOINTS", str(tmp_path))
    at = open_page(PAGE, {"res": "448"})
    assert_no_exception(at)
    from stn_core.registry import CUB_LABELS
    md = [m.value for m in at.markdown]
    assert all(f"**{CUB_LABELS[k]}**" in md for k in keys)
    assert len(at.dataframe) >= len(keys)  # a top-5 table per model
