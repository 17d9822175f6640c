"""Streamlit AppTest of the digit-strings page (pages/multidigit.py) and its logic (pages/lab/multidigit.py).

Checkpoints come from $STN_LAB_CHECKPOINTS: an empty folder (the "train them" message, the string still
shown) and a folder of untrained readers saved here (no training), whose transformers start at the identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from apptest_util import assert_no_exception, open_page

from pages.lab import multidigit as md
from stn_core import registry as reg
from stn_core.checkpoints import save_checkpoint
from stn_core.data.samples import load_mnist_sample
from stn_core.models.sequence import build_sequence_model

PAGE = "pages/multidigit.py"


@pytest.fixture(scope="module")
def ckdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sequence_checkpoints")
    torch.manual_seed(0)
    for crop in ("tight", "loose"):
        for key, err in zip(reg.SEQUENCE_KEYS, (7.5, 8.25, 11.0)):
            model = build_sequence_model(key, 64 if crop == "tight" else 128)
            meta = {"task": f"mnist-strings-{crop}", "model": key, "transform": model.config["transform"],
                    "input_size": model.input_size, "num_classes": 10, "test_error": err, "steps": 3, "final": True,
                    "command": reg.sequence_train_command(key, crop), "train_args": {"lr": 0.02, "seed": 0}}
            if key == "seq-st-multi":
                meta["extra"] = {"seeds": {"errors": {"0": 7.5, "1": 8.5}, "mean": 8.0, "std": 0.707}}
            save_checkpoint(d / reg.sequence_stem_name(key, crop), model, meta)
    return d


def test_no_checkpoints_shows_the_string_and_the_training_commands(monkeypatch, tmp_path):
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(tmp_path))
    at = open_page(PAGE)
    assert_no_exception(at)
    infos = " ".join(i.value for i in at.info)
    assert "python -m stn_core.train.sequence --model seq-st-multi --crop tight" in infos
    assert len(at.get("image")) == 1
    table = at.dataframe[-1].value
    assert list(table["paper, SVHN (%)"]) == [3.6, 3.7, 4.0]


def test_multi_shows_four_transformers_on_their_maps_and_every_reading(monkeypatch, ckdir):
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(ckdir))
    at = open_page(PAGE, {"seed": "7"})
    assert_no_exception(at)
    assert at.number_input(key="md_seed").value == 7
    assert len(at.get("image")) == 1 + 2 * 4                 # the string, then input and output of 4 transformers
    readings = at.dataframe[0].value
    assert list(readings["model"]) == [reg.SEQUENCE_LABELS[k] for k in reg.SEQUENCE_KEYS]
    assert set(readings["right"]) <= {"✓", "✗"}
    table = at.dataframe[-1].value
    assert list(table["sequence error (%), ours"]) == [7.5, 8.25, 11.0]
    assert list(table["seeds: mean ± std (%)"]) == ["8.00 ± 0.71 (2)", "1 seed", "1 seed"] and list(table["lr"]) == [0.02] * 3
    assert "Transformer 4" in " ".join(m.value for m in at.markdown)


def test_loose_crop_single_model_and_cnn(monkeypatch, ckdir):
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(ckdir))
    at = open_page(PAGE, {"crop": "loose", "model": "seq-st-single"})
    assert_no_exception(at)
    assert len(at.get("image")) == 1 + 2
    at.radio(key="md_model").set_value("seq-cnn").run()
    assert_no_exception(at)
    assert len(at.get("image")) == 1 and at.query_params["model"] in ("seq-cnn", ["seq-cnn"])
    assert list(at.dataframe[-1].value["paper, SVHN (%)"]) == [3.9, 3.9, 5.6]


def test_a_bad_link_warns_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(tmp_path))
    at = open_page(PAGE, {"crop": "huge", "seed": "-3", "model": "rnn"})
    assert_no_exception(at)
    text = " ".join(w.value for w in at.warning)
    assert "crop='huge'" in text and "seed='-3'" in text and "model='rnn'" in text
    assert at.radio(key="md_crop").value == "tight"


def test_identity_transformers_read_the_whole_map_and_the_product_is_the_identity():
    x, y = load_mnist_sample()
    s = md.make_string(x, y, "tight", 3)
    model = build_sequence_model("seq-st-multi")
    with torch.no_grad():
        v = model.views(s.images)
    square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float32)
    np.testing.assert_allclose(md.product_quad(v), square, atol=1e-6)
    pic = md.picture(s.images[0, 0].numpy(), [(square * 0.5, md.PRODUCT_COLOUR, 2)], scale=4)
    assert pic.shape == (256, 256, 3) and (pic == md.PRODUCT_COLOUR).all(-1).any()
    text, p = md.reading(v)
    assert 1 <= len(text) <= 5 and 0 < p <= 1
    assert md.product_quad(build_sequence_model("seq-cnn").views(s.images)) is None


def test_a_box_that_reaches_outside_the_image_gets_a_grey_margin():
    img = np.zeros((64, 64), np.float32)
    inside = md.picture(img, [(np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]]), (255, 0, 0), 1)], scale=2)
    assert inside.shape == (128, 128, 3)
    big = np.array([[-1.5, -1.5], [1.5, -1.5], [1.5, 1.5], [-1.5, 1.5]])
    out = md.picture(img, [(big, (255, 0, 0), 1)], scale=2)
    assert out.shape == (2 * (64 + 2 * 16), 2 * (64 + 2 * 16), 3)          # 0.25 of the side on each edge
    assert (out[4, 40] == md.MARGIN_GREY).all() and (out[96, 96] == 0).all()  # margin grey, image black
    assert (out[:, :, 0] == 255).any()                                       # the box is drawn in the margin


def test_a_broken_checkpoint_is_a_named_error_and_the_others_still_read(monkeypatch, tmp_path, ckdir):
    import shutil

    for f in ckdir.glob("seq64_*"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "seq64_cnn.json").write_text("{not json")
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(tmp_path))
    at = open_page(PAGE)
    assert_no_exception(at)
    assert any(e.value.startswith("CNN:") for e in at.error)
    assert list(at.dataframe[0].value["model"]) == ["ST-CNN Multi", "ST-CNN Single"]
