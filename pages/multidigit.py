"""Digit strings (the paper's Table 2, on MNIST strings): spatial transformers inside the conv stack.

URL path: ``/multidigit``; query parameters ``crop`` (tight | loose), ``seed`` (the string) and ``model``
(the reader whose transformers are drawn). Checkpoints: ``checkpoints/seq64_*`` and ``seq128_*``
(:func:`stn_core.registry.find_sequences`). Logic in :mod:`pages.lab.multidigit`.

Widget keys (for AppTest): ``md_crop``, ``md_seed``, ``md_model``; button ``md_random``.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from pages.lab import common
from pages.lab import multidigit as md
from pages.shell.navigation import require_app
from stn_core import registry as reg
from stn_core.checkpoints.seeds import seed_stats
from stn_core.data import sequences as Q
from stn_core.data.samples import load_mnist_sample

require_app()  # first: a run that bypassed app.py reruns through it

P = "md_"
ss = st.session_state


def _random_string() -> None:
    ss[P + "seed"] = int(np.random.default_rng().integers(0, md.MAX_SEED))


if P + "init" not in ss:
    state0, warns = md.parse_state(common.query_dict())
    ss[P + "crop"], ss[P + "seed"], ss[P + "model"] = state0.crop, state0.seed, state0.model
    ss[P + "warns"] = warns
    ss[P + "init"] = True

st.title("Digit strings: transformers inside the network")
st.markdown(
    "In the paper's house-number experiment (its Table 2, on SVHN) a transformer does not only warp the input: "
    "**ST-CNN Multi** puts one before each of the first four convolutional layers, so three of them warp "
    "*feature maps*, each with a tiny localisation net (two fully connected layers of 32 units). The network "
    "reads a whole string at once: a length head and five digit heads. SVHN's images are not available "
    "offline, so STN Lab trains the same three readers on **strings of MNIST digits** (1–5 digits, varied "
    "size, spacing and slant) — a synthetic analogue, not SVHN. Below: a string, where each transformer "
    "looks, and the product of the four maps drawn on the input (the paper's Table 2, right).")
for w in ss.get(P + "warns", []):
    st.warning(w)

sb = st.sidebar
sb.subheader("The string")
sb.radio("Crop", list(md.CROPS), format_func=md.CROPS.get, key=P + "crop",
         help="The paper's two settings: tight 64×64 crops and looser 128×128 ones.")
sb.number_input("String seed", 0, md.MAX_SEED, step=1, key=P + "seed", help="Draws the digits and their layout.")
sb.button("Random string", key=P + "random", on_click=_random_string, icon=":material/casino:")
sb.subheader("Transformers of")
sb.radio("Model", list(reg.SEQUENCE_KEYS), format_func=reg.SEQUENCE_LABELS.get, key=P + "model",
         label_visibility="collapsed")
state = md.PageState(ss[P + "crop"], int(ss[P + "seed"]), ss[P + "model"])
common.sync_query_params(state.query())
common.copy_link(sb, state.query())

# --------------------------------------------------------------------------- data and models

try:
    images, labels = load_mnist_sample()
except (OSError, ValueError) as e:
    st.error(f"The shipped MNIST sample cannot be read ({e}); the page needs it to make strings.")
    st.stop()
s = md.make_string(images, labels, state.crop, state.seed)
truth = Q.sequence_text(s.digits[0])
entries = reg.find_sequences(state.crop, reg.checkpoint_dir())
models = common.load_keyed_models(entries, reg.SEQUENCE_LABELS)
if not models:
    st.info(f"No trained reader for {md.CROPS[state.crop]} crops yet: the page shows the string only. Train them with\n\n"
            + "\n\n".join(f"`{reg.sequence_train_command(k, state.crop)}`" for k in reg.SEQUENCE_KEYS))
with torch.no_grad():
    views = {k: m.views(s.images) for k, m in models.items()}
chosen = views.get(state.model)

# --------------------------------------------------------------------------- main view

left, right = st.columns([3, 2])
with left:
    quads = []
    if chosen is not None and chosen.thetas:
        quads.append((md.theta_quad(chosen.thetas[0][0]), md.ST_COLOURS[0], 2))
        if len(chosen.thetas) > 1:
            quads.append((md.product_quad(chosen), md.PRODUCT_COLOUR, 4))
    img = s.images[0, 0].numpy()
    st.image(md.picture(img, quads, scale=max(2, 384 // img.shape[-1])), width="stretch",
             caption=f"The string {truth} ({md.CROPS[state.crop]}). "
                     + ("Blue: where the first transformer reads the image; orange: the product of all four "
                        "affine maps, where the last transformer's output lies in the input." if len(quads) > 1
                        else "Blue: where the transformer reads the image." if quads
                        else f"{reg.SEQUENCE_LABELS[state.model]} has no transformer." if chosen is not None else ""))
with right:
    rows = []
    for key in reg.SEQUENCE_KEYS:
        if key in views:
            text, p = md.reading(views[key])
            rows.append({"model": reg.SEQUENCE_LABELS[key], "reads": text, "probability": round(p, 3),
                         "right": "✓" if text == truth else "✗"})
    if rows:
        st.markdown(f"**What each reader reads** (truth: `{truth}`)")
        st.dataframe(rows, hide_index=True, width="stretch")
        st.caption("Probability: the length head's times each digit head's, for the string read. A string "
                   "counts only when its length and every digit are right (the paper's sequence error).")

# --------------------------------------------------------------------------- the transformers on their maps

if chosen is not None and chosen.thetas:
    st.subheader(f"The {len(chosen.thetas)} transformer{'s' if len(chosen.thetas) > 1 else ''} of "
                 f"{reg.SEQUENCE_LABELS[state.model]} on {'their inputs' if len(chosen.thetas) > 1 else 'its input'}")
    cols = st.columns(4)  # a quarter of the width each, also for ST-CNN Single's one transformer
    for i, col in enumerate(cols[:len(chosen.thetas)]):
        th = chosen.thetas[i][0]
        u, v = chosen.st_inputs[i][0], chosen.st_outputs[i][0]
        what = "the image" if i == 0 else f"conv {i}'s feature maps ({u.shape[0]}×{u.shape[1]}×{u.shape[2]})"
        col.markdown(f"**Transformer {i + 1}** on {what}")
        col.image(md.feature_picture(u, md.theta_quad(th), md.ST_COLOURS[i]), width="stretch", caption="its input, the box it reads")
        col.image(md.feature_picture(v), width="stretch", caption="its output")
        col.caption("θ = " + "; ".join(" ".join(f"{float(x):+.2f}" for x in row) for row in th))
    st.caption("Feature maps are drawn as their mean over channels (scaled to the map's own range). Each θ maps its "
               "output grid to its input in normalised coordinates; convolutions and 2×2 pooling keep those "
               "coordinates, so the product θ₁θ₂θ₃θ₄ is drawn on the image above.")

# --------------------------------------------------------------------------- results

table = []
for key in reg.SEQUENCE_KEYS:
    e = entries.get(key)
    meta = e.meta if e is not None and e.meta else {}
    stats = seed_stats(meta)
    table.append({"model": reg.SEQUENCE_LABELS[key], "sequence error (%), ours": meta.get("test_error"),
                  "seeds: mean ± std (%)": f"{stats[0]:.2f} ± {stats[1]:.2f} ({stats[2]})" if stats else "1 seed",
                  "paper, SVHN (%)": reg.SEQUENCE_PAPER[state.crop][key],
                  "steps": meta.get("steps"), "lr": (meta.get("train_args") or {}).get("lr"),
                  "final": e.final if e is not None else None})
st.subheader("Sequence error")
st.dataframe(table, hide_index=True, width="stretch")
st.caption(f"Ours: {Q.TEST_SIZE:,} strings of MNIST test digits drawn with a fixed seed ({md.CROPS[state.crop]}), "
           "readers scaled to a CPU; the shipped weights are seed 0's, other seeds' errors beside them; each reader's "
           "learning rate is its best of the ones tried — `results/multidigit.md` has them all, the commands "
           "and the cost of the transformers. "
           "The paper's column is its SVHN result, a different dataset and a much larger network.")
