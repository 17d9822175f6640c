"""Nearest vs bilinear: the same θ sampled with both kernels of the paper, what each output pixel
reads, the kernels' (sub)gradients, the gradient fields, a θ-fitting experiment and aliasing.

URL path: ``/sampler``. The transform is stored in the query string with the playground's names
(``image``, ``kind``, ``mode``, ``rot``, ``sx``, ``sy``, ``shear``, ``tx``, ``ty``, ``px``, ``py``,
``theta``, ``out``; see pages/playground.py), so a playground link opens here with the path
changed to ``/sampler`` and the "open in the playground" link goes back. Without parameters the
page starts at a 20° turn with a 1/0.6 zoom on a 128 × 128 output.

Widget keys (for AppTest): ``sp_src``, ``sp_digit``, ``sp_bird``, ``sp_upload`` (image picker),
``sp_kind``, ``sp_rot`` … ``sp_py``, ``sp_out``; zoom ``sp_zi``, ``sp_zj``, button ``sp_zmax``;
experiment ``sp_ex_rot``, ``sp_ex_shift``, ``sp_ex_lr``, button ``sp_ex_run``; aliasing ``sp_alias``;
button ``sp_use_sliders`` (leave the raw θ of a link).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import replace

import streamlit as st

from pages.lab import common
from pages.lab import figures as viz
from pages.lab import playground as pg
from pages.lab import sampler as sl
from pages.shell.navigation import require_app

require_app()  # first: a run that bypassed app.py reruns through it


P = "sp_"
ss = st.session_state
OUT_LABELS = {"same": "same as input", "64": "64 × 64", "128": "128 × 128", "256": "256 × 256"}
PANEL_HEIGHT = 400
ALIAS_LABELS = {"zone": "Zone plate (test pattern)", "image": "The current image"}


def _k(name: str) -> str:
    return P + name


def _write_widgets(state: pg.PlaygroundState) -> None:
    ss[_k("kind")] = state.kind
    ss[_k("out")] = state.out
    for n in pg.SLIDERS:
        ss[_k(n)] = float(getattr(state, n))


def _from_session(base: pg.PlaygroundState) -> pg.PlaygroundState:
    kw = {n: float(ss.get(_k(n), getattr(base, n))) for n in pg.SLIDERS}
    return replace(base, kind=ss.get(_k("kind"), base.kind), out=ss.get(_k("out"), base.out), **kw)


def _to_sliders() -> None:
    ss[_k("mode")] = "intuitive"


def _on_kind() -> None:
    ss[_k("mode")] = "intuitive"


def _request_run() -> None:
    ss[_k("ex_request")] = True  # a flag, not the button's value: it survives any rerun before the page runs


def _jump_to_max() -> None:
    if _k("maxdiff") in ss:
        ss[_k("zi")], ss[_k("zj")] = ss[_k("maxdiff")]


# --------------------------------------------------------------------------- state

_url = common.query_dict()
if _k("state") not in ss or (_url and _url != ss.get(_k("last_query"))):
    if _url:
        state, url_msgs = pg.state_from_query(_url)
    else:
        state, url_msgs = sl.DEFAULT_VIEW, []
    key, more = common.clamp_image_key(state.image)
    state, url_msgs = replace(state, image=key), url_msgs + more
    _write_widgets(state)
    ss[_k("mode")] = state.mode
    for name in ("src", "digit", "bird"):
        ss.pop(_k(name), None)
    ss.pop(_k("zi"), None)
    ss.pop(_k("zj"), None)
else:
    state, url_msgs = ss[_k("state")], []
ss.setdefault(_k("kind"), state.kind)
ss.setdefault(_k("out"), state.out)
ss.setdefault(_k("mode"), state.mode)
for _n in pg.SLIDERS:
    ss.setdefault(_k(_n), float(getattr(state, _n)))
common.seed_picker(P, state.image)

# --------------------------------------------------------------------------- sidebar

with st.sidebar:
    st.header("1 · Input image")
    image_key, U, caption, pick_msgs = common.image_picker(P)
    in_size = (int(U.shape[0]), int(U.shape[1]))

    st.header("2 · Transformation θ")
    kind = st.radio("Kind", pg.KINDS, format_func=pg.KIND_LABELS.get, key=_k("kind"), on_change=_on_kind)
    if ss[_k("mode")] == "raw":
        st.info("θ comes from the link (raw numbers). Moving a slider switches to the sliders.")
        st.button("Use the sliders", key=_k("use_sliders"), on_click=_to_sliders)
    for n in pg.KIND_SLIDERS[kind]:
        spec = pg.SLIDERS[n]
        label = "Scale s" if (kind == "attention" and n == "sx") else spec.label
        st.slider(label, min_value=spec.lo, max_value=spec.hi, step=spec.step, key=_k(n), help=spec.help,
                  on_change=_to_sliders)
    st.selectbox("Output size H' × W'", list(OUT_LABELS), format_func=OUT_LABELS.get, key=_k("out"))

# --------------------------------------------------------------------------- compute

state = _from_session(replace(state, image=image_key, mode=ss[_k("mode")]))
if state.mode == "intuitive" or len(state.raw) != pg.n_params(state.kind):
    state = replace(state, mode="intuitive", raw=pg.intuitive_to_params(state, in_size))
params, check_msgs, _ok = pg.resolve_params(state.kind, state.raw)
out_size = pg.output_size(state.out, in_size)
cmp = sl.compare(U, state.kind, params, out_size)
res_n, res_b, diff = cmp.nearest, cmp.bilinear, cmp.diff
ss[_k("maxdiff")] = sl.largest_difference(res_n.output, res_b.output)

# --------------------------------------------------------------------------- main area

st.title("Nearest vs bilinear sampling")
st.markdown("Both kernels read U at the same source points T<sub>θ</sub>(G): **nearest** copies the closest "
            "pixel, **bilinear** blends the 4 pixels around the point. Only bilinear tells θ which way to move.",
            unsafe_allow_html=True)
common.show_messages(url_msgs + pick_msgs + check_msgs + res_b.messages)

st.header("1 · The same θ, two kernels")
c1, c2, c3 = st.columns(3, gap="medium")
fig_n = viz.image_panel(res_n.output, f"Nearest ({out_size[0]}×{out_size[1]})", height=PANEL_HEIGHT)
fig_b = viz.image_panel(res_b.output, f"Bilinear ({out_size[0]}×{out_size[1]})", height=PANEL_HEIGHT)
fig_d = viz.heatmap_panel(diff, "|bilinear − nearest|", zmin=0.0, zmax=max(float(diff.max()), 1e-6),
                          height=PANEL_HEIGHT)
with c1:
    st.plotly_chart(fig_n, config=common.plot_config("sampler-nearest"), key="sp_fig_nearest")
with c2:
    st.plotly_chart(fig_b, config=common.plot_config("sampler-bilinear"), key="sp_fig_bilinear")
with c3:
    st.plotly_chart(fig_d, config=common.plot_config("sampler-difference"), key="sp_fig_diff")
query = pg.state_to_query(state)
st.caption(f"{caption}. Largest difference {diff.max():.3f}, mean {diff.mean():.4f} (intensities in [0, 1]). "
           f"[Open this θ in the transform playground](/playground?{urllib.parse.urlencode(query)})")

st.header("2 · Zoom: which input pixels does an output pixel read?")
hh, ww = out_size
for name, top in (("zi", hh - 1), ("zj", ww - 1)):
    if _k(name) not in ss:
        ss[_k(name)] = int(ss[_k("maxdiff")][0 if name == "zi" else 1])
    ss[_k(name)] = int(min(max(int(ss[_k(name)]), 0), top))
z1, z2, z3 = st.columns([2, 2, 1.2])
z1.slider("Output row i", 0, max(hh - 1, 1), key=_k("zi"), disabled=hh == 1)
z2.slider("Output column j", 0, max(ww - 1, 1), key=_k("zj"), disabled=ww == 1)
z3.button("Largest difference", help="Show the output pixel where the two kernels differ most.", key=_k("zmax"), on_click=_jump_to_max, width="stretch")
zm = sl.zoom(U, res_b.grid, int(ss[_k("zi")]), int(ss[_k("zj")]))
zc1, zc2 = st.columns([1.25, 1], gap="large")
with zc1:
    st.plotly_chart(viz.zoom_figure(zm), config=common.plot_config("sampler-zoom"), key="sp_fig_zoom")
with zc2:
    st.markdown(f"Output pixel **(row {zm.i}, column {zm.j})** has its source point at "
                f"**x<sup>s</sup> = {zm.x:.3f}, y<sup>s</sup> = {zm.y:.3f}** (input pixels; pixel m has its "
                "centre at m).", unsafe_allow_html=True)
    st.markdown("**Bilinear** reads the 2 × 2 pixels around it, weight k(x − m)·k(y − n):")
    st.dataframe({"row n": [r.n for r in zm.bilinear], "column m": [r.m for r in zm.bilinear],
                  "weight": [round(r.weight, 4) for r in zm.bilinear],
                  "U (grey)": [round(sum(r.value) / len(r.value), 4) if r.inside else "outside: 0"
                               for r in zm.bilinear]},
                 hide_index=True, width="stretch")
    st.markdown(f"V<sub>bilinear</sub> = Σ weight · U = **{sum(zm.v_bilinear) / 3:.4f}**  \n"
                f"**Nearest** reads only pixel (n = {zm.nearest.n}, m = {zm.nearest.m}) = ⌊y + ½⌋, ⌊x + ½⌋ with "
                f"weight 1: V<sub>nearest</sub> = **{sum(zm.v_nearest) / 3:.4f}**", unsafe_allow_html=True)
    st.caption("Values are the mean over the colour channels. The cyan dots are the source points of the "
               "8 neighbouring output pixels: nearest gives all of those that share a pixel the same value.")

st.header("3 · The kernels and their (sub)gradients")
st.plotly_chart(viz.kernel_figure(sl.kernel_curves()), config=common.plot_config("sampler-kernels"),
                key="sp_fig_kernels")
kc1, kc2 = st.columns(2)
kc1.latex(r"V_i = \sum_n \sum_m U_{nm}\, k(x_i^s - m)\, k(y_i^s - n)")
kc2.latex(r"\frac{\partial V_i}{\partial x_i^s} = \sum_n \sum_m U_{nm}\, k(y_i^s - n)\, g(m, x_i^s)")
kc3, kc4 = st.columns([1, 2], vertical_alignment="center")
kc3.latex(r"g = \begin{cases} 0 & |m - x_i^s| \ge 1 \\ +1 & m \ge x_i^s \\ -1 & m < x_i^s \end{cases}")
kc4.markdown("The nearest kernel is a step: flat everywhere except at d = ±½, where it jumps. Its "
             "derivative is **0** wherever it exists, so no gradient reaches x<sup>s</sup>, y<sup>s</sup> "
             "or θ. Bilinear is a tent: slope ±1, with a kink at d = 0 where the paper picks +1 "
             "(filled dot).", unsafe_allow_html=True)

st.header("4 · Gradient fields of the bilinear sampler")
gf = sl.gradient_fields(U, res_b.grid)
st.plotly_chart(viz.gradient_pair_figure(gf.gx, gf.gy, "How V changes when each source point moves by one "
                                                         "input pixel (autograd through grid_sample)"),
                config=common.plot_config("sampler-gradient-fields"), key="sp_fig_grad")
g1, g2, g3 = st.columns(3)
g1.metric("max |autograd − paper's formulas|", f"{gf.max_diff:.2g}",
          help="Over output pixels whose source point is not exactly on a pixel row or column (float64).")
g2.metric("points exactly on a kink", f"{gf.n_kink} of {gf.n_total}",
          help="There the paper's sub-gradient (+U[x]) and grid_sample's one-sided difference (U[x+1] − U[x]) "
               "differ by design.")
g3.metric("max |∂V/∂x^s| with nearest", f"{gf.nearest_max:.2g}",
          help="Autograd through grid_sample(mode='nearest') and the reference backend: exactly zero.")
if gf.n_kink:
    st.caption(f"Including the kink points the largest difference is {gf.max_diff_all:.3g}: on an exact integer "
               "coordinate the two backends pick different sub-gradients.")

st.header("5 · Experiment: learn θ by gradient descent")
st.markdown("A digit is turned and moved; starting from the identity, Adam adjusts θ (6 numbers) for 60 steps "
            "so that sample(U, T<sub>θ</sub>(G)) matches the upright template, once with each kernel.",
            unsafe_allow_html=True)
e1, e2, e3, e4 = st.columns([1, 1, 1, 1])
e1.slider("Rotation of the digit (°)", 0, 60, 30, step=5, key=_k("ex_rot"))
e2.slider("Shift (normalised)", 0.0, 0.4, 0.2, step=0.05, key=_k("ex_shift"))
e3.select_slider("Learning rate", options=[0.01, 0.03, 0.1], value=0.03, key=_k("ex_lr"))
e4.button("Run the experiment", key=_k("ex_run"), type="primary", width="stretch", on_click=_request_run)
digit = U if image_key.startswith("mnist") else common.sample_image("mnist", 0)
if ss.pop(_k("ex_request"), False):
    try:
        ss[_k("ex_result")] = sl.align_experiment(digit, rotation_deg=float(ss[_k("ex_rot")]),
                                                  shift=(float(ss[_k("ex_shift")]), -0.75 * float(ss[_k("ex_shift")])),
                                                  steps=60, lr=float(ss[_k("ex_lr")]))
    except Exception as e:  # a failed run must not take the page down
        st.error(f"The experiment failed ({type(e).__name__}: {e}).")
ex = ss.get(_k("ex_result"))
if ex is None:
    st.info("Press **Run the experiment** (well under a second).")
else:
    lc1, lc2 = st.columns([1, 1.6], gap="large")
    with lc1:
        st.plotly_chart(viz.loss_figure(ex.runs), config=common.plot_config("sampler-experiment-loss"),
                        key="sp_fig_loss")
    with lc2:
        st.plotly_chart(viz.theta_figure(ex.runs, ex.target), config=common.plot_config("sampler-experiment-theta"),
                        key="sp_fig_theta")
    ic = st.columns(4)
    for i, (col, (img, label)) in enumerate(zip(ic, ((ex.template, "template (upright)"),
                                                     (ex.moved, "input U (turned, moved)"),
                                                     (ex.runs["bilinear"].final, "after 60 steps: bilinear"),
                                                     (ex.runs["nearest"].final, "after 60 steps: nearest")))):
        shown = viz.display_image(img, target=224)[0]
        col.image(shown, caption=label, width="stretch")
        common.png_download(lambda shown=shown: viz.png_bytes(shown), f"sampler-experiment-{i + 1}.png", where=col,
                            key=_k(f"ex_png_{i}"))
    b, n = ex.runs["bilinear"], ex.runs["nearest"]
    st.caption(f"{ex.steps} Adam steps, lr {ex.lr:g}, {ex.seconds * 1000:.0f} ms. Bilinear: loss "
               f"{b.losses[0]:.4f} → {b.losses[-1]:.4f}. Nearest: loss {n.losses[0]:.4f} → {n.losses[-1]:.4f}; "
               f"θ moved by {abs(n.thetas[-1] - n.thetas[0]).max():.2g}: every gradient is zero.")

st.header("6 · Aliasing: downscaling 4× with one sample per output pixel")
st.radio("Picture", list(ALIAS_LABELS), format_func=ALIAS_LABELS.get, key=_k("alias"), horizontal=True)
try:
    ds = sl.downscale(sl.zone_plate(256) if ss[_k("alias")] == "zone" else U, 4)
except ValueError as e:
    st.warning(f"{e}.")
else:
    ac = st.columns(4)
    hs, ws = ds.nearest.shape[:2]
    for i, (col, (img, label)) in enumerate(zip(ac, (
            (ds.original, f"input ({ds.original.shape[0]}×{ds.original.shape[1]})"),
            (ds.nearest, f"nearest ↓4 ({hs}×{ws})"), (ds.bilinear, f"bilinear ↓4 ({hs}×{ws})"),
            (ds.area, f"area average ↓4 ({hs}×{ws})")))):
        shown = viz.display_image(img, target=256)[0]
        col.image(shown, caption=label, width="stretch")
        common.png_download(lambda shown=shown: viz.png_bytes(shown), f"sampler-aliasing-{i + 1}.png", where=col,
                            key=_k(f"alias_png_{i}"))
    f_n, f_b = sl.read_fraction(4)
    st.markdown(f"The attention θ with s = 1 on a grid 4× smaller puts one source point in each 4 × 4 block. "
                f"Nearest reads **{f_n:.0%}** of the input pixels, bilinear **{f_b:.0%}** (the 2 × 2 around each "
                "point); the rest is never looked at, so fine detail folds into false patterns (the rings of the "
                "zone plate reappear at the wrong places). Bilinear interpolation is not a low-pass filter. "
                "The paper's attention crops behave the same way whenever a crop covers more input pixels than "
                "the output has: that is why its 448-px CUB model samples the crops at full resolution and "
                "down-samples them afterwards, and why its RTS/TC models average-pool the transformer's output. "
                "The area average (right) is what a proper low-pass does.")

# --------------------------------------------------------------------------- URL

ss[_k("state")] = state
ss[_k("last_query")] = query
common.sync_query_params(query)
common.copy_link(params=query)
