"""Trained model explorer: the distorted-MNIST models of Table 1 on single digits (paper Figure 1).

URL path: ``/explorer``. Checkpoints are read from ``checkpoints/`` (or ``$STN_LAB_CHECKPOINTS``)
by their names, ``mnist_{r,rts,p,e}_{fcn,cnn,st-fcn-aff,…,st-cnn-tps}`` (.safetensors + .json);
see :mod:`pages.lab.explorer`. Every number shown comes from a checkpoint's JSON or is computed live.

Widget keys (for AppTest): ``ex_dist`` (distortion), ``ex_model`` (model key), ``ex_src`` (test |
draw | upload), ``ex_index`` (test digit), ``ex_upload``, ``ex_rot`` … ``ex_py`` (the playground's
controls), ``ex_gal_start`` (gallery), ``ex_scan`` (how many test digits to search for mistakes),
``ex_open`` (open a mistake); buttons ``ex_prev``, ``ex_next``, ``ex_reset``, ``ex_gal_prev``,
``ex_gal_next``, ``ex_open_btn``. The drawing pad (custom component) has key ``ex_pad``.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from components.draw_digit import draw_digit, read_drawing
from pages.lab import cached, common
from pages.lab import explorer as ex
from pages.lab import export as E
from pages.lab import export_ui
from pages.lab import figures as viz
from pages.lab import links
from pages.lab import playground as pg
from pages.shell.navigation import require_app
from stn_core import registry as reg
from stn_core.analysis import inspect as insp
from stn_core.checkpoints import CheckpointError

require_app()  # first: a run that bypassed app.py reruns through it


P = "ex_"
ss = st.session_state
SRC_LABELS = ("test", "draw", "upload")  # digit sources (common.DIGIT_SOURCES)
SCAN_CHOICES = (500, 1000, 2000, 10_000)
GALLERY_N = 10
MISTAKES_N = 10


def _k(name: str) -> str:
    return P + name


# --------------------------------------------------------------------------- pictures

def _picture_downloads(svg: str, png: Callable[[], bytes], name: str) -> None:
    """"Download PNG" and "Download SVG" buttons side by side for a gallery picture."""
    downloads = st.container(horizontal=True)
    common.png_download(png, f"{name}.png", where=downloads, key=_k(f"{name}_png"))
    downloads.download_button("Download SVG", data=svg.encode("utf-8"), file_name=f"{name}.svg",
                              mime="image/svg+xml", icon=":material/download:", key=_k(f"{name}_svg"))


# --------------------------------------------------------------------------- callbacks


def _shift_gallery(delta: int, n: int) -> None:
    ss[_k("gal_start")] = int(min(max(0, int(ss.get(_k("gal_start"), 0)) + delta), max(0, n - GALLERY_N)))


def _on_drawn() -> None:
    ss[_k("drawing")] = read_drawing(_k("pad"))


def _open_mistake() -> None:
    pick = ss.get(_k("open"))
    if pick is not None:
        ss[_k("src")] = "test"
        ss[_k("index")] = int(pick)


# --------------------------------------------------------------------------- helpers

def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f} %"


def _model_option(entry: reg.Entry) -> str:
    if not entry.usable:
        return f"{entry.label} (unreadable checkpoint)"
    err, note = reg.training_status(entry.meta)
    if err is None:
        return f"{entry.label}: training"
    return f"{entry.label}: {err:.2f} %" + (" (training)" if note else "")


def _summary(entry: reg.Entry, meta: dict) -> str:
    """One line about the checkpoint, from its JSON only."""
    parts = [f"**{entry.label}** on {reg.DIST_LABELS[entry.dist]}"]
    if isinstance(meta.get("params"), int):
        parts.append(f"{meta['params']:,} weights")
    err, note = reg.training_status(meta)
    ts = (meta.get("test_set") or {}).get("size")
    on = f" on {ts:,} fixed test digits" if isinstance(ts, int) else ""
    if err is not None:
        parts.append(f"test error **{err:.2f} %**{on}" + (f" ({note})" if note else ""))
    else:
        parts.append(note)
    paper = reg.paper_error(entry.dist, entry.key)
    if paper is not None:
        parts.append(f"paper: {paper:g} %")
    args = meta.get("train_args") or {}
    if isinstance(meta.get("steps"), int) and isinstance(args.get("batch"), int):
        parts.append(f"{meta['steps']:,} steps × batch {args['batch']}")
    return " · ".join(parts)


def _verdict(name: str, p: insp.Prediction, label: int | None) -> str:
    mark = "" if label is None else (" :green[✓]" if p.pred == label else " :red[✗]")
    return f"{name}: **{p.pred}** ({100 * p.confidence:.0f} %){mark}"


def _no_checkpoints(folder) -> None:
    st.info(f"No trained checkpoints in `{folder}` yet. Train one with the paper's schedule, e.g.\n\n"
            f"`{reg.train_command('rts', 'st-cnn-aff')}`\n\n"
            "(add `--steps 20000` for a shorter run; the file names must follow "
            "`mnist_{r,rts,p,e}_{fcn,cnn,st-fcn-aff,…,st-cnn-tps}`), then reload this page.")


def _table1(key: tuple[str, str]) -> None:
    """Table 1 of the checkpoints discovered under ``key`` (:func:`pages.lab.common.discovery_key`)."""
    st.header("Table 1: ours beside the paper's")
    table, details, schedule, goals, long_md = cached.table1_texts(*key)
    st.caption("Test error (%) on the fixed seeded test set of each distortion. \"ours\" comes from the "
               "checkpoints' JSON files (bold: training finished; \"(step a/b)\": still training, the error of "
               "its last evaluation), \"paper\" from Jaderberg et al. (2015), mean of 3 runs. "
               "`python scripts/make_table1.py` writes the same table to results/table1.md.")
    st.markdown(table)
    with st.expander("Checkpoints, the commands that made them, and how our schedule differs from the paper's"):
        st.markdown(details)
        st.markdown(schedule)
    if goals is None:
        return
    with st.expander("How close to the paper: the goals, checked from these numbers"
                     + (", and a longer schedule" if long_md else "")):
        st.markdown(goals)
        if long_md:
            st.markdown("**Longer schedule** (`checkpoints/long/`): the same models with only `--steps` raised.")
            st.markdown(long_md)


# --------------------------------------------------------------------------- page

def main() -> None:
    st.title("Trained model explorer")
    st.markdown("The distorted-MNIST classifiers of the paper's Table 1, trained here. Pick a model, give it a "
                "digit (a test digit, your drawing or an upload), distort it further, and see the paper's "
                "**Figure 1** live: (a) the input, (b) the region the spatial transformer samples, (c) what it "
                "hands the classifier, (d) the prediction.")
    folder = reg.checkpoint_dir()
    # Table 1 models, their longer-schedule runs, then live-page runs
    listing = common.discovery_key(folder)  # one listing of the folders per rerun
    found = common.discover_checkpoints(key=listing)
    if not found:
        _no_checkpoints(folder)
        _table1(listing)
        return

    # ---------------------------------------------------------------- sidebar: model
    _link = common.query_dict()
    if _link and _link != ss.get(_k("last_query")):  # arrival through a shared link: dist, model, digit
        ss[_k("last_query")] = _link
        if _link.get("dist") in reg.DISTORTIONS:
            ss[_k("dist")] = _link["dist"]
        if "model" in _link:
            ss[_k("model")] = _link["model"]  # checked against the options below
        digit = links.parse_int(_link.get("digit"), 0)
        if digit is not None:
            ss[_k("src")], ss[_k("index")] = "test", digit
    first = ex.default_choice(found) or next(iter(found))
    ss.setdefault(_k("dist"), first[0])
    counts = {d: sum(1 for (dd, _) in found if dd == d) for d in reg.DISTORTIONS}
    with st.sidebar:
        st.header("1 · Model")
        dist = st.radio("Distortion", reg.DISTORTIONS, key=_k("dist"), horizontal=True,
                        format_func=lambda d: f"{reg.DIST_SHORT[d]} ({counts[d]})",
                        help="R: rotation ±90°; RTS: rotation ±45°, scale 0.7–1.2, anywhere in 42×42; P: projective; "
                             "E: elastic (16-point TPS). In brackets: how many models are trained.")
        options = ex.model_options(found, dist)
        if not options:
            st.info(f"No checkpoint for {reg.DIST_LABELS[dist]} yet.")
    if not options:
        st.info(f"No model has been trained on {reg.DIST_LABELS[dist]} yet. Train one with\n\n"
                f"`{reg.train_command(dist, 'st-cnn-aff')}`\n\nor pick another distortion in the sidebar.")
        _table1(listing)
        return
    if ss.get(_k("model")) not in options:
        ss[_k("model")] = next((k for k in reg.PREFERRED if k in options), options[0])
    with st.sidebar:
        key = st.selectbox("Model", options, key=_k("model"), format_func=lambda k: _model_option(found[(dist, k)]),
                           help="With its test error from the checkpoint's JSON file.")
    entry = found[(dist, key)]
    task = entry.task

    # ---------------------------------------------------------------- load
    if not entry.usable:
        st.error(f"This checkpoint cannot be used: {entry.error} Retrain it with\n\n"
                 f"`{reg.train_command(dist, key)}`")
        _table1(listing)
        return
    try:
        model, meta = common.load_checkpoint(str(entry.stem), entry.version)
    except CheckpointError as e:
        st.error(f"This checkpoint cannot be loaded: {e}. Retrain it with\n\n`{reg.train_command(dist, key)}`")
        _table1(listing)
        return
    size = int(meta["input_size"])
    td = common.test_digits(task)
    n_test = int(td.x.shape[0])

    # ---------------------------------------------------------------- sidebar: digit + controls
    for name, v in ex.controls_identity().items():
        ss.setdefault(_k(name), v)
    msgs: list[pg.Message] = []
    with st.sidebar:
        picked = common.digit_picker(P, td.x, td.y, reg.DIST_SHORT[dist], size, SRC_LABELS, msgs,
                                     "Draw a digit on the black pad below with the mouse (or a finger); the "
                                     "figures update when you release it.")
        src, index, base, label, what = picked.src, picked.index, picked.base, picked.label, picked.what

        controls = common.distortion_controls(P, primary=True)

    x, dmsgs = ex.distort(base, controls)
    msgs += dmsgs
    if controls != ex.controls_identity():
        what += ", distorted further by the sidebar controls"

    # ---------------------------------------------------------------- inference
    pred = insp.predict(model, x)[0]
    contrast = None
    # the plain CNN of the same schedule when there is one (a longer-schedule model against the longer CNN)
    cnn_key = reg.LONG_PREFIX + "cnn" if reg.is_long(key) and (dist, reg.LONG_PREFIX + "cnn") in found else "cnn"
    cnn = found.get((dist, cnn_key))
    if reg.base_key(key) != "cnn" and cnn is not None and cnn.usable:
        try:
            contrast = insp.predict(common.load_checkpoint(str(cnn.stem), cnn.version)[0], x)[0]
        except CheckpointError as e:
            msgs.append(pg.Message("warning", f"The plain CNN for contrast could not be loaded: {e}"))

    # ---------------------------------------------------------------- main: Figure 1
    st.markdown(_summary(entry, meta))
    st.caption(td.caption + ".")
    common.show_messages(msgs)
    if src == "draw":
        pad, note = st.columns([1, 2], gap="large")
        with pad:
            try:
                draw_digit(key=_k("pad"), on_drawn=_on_drawn, size=280)
            except Exception as e:  # the pad must never take the page down
                st.error(f"The drawing pad could not be shown ({type(e).__name__}: {e}). Upload a picture instead.")
        with note:
            st.markdown("Draw a digit on the black pad (light ink on black, like MNIST). When you release the "
                        "mouse it is averaged down to 28×28, its ink box scaled to 20 pixels and centred by its "
                        "centre of mass (how MNIST was made)" + (f", then put in the middle of the {size}×{size} "
                                                                 "canvas" if size != 28 else "") + ".")

    st.subheader("Figure 1 for this digit")
    series = [(entry.label, pred.probs)] + ([(cnn.label, contrast.probs)] if contrast is not None else [])
    fig_args = dict(image=x, series=series, classes=meta.get("classes"), true_label=label,
                    titles=(f"(a) input {size}×{size}", "(b) sampled region", "(c) transformer output", "(d) prediction")
                    if pred.output is not None else (f"(a) input {size}×{size}", "(d) prediction"),
                    region=pred.region, output=pred.output, grid=pred.grid if pred.kind == "tps" else None,
                    ctrl=pred.ctrl)
    # one SVG picture, not four plotly charts: a new browser tab then loads no plotly.js for this page
    # (results/bench-startup.md); no hover values, the top class's probability is printed on its bar
    fig1 = viz.figure1_digit_scene(**fig_args)
    fig1_svg = viz.scene_svg(fig1)
    st.html(viz.svg_img_tag(fig1_svg, alt=f"Figure 1 for this digit: {', '.join(fig_args['titles'])}",
                            max_width=round(fig1.width)))
    _picture_downloads(fig1_svg, lambda s=fig1: viz.scene_png(s), "figure1-digit")
    if pred.output is None:
        st.info(f"(b), (c): the {entry.label} has no spatial transformer; its classifier sees the input as it is.")
    verdicts = [_verdict(entry.label, pred, label)]
    if contrast is not None:
        verdicts.append(_verdict("the plain CNN" + (f" ({cnn.label})" if reg.is_long(cnn.key) else ""), contrast, label))
    elif reg.base_key(key) != "cnn":
        verdicts.append(f"(no plain CNN trained on {reg.DIST_SHORT[dist]} yet, so no contrast)")
    if label is not None:
        verdicts.append(f"true class **{label}**")
    st.markdown(" · ".join(verdicts))
    kind_text = {"affine": "the quadrilateral (an affine map: a parallelogram)", "projective": "the quadrilateral",
                 "tps": "the warped grid and its border, with the 16 control points"}.get(pred.kind or "", "")
    st.caption(f"(a) {what}. " + (f"(b) red: {kind_text} the transformer samples from, θ predicted by its "
                                  "localisation net; yellow dot: the output's top-left corner. (c) its output V"
                                  + (f", which the classifier sees 2× average-pooled to {size // 2}×{size // 2}"
                                     if getattr(model, "downsample", 1) > 1 else "") + ". " if pred.output is not None
                                  else "") + "(d) class probabilities" +
               (" (grey: the plain CNN on the same input)" if contrast is not None else "") + ".")
    if pred.output is not None and pred.theta is not None:
        try:
            learned = E.params_from_theta(pred.kind, pred.theta)
            export_ui.warp_export(P, x, pred.kind, learned, f"explorer-{entry.stem.name}-learned-warp",
                                  label="identity → the learned θ of this digit")
        except E.ExportError as e:
            st.caption(f"This θ cannot be exported as an animation: {e}")
    if src == "test":  # a link reopens this model on this test digit
        _view = {"dist": dist, "model": key, "digit": str(index)}
        ss[_k("last_query")] = _view
        common.sync_query_params(_view)
        common.copy_link(params=_view)
    else:
        common.copy_link(params={"dist": dist, "model": key})

    # ---------------------------------------------------------------- gallery
    st.header("Gallery: test digits in the Figure 1 layout")
    ss.setdefault(_k("gal_start"), 0)
    if int(ss[_k("gal_start")]) > max(0, n_test - GALLERY_N):
        ss[_k("gal_start")] = max(0, n_test - GALLERY_N)
    g1, g2, g3, _ = st.columns([1.3, 0.7, 0.7, 2.3], vertical_alignment="bottom")
    start = int(g1.number_input("First test digit", min_value=0, max_value=max(0, n_test - GALLERY_N),
                                step=GALLERY_N, key=_k("gal_start")))
    g2.button("◀ Previous 10", key=_k("gal_prev"), on_click=_shift_gallery, args=(-GALLERY_N, n_test), width="stretch")
    g3.button("Next 10 ▶", key=_k("gal_next"), on_click=_shift_gallery, args=(GALLERY_N, n_test), width="stretch")
    indices = tuple(range(start, min(n_test, start + GALLERY_N)))
    gal_svg = cached.explorer_gallery(str(entry.stem), entry.version, task, indices)
    st.html(viz.svg_img_tag(gal_svg, alt=f"Figure 1 layout for test digits {indices[0]} to {indices[-1]}"))
    _picture_downloads(gal_svg,
                       lambda e=entry, t=task, i=indices: cached.explorer_gallery_png(str(e.stem), e.version, t, i),
                       "figure1-gallery")
    st.caption("Columns: test digits (number on top). Rows: (a) the distorted test digit" +
               (", (b) the region the transformer samples (red), (c) its output" if pred.output is not None else "") +
               ", (d) the prediction and its probability: green when right, red when wrong.")

    # ---------------------------------------------------------------- mistakes
    st.header("Mistakes")
    choices = [n for n in SCAN_CHOICES if n < n_test] + [n_test]
    ss.setdefault(_k("scan"), choices[0])
    if ss[_k("scan")] not in choices:
        ss[_k("scan")] = choices[0]
    m1, _ = st.columns([1.3, 3.7])
    n_scan = int(m1.selectbox("Search the first … test digits", choices, key=_k("scan"),
                              format_func=lambda n: f"{n:,}" + (" (all)" if n == n_test else ""),
                              help="Larger searches take a few seconds on a CPU (once per model)."))
    probs = cached.explorer_probs(str(entry.stem), entry.version, task, n_scan)
    mk = insp.find_mistakes(probs, td.y[:n_scan].numpy())
    json_err, note = reg.training_status(meta)
    line = f"**{mk.count}** mistakes in the first {n_scan:,} test digits: **{mk.error:.2f} %** (computed now)"
    if json_err is not None:
        line += f"; the checkpoint's JSON says {json_err:.2f} % on its whole test set" + (f" ({note})" if note else "")
    st.markdown(line + ".")
    if mk.count:
        shown = tuple(int(i) for i in mk.indices[:MISTAKES_N])
        mis_svg = cached.explorer_gallery(str(entry.stem), entry.version, task, shown)
        st.html(viz.svg_img_tag(mis_svg, alt="The model's most confident mistakes in the Figure 1 layout"))
        _picture_downloads(mis_svg,
                           lambda e=entry, t=task, i=shown: cached.explorer_gallery_png(str(e.stem), e.version, t, i),
                           "figure1-mistakes")
        st.caption(f"The {len(shown)} most confident mistakes, most confident first.")
        if ss.get(_k("open")) not in shown:
            ss.pop(_k("open"), None)
        o1, o2, _ = st.columns([1.3, 0.9, 2.8], vertical_alignment="bottom")
        o1.selectbox("Open a mistake in Figure 1 above", shown, key=_k("open"),
                     format_func=lambda i: f"#{i}: a {int(td.y[i])} read as {int(mk.preds[i])}")
        o2.button("Open", key=_k("open_btn"), on_click=_open_mistake, width="stretch")
    else:
        st.success(f"No mistakes in the first {n_scan:,} test digits.")

    _table1(listing)


main()
