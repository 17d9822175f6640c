"""3-D spatial transformer (paper appendix A.3): a digit tilted in a volume, the box the transformer
reads, and the flat projection the classifier sees.

URL path: ``/volume``; query parameters ``index`` (shipped test digit), ``seed`` (pose), ``mode``
(learned | hand) and, in hand mode, ``rx ry rz`` (degrees), ``scale``, ``tx ty tz`` (normalised).
Checkpoints: ``checkpoints/volume_st-cnn`` and ``checkpoints/volume_cnn`` (:func:`stn_core.registry.find_volume`).
Logic in :mod:`pages.lab.volume`.

Widget keys (for AppTest): ``vol_index``, ``vol_seed``, ``vol_mode``, ``vol_rx``, ``vol_ry``, ``vol_rz``,
``vol_scale``, ``vol_tx``, ``vol_ty``, ``vol_tz``; buttons ``vol_random``, ``vol_undo``.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from pages.lab import common
from pages.lab import figures as viz
from pages.lab import volume as vl
from pages.shell.navigation import require_app
from stn_core import registry as reg

require_app()  # first: a run that bypassed app.py reruns through it

P = "vol_"
ss = st.session_state
HAND = ("rx", "ry", "rz", "scale", "tx", "ty", "tz")


def _set_state(s: vl.PageState) -> None:
    ss[P + "index"], ss[P + "seed"], ss[P + "mode"] = s.index, s.seed, s.mode
    for k in HAND:
        ss[P + k] = getattr(s, k)


def _random_pose() -> None:
    ss[P + "seed"] = int(np.random.default_rng().integers(0, vl.MAX_SEED))


def _undo() -> None:
    pose = vl.page_pose(int(ss[P + "seed"]))
    _set_state(vl.undo_state(vl.PageState(int(ss[P + "index"]), int(ss[P + "seed"])), pose))


# --------------------------------------------------------------------------- state

cat = common.catalog()
n_digits = len(cat.digit_labels)
entries = reg.find_volume(reg.checkpoint_dir())
if P + "init" not in ss:
    state0, warns = vl.parse_state(common.query_dict(), n_digits)
    _set_state(state0)
    ss[P + "warns"] = warns
    ss[P + "init"] = True

st.title("3-D spatial transformer")
st.markdown(
    "The paper's appendix A.3 takes the transformer to three dimensions: θ becomes a 3×4 matrix, the "
    "sampling grid a cube of points, the sampler trilinear. Here an MNIST digit is extruded into a thin slab, "
    "tilted (up to ±60° about x and y), spun (±45°) and placed at random in a 60×60×60 volume. A camera "
    "looking along the depth axis sees a squashed, rotated digit. The **3-D ST-CNN** regresses θ from the "
    "volume, trained with class labels only; its output cube is flattened along depth, and a 2-D CNN classifies "
    "that picture. The ideal θ turns the slab back to face the camera and zooms onto it (try **by hand** → "
    "*θ that undoes the pose*). " + vl.trained_summary({k: e.meta for k, e in entries.items()}))
for w in ss.get(P + "warns", []):
    st.warning(w)
if cat.note:
    st.info(cat.note)

sb = st.sidebar
sb.subheader("The volume")
sb.number_input(f"Shipped test digit (0–{n_digits - 1})", 0, max(0, n_digits - 1), step=1, key=P + "index")
sb.number_input("Pose seed", 0, vl.MAX_SEED, step=1, key=P + "seed", help="Draws the tilt, spin and position.")
sb.button("Random pose", key=P + "random", on_click=_random_pose, icon=":material/casino:")
sb.subheader("θ of the transformer")
sb.radio("θ", list(vl.MODES), format_func=vl.MODES.get, key=P + "mode", label_visibility="collapsed")
if ss[P + "mode"] == "hand":
    for k, label in (("rx", "rotation about x (°)"), ("ry", "rotation about y (°)"), ("rz", "rotation about z (°)")):
        sb.slider(label, -float(vl.ROT_MAX), float(vl.ROT_MAX), step=1.0, key=P + k)
    sb.slider("scale", *vl.SCALE_RANGE, step=0.01, key=P + "scale")
    for k in ("tx", "ty", "tz"):
        sb.slider(f"translation {k[1]}", -vl.SHIFT_MAX, vl.SHIFT_MAX, step=0.01, key=P + k)
    sb.button("θ that undoes the pose", key=P + "undo", on_click=_undo, icon=":material/undo:",
              help="The exact inverse of the pose: what a perfect localisation net would output.")
state = vl.PageState(int(ss[P + "index"]), int(ss[P + "seed"]), ss[P + "mode"],
                     *(float(ss[P + k]) for k in HAND))
common.sync_query_params(state.query())
common.copy_link(sb, state.query())

# --------------------------------------------------------------------------- data and models

digit = common.sample_image("mnist", state.index)[..., 0].astype(np.float32)
label = cat.digit_labels[state.index] if n_digits else -1
volume, pose = vl.make_volume(digit, state.seed)
models = common.load_keyed_models(entries, reg.VOLUME_LABELS)
if not models:
    st.info("No trained volume model yet: the page shows the volume and the hand θ only. Train them with\n\n"
            + "\n\n".join(f"`{reg.volume_train_command(k)}`" for k in reg.VOLUME_KEYS))

st_model = models.get("vol-st-cnn")
with torch.no_grad():
    learned = st_model.views(volume) if st_model is not None else None
    if state.mode == "hand" or learned is None:
        theta = vl.hand_theta(state)
        shown = st_model.views(volume, theta=theta) if st_model is not None else None
        box_name = "hand θ"
    else:
        theta, shown, box_name = learned.theta, learned, "learned θ"
    plain = models["vol-cnn"].views(volume) if "vol-cnn" in models else None

# --------------------------------------------------------------------------- main view

left, right = st.columns([3, 2])
with left:
    st.markdown(f"**The volume** (digit #{state.index}, pose seed {state.seed}) and the box θ reads")
    boxes = [(vl.box_lines(theta), box_name, vl.BOX_COLOURS["hand" if box_name == "hand θ" else "learned"])]
    pts, vals = vl.volume_points(volume)
    st.plotly_chart(vl.volume_figure(pts, vals, boxes), width="stretch", key=P + "fig3d")
    st.caption("Drag to turn the view. The box is where the transformer's 28×28×28 output cube reads the volume; "
               "its front face (toward the camera) is what the flattened picture shows.")
with right:
    raw_proj = vl.V.projection(volume)[0, 0]
    out_proj = shown.projection[0, 0] if shown is not None else vl.output_projection(volume, theta)[0, 0]
    c1, c2 = st.columns(2)
    c1.image(vl.image_png(raw_proj), caption="The camera's view: the whole volume flattened (60×60)", width="stretch")
    c2.image(vl.image_png(out_proj), caption=f"The transformer's output flattened (28×28), {box_name}", width="stretch")
    series = []
    if shown is not None:
        series.append((reg.VOLUME_LABELS["vol-st-cnn"] + (" (hand θ)" if box_name == "hand θ" else ""),
                       vl.probabilities(shown.logits)))
    if plain is not None:
        series.append((reg.VOLUME_LABELS["vol-cnn"], vl.probabilities(plain.logits)))
    if series:
        st.plotly_chart(viz.probability_figure(series, true_label=label if label >= 0 else None, height=320),
                        width="stretch", key=P + "probs")

if state.mode == "hand":
    st.caption("By hand: θ = [scale · R_z R_y R_x | t]. Press **θ that undoes the pose** for the exact inverse of "
               "the pose — the digit then faces the camera, as the learned θ should make it.")

# --------------------------------------------------------------------------- results

rows = [{"model": reg.VOLUME_LABELS[k], "test error (%)": e.meta.get("test_error"), "steps": e.meta.get("steps"),
         "final": e.final, "command": e.meta.get("command")} for k, e in entries.items() if e.meta]
if rows:
    st.subheader("Test error")
    st.dataframe(rows, hide_index=True, width="stretch")
    st.caption("On a fixed set of 2,000 MNIST test digits in seeded poses (`results/3d.md`). The paper "
               "reports no number for this experiment.")
