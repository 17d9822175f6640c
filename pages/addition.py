"""MNIST addition (paper appendix): two RTS-distorted digits in two channels, their sum predicted.

URL path: ``/addition``; query parameters ``a``, ``b`` (shipped test-digit indices), ``seed``
(distortion seed), ``model`` (fcn | cnn | st-fcn | 2st-fcn) and ``src_a`` / ``src_b`` ("draw": that
digit is drawn on a pad instead; the drawing itself is not in the link). Checkpoints are read from
``checkpoints/`` (or ``$STN_LAB_CHECKPOINTS``): ``mnist_addition_<model>.safetensors`` + ``.json``.
Logic in :mod:`pages.lab.addition`.

Widget keys (for AppTest): ``add_a``, ``add_b``, ``add_seed``, ``add_model``, ``add_src_a``,
``add_src_b``; button ``add_random``; drawing pads ``add_pad_a``, ``add_pad_b``.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import streamlit as st

from components.draw_digit import draw_digit, read_drawing
from pages.lab import addition as ad
from pages.lab import common
from pages.lab import explorer as ex
from pages.lab import figures as viz
from pages.shell.navigation import require_app
from stn_core import registry as reg
from stn_core.analysis import addition as an_add
from stn_core.checkpoints import CheckpointError

require_app()  # first: a run that bypassed app.py reruns through it


P = "add_"
ss = st.session_state


def _on_drawn(which: str) -> None:
    ss[P + "drawing_" + which] = read_drawing(P + "pad_" + which)


def _random_pair() -> None:
    n = len(common.catalog().digit_labels)
    r = ad.random_state(np.random.default_rng(), n, ss[P + "model"])
    ss[P + "a"], ss[P + "b"], ss[P + "seed"] = r.a, r.b, r.seed


# --------------------------------------------------------------------------- state

cat = common.catalog()
n_digits = len(cat.digit_labels)
if P + "init" not in ss:
    state0, warns = ad.parse_state(common.query_dict(), n_digits)
    ss[P + "a"], ss[P + "b"], ss[P + "seed"], ss[P + "model"] = state0.a, state0.b, state0.seed, state0.model
    ss[P + "src_a"], ss[P + "src_b"] = state0.src_a, state0.src_b
    ss[P + "warns"] = warns
    ss[P + "init"] = True

st.title("MNIST addition: two digits, two transformers")
st.markdown(
    "Each of the two 42×42 channels holds a digit that was independently rotated (±45°), scaled (0.7–1.2) "
    "and moved. The network must output their **sum** (19 classes). In the **2×ST-FCN** two spatial "
    "transformers work side by side; each sees both channels and warps both, and their outputs go on to "
    "one fully-connected classifier. Nobody tells a transformer which digit is its job — in the paper "
    "each learns to take one.")
for w in ss.get(P + "warns", []):
    st.warning(w)
if cat.note:
    st.info(cat.note)

sb = st.sidebar
sb.subheader("The pair")
for which, n in (("a", 1), ("b", 2)):
    src = sb.radio(f"Digit {n}", list(ad.DIGIT_SOURCES), format_func=ad.DIGIT_SOURCES.get, horizontal=True,
                   key=P + "src_" + which)
    if src == "test":
        sb.number_input(f"Digit {n}: shipped test digit (0–{n_digits - 1})", 0, n_digits - 1, step=1,
                        key=P + which)
sb.number_input("Distortion seed", 0, ad.MAX_SEED, step=1, key=P + "seed",
                help="Draws each digit's rotation, scale and position (independently per channel).")
sb.button("Random pair", key=P + "random", on_click=_random_pair, icon=":material/casino:")
sb.radio("Model", list(reg.ADDITION_KEYS), format_func=reg.ADDITION_LABELS.get, key=P + "model")
state = ad.PageState(int(ss[P + "a"]), int(ss[P + "b"]), int(ss[P + "seed"]), ss[P + "model"], ss[P + "src_a"],
                     ss[P + "src_b"])
common.sync_query_params(state.query())
common.copy_link(sb, state.query())

# --------------------------------------------------------------------------- data and models

def _digit(which: str, index: int, src: str) -> tuple[np.ndarray, int | None]:
    """Digit ``which`` ("a" | "b") as a 28×28 float image and its label (None when drawn)."""
    if src == "draw":
        drawing = ss.get(P + "drawing_" + which)
        if drawing is None or float(np.max(drawing)) <= 0.0:
            return np.zeros((28, 28), np.float32), None
        return ex.prepare_digit(drawing)[0], None
    label = cat.digit_labels[index]
    return common.sample_image("mnist", index)[..., 0].astype(np.float32), (label if label >= 0 else None)


(d1, l1), (d2, l2) = _digit("a", state.a, state.src_a), _digit("b", state.b, state.src_b)
x = ad.make_pair(d1, d2, state.seed)
true_sum = l1 + l2 if l1 is not None and l2 is not None else None

entries = reg.find_addition(reg.checkpoint_dir())
views: dict[str, an_add.PairView] = {}
for key, e in entries.items():
    if e.meta is None:
        continue
    try:
        model, _ = common.load_checkpoint(str(e.stem), e.version)
        views[key] = an_add.view_pair(model, x)
    except CheckpointError as err:
        e.meta, e.error = None, str(err)

# --------------------------------------------------------------------------- main view

label = reg.ADDITION_LABELS[state.model]
view = views.get(state.model)
entry = entries.get(state.model)
if not entries:
    st.info("No MNIST-addition checkpoints yet. Train all four models (about an hour on one CPU thread) with\n\n"
            "`python scripts/train_addition.py --threads 1`")
elif view is None:
    why = "is not trained yet" if entry is None else f"could not be loaded ({entry.error})"
    st.info(f"The {label} {why}. Train it with `{reg.addition_train_command(state.model)}`")

drawn = [(which, n) for which, n in (("a", 1), ("b", 2)) if getattr(state, "src_" + which) == "draw"]
if drawn:
    pads = st.columns(2, gap="large")
    for (which, n), col in zip(drawn, pads):
        with col:
            st.markdown(f"**Draw digit {n}** (light ink on black; it is centred like an MNIST digit, then "
                        "rotated, scaled and moved by the distortion seed)")
            try:
                draw_digit(key=P + "pad_" + which, on_drawn=partial(_on_drawn, which), size=240)
            except Exception as e:  # the pad must never take the page down
                st.error(f"The drawing pad could not be shown ({type(e).__name__}: {e}). Pick a test digit instead.")
            if (d1 if which == "a" else d2).max() <= 0:
                st.info(f"Digit {n} is empty until you draw it.")

left, right = st.columns([3, 2], gap="large")
with left:
    theta = None if view is None else view.theta
    fig = ad.pair_figure(x[0].numpy(), theta,
                         title=f"Input pair: {'drawn' if l1 is None else l1} + {'drawn' if l2 is None else l2}"
                         + ("" if theta is None else f" — {label}'s boxes"))
    st.plotly_chart(fig, config=common.plot_config("addition-input"), key=P + "pair_fig")
    common.png_download(lambda x=x: viz.png_bytes(ad.pair_image(x[0].numpy()), 8), "addition-pair.png",
                        label="Download the pair (PNG)", key=P + "png_pair")
with right:
    if view is not None:
        verdict = "" if true_sum is None else (" ✓ correct" if view.pred == true_sum else f" ✗ (true sum {true_sum})")
        st.metric(f"{label} predicts", f"{view.pred}", help="the class with the highest probability")
        st.markdown(f"**Predicted sum {view.pred}** with probability {100 * view.confidence:.0f} %{verdict}")
    elif true_sum is not None:
        st.metric("True sum", f"{true_sum}")
    if entries:
        st.caption("Test error on the 10,000 fixed test pairs (ours, from the checkpoint JSONs, vs the paper):")
        for key in reg.ADDITION_KEYS:
            e = entries.get(key)
            err = None if e is None or e.meta is None else e.meta.get("test_error")
            seen = None if e is None else reg.training_samples(e.meta)
            ours = ("not trained" if err is None else f"{err:.1f} %" + ("" if e.final else " (training)")
                    + ("" if seen is None else f" after {an_add.samples_text(seen)} samples"))
            st.markdown(f"- {reg.ADDITION_LABELS[key]}: {ours} · paper {reg.addition_paper_error(key)} % "
                        f"after {an_add.PAPER_SAMPLES / 1e6:.1f} M")
if view is not None:
    st.plotly_chart(viz.probability_figure([(label, view.probs)], [str(i) for i in range(19)], true_sum,
                                           title="Probability of each sum", height=300),
                    config=common.plot_config("addition-probabilities"), key=P + "prob_fig")


def _px(d: float) -> str:
    return f"{d:.1f} px" if np.isfinite(d) else "— (no ink)"


if view is not None and view.outputs is not None:
    k = view.outputs.shape[0]
    focus = [an_add.box_focus(view.distances[i], float(view.ink[i])) for i in range(k)]
    if k >= 2:
        split = len(set(focus)) == len(focus) and all(f.startswith("digit") for f in focus)
        px = an_add.to_pixels(view.distances)
        st.markdown("On this pair: " + ", ".join(
            f"<span style='color:{ad.TRANSFORMER_COLOURS[i % 2]}'>**transformer {i + 1}**</span> "
            + ("samples outside both digits" if f == "no digit" else
               "is centred on both digits (they overlap here)" if f == "both digits" else
               "is centred on neither digit" if f == "neither digit" else f"is centred on {f}")
            + ("" if f == "no digit" else f" (its box centre is {_px(px[i][0])} from digit 1's centre and "
                                          f"{_px(px[i][1])} from digit 2's)")
            for i, f in enumerate(focus))
            + " — " + ("each transformer has taken a different digit." if split else "they have not split the pair here.")
            + f" (A box is centred on a digit when its centre lies within {an_add.to_pixels(an_add.TRACK_RADIUS):.1f} px of "
              "that digit's ink centre: ✕ marks each digit's centre, ● each box's.)", unsafe_allow_html=True)
    st.plotly_chart(ad.outputs_figure(view.outputs, focus), config=common.plot_config("addition-outputs"),
                    key=P + "out_fig")
    st.caption("Each transformer warps both channels with its one θ; \"its digit\" marks the channel whose digit "
               "its box is centred on (there the digit comes out upright and centred). A digit-sized box also "
               "shows whatever part of the other channel's digit lies under it. Whole-test-set numbers (where each "
               "box is centred, how often the two transformers are on different digits): results/mnist-addition.md "
               "(`python scripts/make_addition_results.py`).")
elif view is not None:
    st.caption(f"The {label} has no spatial transformer: it must find both digits with its own layers.")

st.subheader("The same pair through the other models")
rows = ad.comparison_rows(views, entries, true_sum)
st.dataframe(rows, hide_index=True, key=P + "table")
missing = [k for k in reg.ADDITION_KEYS if k not in views]
if missing and entries:
    st.info("Not available yet: " + "; ".join(f"{reg.ADDITION_LABELS[k]} — `{reg.addition_train_command(k)}`" for k in missing))
st.caption("Test errors come from each checkpoint's JSON (its command is recorded there and in "
           "results/mnist-addition.md); paper numbers are the paper's appendix. Our schedules are much "
           "shorter than the paper's 150k steps.")
