"""Streamlit caches of the pages' costly views (model runs, galleries, curves), kept per server.

They live in an imported module, not in the page scripts: Streamlit runs a page script on every rerun,
and a ``st.cache_data`` decorator executed again rebuilds its wrapper (it reads and hashes the function's
source) each time. Keys include a checkpoint's ``version`` (mtime, size), so a retrained model is never
served from an old entry. Not a page of its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from pages.lab import common
from pages.lab import cub as ca
from pages.lab import figures as viz
from pages.lab import playground as pg
from pages.lab import tour
from stn_core import registry as reg
from stn_core.analysis import inspect as insp
from stn_core.analysis import table1 as t1
from stn_core.data.samples import load_mnist_sample

# --------------------------------------------------------------------------- explorer

@st.cache_data(show_spinner="Running the model on the test digits …", max_entries=32)
def explorer_probs(stem: str, version: tuple[int, int], task: str, n: int) -> np.ndarray:
    model, _ = common.load_checkpoint(stem, version)
    return insp.predict_probs(model, common.test_digits(task).x[:n])


@st.cache_data(show_spinner=False, max_entries=64)
def explorer_gallery_scene(stem: str, version: tuple[int, int], task: str, indices: tuple[int, ...]) -> viz.Scene:
    """Figure 1 layout for test digits ``indices`` (the picture; :func:`explorer_gallery` draws it as SVG and
    :func:`explorer_gallery_png` as PNG)."""
    model, _ = common.load_checkpoint(stem, version)
    td = common.test_digits(task)
    idx = list(indices)
    preds = insp.predict(model, td.x[idx])
    has_st = preds[0].output is not None if preds else False
    return viz.figure1_gallery_scene(
        [td.x[i, 0].numpy() for i in idx], [p.pred for p in preds], [p.confidence for p in preds],
        [int(td.y[i]) for i in idx],
        regions=[p.region for p in preds] if has_st else None,
        outputs=[p.output for p in preds] if has_st else None,
        grids=[p.grid if p.kind == "tps" else None for p in preds] if has_st else None,
        captions=[f"#{i}" for i in idx])


@st.cache_data(show_spinner=False, max_entries=64)
def explorer_gallery(stem: str, version: tuple[int, int], task: str, indices: tuple[int, ...]) -> str:
    """The Figure 1 gallery of test digits ``indices`` as SVG (what the page shows)."""
    return viz.scene_svg(explorer_gallery_scene(stem, version, task, indices))


@st.cache_data(show_spinner=False, max_entries=8)
def explorer_gallery_png(stem: str, version: tuple[int, int], task: str, indices: tuple[int, ...]) -> bytes:
    """The same gallery as PNG: made only when its download button is clicked (~0.3 s of drawing)."""
    return viz.scene_png(explorer_gallery_scene(stem, version, task, indices))


@st.cache_resource(show_spinner=False, max_entries=4)
def table1_texts(folder: str, versions: str) -> tuple[str, str, str, str, str] | None:
    """The Table 1 markdown pieces of the checkpoints discovered in ``folder`` (keyed by
    :func:`pages.lab.common.discovery_key`: built once per change of the checkpoints, not per rerun):
    table, details, schedule, goals, longer-schedule table; None for goals when nothing is finished."""
    found = common.discover_checkpoints(Path(folder))
    cells = t1.table1_cells(found=found)
    done = any(c.status == "done" for row in cells for c in row)
    long = reg.long_runs(found)  # already discovered: no second read of checkpoints/long
    return (t1.table1_markdown(cells), t1.table1_details(cells), t1.schedule_markdown(cells),
            t1.goals_markdown(cells, long) if done else None, t1.longer_schedule_markdown(long, cells) if done else "")


# --------------------------------------------------------------------------- CUB birds

@st.cache_data(show_spinner=False, max_entries=16)
def cub_box_replay_gif(stem: str, version: tuple[int, int], image_id: int, _image: np.ndarray) -> bytes:
    """GIF of one history bird's boxes (``_image``: that bird, identified by ``image_id``)."""
    _, meta = common.load_checkpoint(stem, version)
    steps, hist, hbirds = ca.history_frames(meta)
    n = [hb["image_id"] for hb in hbirds].index(image_id)
    return ca.box_replay_gif(_image, steps, hist[:, n], ca.steps_per_epoch(meta))


@st.cache_data(show_spinner=False)
def cub_sample_birds() -> list[dict]:
    return ca.sample_birds()


@st.cache_data(show_spinner=False)
def cub_dataset_birds(classes: tuple[int, ...]) -> list[dict] | None:
    try:
        return ca.dataset_birds(classes)
    except Exception:  # no full copy here: the page offers the shipped birds only
        return None


@st.cache_data(show_spinner="Running the model on the gallery …", max_entries=8)
def cub_gallery(stem: str, version: tuple[int, int], src: str, ids: tuple[int, ...]) -> list[np.ndarray]:
    model, _ = common.load_checkpoint(stem, version)
    birds = {b["image_id"]: b for b in (cub_sample_birds() if src == "sample" else cub_dataset_birds(tuple(model.classes)))}
    images = [ca.load_bird_image(birds[i]) for i in ids]
    _, boxes = ca.predict_batch(model, images)
    return [ca.draw_boxes(im, ca.norm_to_pixels(b, im.shape[1], im.shape[0])) for im, b in zip(images, boxes)]


# --------------------------------------------------------------------------- tour

@st.cache_data(show_spinner=False, max_entries=1)
def tour_mnist() -> tuple[np.ndarray, np.ndarray] | None:
    try:
        x, y = load_mnist_sample()
        return x.astype(np.float32) / 255.0, y
    except Exception:
        return None


#: Models of step 1's sweep: ((stem, version), ...) — version (mtime, size) keys the caches.
Models = tuple[tuple[str, tuple[int, int]], ...]


@st.cache_data(show_spinner="Turning the digit through −90°…90° …", max_entries=64)
def tour_curves(models: Models, index: int, size: int) -> tuple[np.ndarray, ...]:
    digit, label = tour_digit(index)
    d = tour.place_digit(digit, size)
    return tuple(tour.confidence_curve(common.load_checkpoint(stem, v)[0], d, label) for stem, v in models)


@st.cache_data(show_spinner="Turning 100 test digits through −90°…90° …", max_entries=16)
def tour_mean_curves(models: Models, size: int, n: int = 100) -> tuple[np.ndarray, ...] | None:
    mn = tour_mnist()
    if mn is None:
        return None
    digits = np.stack([tour.place_digit(d, size) for d in mn[0][:n]])
    labels = [int(v) for v in mn[1][:n]]
    return tuple(tour.mean_confidence_curve(common.load_checkpoint(stem, v)[0], digits, labels) for stem, v in models)


@st.cache_data(show_spinner=False, max_entries=64)
def tour_figure1(stem: str, version: tuple[int, int], task: str, indices: tuple[int, ...]) -> tuple[str, viz.Scene]:
    """Figure 1 for test digits ``indices``: its SVG and the picture (drawn as PNG only for a download)."""
    td = common.test_digits(task)
    idx = list(indices)
    scene = tour.figure1_row_scene(common.load_checkpoint(stem, version)[0], td.x[idx], [int(td.y[i]) for i in idx],
                                   [f"#{i}" for i in idx])
    return viz.scene_svg(scene), scene


@st.cache_data(show_spinner=False, max_entries=32)
def tour_pipeline(rotation_deg: int) -> tuple[str, viz.Scene]:
    """Step 2's pipeline picture (shipped digit turned by ``rotation_deg``): its SVG and the picture."""
    ex_ = pg.pipeline_example(common.sample_image("mnist", 4 if len(common.catalog().digit_labels) > 4 else 0),
                              rotation_deg=float(rotation_deg))
    scene = viz.pipeline_scene(ex_.u, ex_.grid, ex_.v, ex_.outline)
    return viz.scene_svg(scene), scene


def tour_digit(index: int) -> tuple[np.ndarray, int]:
    """Shipped test digit ``index`` (28×28 grey, its label); a stand-in "F" (label 0) if missing."""
    mn = tour_mnist()
    if mn is None:
        return pg.fallback_digit()[:, :, 0], 0
    i = int(index) % len(mn[0])
    return mn[0][i], int(mn[1][i])
