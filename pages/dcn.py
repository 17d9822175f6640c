"""STN vs deformable convolution (issue 7): one digit through an ST-CNN and a DCN trained on the same task.

URL path: ``/dcn``. Checkpoints ``mnist_{task}_dcn``, ``mnist_{task}_st-cnn-aff`` / ``-tps`` are read
from ``checkpoints/`` (or ``$STN_LAB_CHECKPOINTS``); a missing one gets its training command. All
maths lives in :mod:`pages.lab.dcn` (and :mod:`pages.lab.explorer` for the ST side).

Widget keys (for AppTest): ``dcn_dist`` (r | rts | p | e), ``dcn_st`` (aff | tps), ``dcn_src``
(test | draw), ``dcn_index``, ``dcn_rot`` … ``dcn_py`` (the playground's controls), ``dcn_row`` /
``dcn_col`` (output location of the DCN's last deformable layer), chart ``dcn_click`` (click a
location); buttons ``dcn_prev``, ``dcn_next``, ``dcn_reset``; drawing pad ``dcn_pad``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from components.draw_digit import draw_digit, read_drawing
from pages.lab import common
from pages.lab import dcn as L
from pages.lab import explorer as ex
from pages.lab import figures as viz
from pages.lab import links
from pages.lab import playground as pg
from pages.shell.navigation import require_app
from stn_core import registry as reg
from stn_core.analysis import deformable as dfm
from stn_core.analysis import stn_vs_dcn as svd
from stn_core.checkpoints import CheckpointError, checkpoint_paths

require_app()  # first: a run that bypassed app.py reruns through it


P = "dcn_"
ss = st.session_state
ST_KEYS = {"aff": "st-cnn-aff", "tps": "st-cnn-tps"}
SRC_LABELS = ("test", "draw")  # digit sources (common.DIGIT_SOURCES)
FIG_H = 300


def _k(name: str) -> str:
    return P + name


def _version(stem) -> tuple[int, int]:
    try:
        s = checkpoint_paths(stem)["weights"].stat()
        return (s.st_mtime_ns, s.st_size)
    except OSError:
        return (0, 0)


def _model(dist: str, key: str, msgs: list[pg.Message]):
    """(model, meta) of ``mnist_<dist>_<key>``, or None with an info/error message."""
    meta, why = svd.read_meta(dist, key)
    label = svd.COMPARE_LABELS[key]
    if meta is None:
        if why == "not trained yet":
            msgs.append(pg.Message("info", f"No {label} trained on {reg.DIST_SHORT[dist]} yet. Train it with "
                                           f"`{reg.train_command(dist, key)}`"))
        else:
            msgs.append(pg.Message("error", f"The {label} checkpoint cannot be used: {why}. Retrain it with "
                                            f"`{reg.train_command(dist, key)}`"))
        return None
    stem = svd.stem(dist, key)
    try:
        return common.load_checkpoint(str(stem), _version(stem))
    except CheckpointError as e:
        msgs.append(pg.Message("error", f"The {label} checkpoint cannot be loaded: {e}. Retrain it with "
                                        f"`{reg.train_command(dist, key)}`"))
        return None


# --------------------------------------------------------------------------- callbacks

def _on_drawn() -> None:
    ss[_k("drawing")] = read_drawing(_k("pad"))


def _verdict(name: str, probs: np.ndarray, label: int | None) -> str:
    pred = int(np.argmax(probs))
    mark = "" if label is None else (" ✓" if pred == label else " ✗")
    return f"{name}: **{pred}** ({100 * float(probs[pred]):.0f} %){mark}"


def _int_param(q: dict, name: str, lo: int, hi: int, default: int) -> int:
    v = links.parse_int(q.get(name, default))
    return default if v is None else min(max(lo, v), hi)


# --------------------------------------------------------------------------- page

def main() -> None:
    st.title("Spatial transformer vs deformable convolution")
    st.markdown("Both learn **where to sample** from the data. The ST-CNN predicts a few numbers per image (6 for "
                "an affine θ, 32 for a 16-point TPS) and warps the whole image once, before the classifier. The "
                "DCN predicts an offset for every kernel tap at every output position of its deformable "
                "convolutions, and the sampling is folded into the convolution: no warped image is ever made. "
                "One digit, both models, trained on the same task.")
    q = common.query_dict()
    if not ss.get(_k("init")):  # first run: restore the view from the link
        ss[_k("init")] = True
        if q.get("dist") in reg.TABLE1_DISTORTIONS:
            ss[_k("dist")] = q["dist"]
        if q.get("st") in ST_KEYS:
            ss[_k("st")] = q["st"]
        if q.get("src") in SRC_LABELS:
            ss[_k("src")] = q["src"]
        if "index" in q:
            ss[_k("index")] = _int_param(q, "index", 0, 10_000, 0)
        for name in ("row", "col"):
            if name in q:
                ss[_k(name)] = _int_param(q, name, 0, 1000, 0)
    ss.setdefault(_k("dist"), svd.default_distortion())
    ss.setdefault(_k("st"), "aff")
    ss.setdefault(_k("src"), "test")
    ss.setdefault(_k("index"), 0)
    for name, v in ex.controls_identity().items():
        ss.setdefault(_k(name), v)

    msgs: list[pg.Message] = []
    with st.sidebar:
        st.header("1 · Task and models")
        dist = st.radio("Distortion", reg.TABLE1_DISTORTIONS, key=_k("dist"), horizontal=True,
                        format_func=lambda d: reg.DIST_SHORT[d], help="The task both models were trained on.")
        st_short = st.radio("Spatial transformer", list(ST_KEYS), key=_k("st"), horizontal=True,
                            format_func=lambda s: {"aff": "ST-CNN Aff", "tps": "ST-CNN TPS"}[s])
    task = reg.DIST_TASK[dist]
    st_loaded = _model(dist, ST_KEYS[st_short], msgs)
    dcn_loaded = _model(dist, "dcn", msgs)
    td = common.test_digits(task)
    size = int(td.x.shape[-1])
    with st.sidebar:
        picked = common.digit_picker(P, td.x, td.y, reg.DIST_SHORT[dist], size, SRC_LABELS, msgs,
                                     "Draw a digit on the black pad below; the figures update when you release "
                                     "the mouse.")
        src, index, base, label, what = picked.src, picked.index, picked.base, picked.label, picked.what
        controls = common.distortion_controls(P)

    x, dmsgs = ex.distort(base, controls)
    msgs += dmsgs
    if controls != ex.controls_identity():
        what += ", distorted further by the sidebar controls"

    st.caption(td.caption + f". Input: {what}.")
    common.show_messages(msgs)
    if src == "draw":
        try:
            draw_digit(key=_k("pad"), on_drawn=_on_drawn, size=240)
        except Exception as e:  # the pad must never take the page down
            st.error(f"The drawing pad could not be shown ({type(e).__name__}: {e}).")

    left, right = st.columns(2, gap="large")
    # ---------------------------------------------------------------- STN side
    with left:
        st.subheader("Spatial transformer: one global warp")
        if st_loaded is None:
            st.info(f"Nothing to show until the {svd.COMPARE_LABELS[ST_KEYS[st_short]]} is trained (see above).")
        else:
            model, meta = st_loaded
            pred = svd.stn_view(model, x)
            a, b = st.columns(2)
            a.plotly_chart(viz.region_figure(x, pred.region, pred.grid if pred.kind == "tps" else None, pred.ctrl,
                                             title="sampled region", height=FIG_H),
                           config=common.plot_config(f"stn-region-{dist}"), key=_k("fig_region"))
            b.plotly_chart(viz.image_panel(pred.output, "canonical output V", height=FIG_H),
                           config=common.plot_config(f"stn-output-{dist}"), key=_k("fig_out"))
            st.markdown(_verdict(svd.COMPARE_LABELS[ST_KEYS[st_short]], pred.probs, label))
            rows = svd.theta_rows(pred)
            cap = ("θ (2×3, maps output → input coordinates, normalised)" if pred.kind == "affine" else
                   f"the {len(rows)} TPS control points in the input (x, y), normalised")
            with st.expander(cap, expanded=pred.kind == "affine"):
                st.dataframe(rows, hide_index=True)
            st.caption("Red: the border of the region the transformer samples (the output square mapped into the "
                       "input); " + ("cyan: its warped sampling grid; yellow dots: the TPS control points. "
                                     if pred.kind == "tps" else "yellow: the output's top-left corner. ") +
                       "The classifier only ever sees V.")

    # ---------------------------------------------------------------- DCN side
    with right:
        st.subheader("Deformable convolution: offsets everywhere")
        if dcn_loaded is None:
            st.info("Nothing to show until the DCN is trained (see above).")
        else:
            model, meta = dcn_loaded
            view = dfm.dcn_view(model, x)
            names = dfm.layer_names(view)
            ho, wo = view.stages[view.deform_stages[-1]].out_hw
            clicked = L.clicked_location(ss.get(_k("click")) or {}, view)
            if clicked is not None and clicked != ss.get(_k("last_click")):
                ss[_k("last_click")] = clicked
                ss[_k("row")], ss[_k("col")] = clicked
            for name, hi in (("row", ho - 1), ("col", wo - 1)):
                ss.setdefault(_k(name), hi // 2)
                if int(ss[_k(name)]) > hi:
                    ss[_k(name)] = hi
            r1, r2 = st.columns(2)
            row = int(r1.slider(f"Output row of {names[-1]}", 0, ho - 1, key=_k("row")))
            col = int(r2.slider(f"Output column of {names[-1]}", 0, wo - 1, key=_k("col")))
            fig = L.sampling_figure(x, view, (row, col), f"taps for {names[-1]} output ({row}, {col})",
                                    height=FIG_H + 140)
            st.plotly_chart(fig, config=common.plot_config(f"dcn-taps-{dist}"), key=_k("click"), on_select="rerun",
                            selection_mode="points")
            st.markdown(_verdict("DCN", view.probs, label))
            st.caption(f"Click a white square (an output location of {names[-1]}) or use the sliders. Filled dots: "
                       f"where each layer's taps read, p0 + p_k + Δp_k; hollow grey: the regular k×k grid p0 + p_k "
                       f"of a plain convolution; thin lines join them. {names[-1]}'s taps live in the pooled map; "
                       f"they are drawn at the centres of their pool windows. {names[0]}'s 81 taps are those at the "
                       "position that the centre tap of the next layer reads.")
    if dcn_loaded is not None:
        c1, c2 = st.columns([1.2, 1])
        c1.plotly_chart(L.receptive_figure(x, view, (row, col), f"stacked: the receptive field of output ({row}, {col})",
                                           height=FIG_H + 140),
                        config=common.plot_config(f"dcn-receptive-{dist}"), key=_k("fig_field"))
        with c2:
            for n, name in enumerate(names):
                st.plotly_chart(L.offset_figure(view, n, f"{name}: mean |Δp| per output position", height=FIG_H),
                                config=common.plot_config(f"dcn-offsets-{n + 1}-{dist}"), key=_k(f"fig_off{n}"))
        st.caption("Left: every tap of the last layer traced back through the pool (to its window centre) and the "
                   "first deformable layer (offsets read bilinearly at that position), in orange; grey: the same "
                   "construction with all offsets zero, the plain CNN's receptive field. Right: how far the taps "
                   "move, averaged over the k·k taps, in pixels of each layer's input.")

    # ---------------------------------------------------------------- comparison
    st.subheader(f"Side by side on {reg.DIST_LABELS[dist]}")
    results = svd.load_results()
    # a static table (wraps its text) rather than a scrolling grid, so every column shows on a projector
    st.table(pd.DataFrame(svd.comparison_rows(dist, results)).set_index("model"))
    cmd = (results or {}).get("command", "python scripts/make_stn_vs_dcn.py")
    gpu = ((results or {}).get("timing_sources") or {}).get("cuda") or {}
    gpu_name = (gpu.get("device_names") or {}).get("cuda")
    st.caption(f"Numbers per image: computed from the models (pages.lab.dcn.predicted_numbers); test errors: the "
               f"checkpoint JSONs; cost: forward+backward time per batch of 256 relative to the plain CNN, on the "
               f"CPU of the machine that ran `{cmd}`" + (f" and on an {gpu_name} (timings measured there by "
               f"`{gpu.get('command')}`)" if gpu_name else "") + " (results/stn-vs-dcn.md"
               + ("" if results else ", not run yet") + ").")

    params = {"dist": dist, "st": st_short, "src": src, "index": str(index)}
    if dcn_loaded is not None:
        params.update(row=str(row), col=str(col))
    common.sync_query_params(params)
    common.copy_link(st.sidebar, params)


main()
