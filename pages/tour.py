"""Guided tour: the paper in nine live steps, for a lecture on a projector.

URL path: ``/tour``. ``?step=N`` (1–9) opens step N (anything else: step 1 with a warning);
step 1 also keeps ``angle`` (−90…90) and ``digit`` (shipped test digit index) in the URL.
Logic in :mod:`pages.lab.tour` (and the playground, sampler-lab and explorer modules).

Widget keys (for AppTest): ``tour_sel`` (step selector), buttons ``tour_prev``, ``tour_next``,
``tour_present`` (presentation-mode toggle); step 1 ``tour_angle``, ``tour_digit``, ``tour_sweep``;
step 2 ``tour_m_rot``; step 3 ``tour_g_rot``, ``tour_g_scale``, ``tour_g_tx``, ``tour_g_ty``,
``tour_g_src``; step 4 ``tour_s_i``, ``tour_s_j``; step 6 ``tour_r_start``; step 7 ``tour_f_seed``;
step 9 ``tour_d_y``, ``tour_d_x``.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from pages.lab import cached, common
from pages.lab import cub as ca
from pages.lab import figures as viz
from pages.lab import links
from pages.lab import multidigit as md
from pages.lab import playground as pg
from pages.lab import sampler as sl
from pages.lab import tour
from pages.shell.navigation import require_app
from stn_core import registry as reg
from stn_core.analysis import deformable as dfm
from stn_core.analysis import inspect as insp
from stn_core.analysis import table1 as t1
from stn_core.checkpoints import CheckpointError
from stn_core.data.samples import load_cub_sample

require_app()  # first: a run that bypassed app.py reruns through it


ss = st.session_state
P = "tour_"
STEP_KEY = P + "sel"
K_PLAIN = 9  # the paper's CNN starts with a 9×9 convolution


def _k(name: str) -> str:
    return P + name


# --------------------------------------------------------------------------- helpers

def _digit(index: int) -> tuple[np.ndarray, int]:
    """Shipped test digit ``index`` (28×28 grey, its label); a stand-in "F" (label 0) if missing."""
    return cached.tour_digit(index)


def _found() -> dict:
    return {k: e for k, e in common.discover_checkpoints().items() if k[1] in reg.MODEL_KEYS}


def _cfg(name: str) -> dict:
    return common.plot_config(f"tour-{name}")


def _train_hint(dist: str, key: str) -> str:
    return f"`{reg.train_command(dist, key)} --steps 20000`"


# --------------------------------------------------------------------------- navigation state

def _go(delta: int) -> None:
    ss[STEP_KEY] = tour.clamp_step(int(ss.get(STEP_KEY, 1)) + delta)


_url = common.query_dict()
_msgs: list[str] = []
if STEP_KEY not in ss or (_url and _url != ss.get(_k("last_query"))):
    step0, warn = tour.parse_step(_url.get("step"))
    if "step" not in _url and _k("saved") in ss:  # back from another page: the step shown last
        step0 = tour.clamp_step(ss[_k("saved")])
    if warn:
        _msgs.append(warn)
    ss[STEP_KEY] = step0
    for name, lo, hi, default in (("angle", -90, 90, 45), ("digit", 0, 499, 0)):
        if name in _url:
            v = links.parse_int(_url[name], lo, hi)
            if v is not None:
                ss[_k(name)] = v - v % 5 if name == "angle" else v
            else:
                _msgs.append(f"Link parameter {name}={_url[name][:20]!r} is not a whole number in {lo}…{hi}; "
                             f"using {default}.")
                ss[_k(name)] = default

# --------------------------------------------------------------------------- presentation look

present = bool(ss.get(_k("present"), False))
_css = """
<style>
[data-testid="stMainBlockContainer"] p, [data-testid="stMainBlockContainer"] li { font-size: 1.3rem; line-height: 1.5; }
[data-testid="stMainBlockContainer"] h1 { font-size: 2.6rem; }
[data-testid="stMainBlockContainer"] h2 { font-size: 2.0rem; }
[data-testid="stMainBlockContainer"] .katex { font-size: 1.25em; }
</style>
"""
if present:
    _css += """
<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stHeader"],
[data-testid="stToolbar"], [data-testid="stDecoration"] { display: none !important; }
[data-testid="stMainBlockContainer"] { padding-top: 1.2rem; max-width: 100%; }
</style>
"""
st.html(_css)

# --------------------------------------------------------------------------- header

step = tour.clamp_step(int(ss[STEP_KEY]))
h1, h2 = st.columns([4, 1.6], vertical_alignment="bottom")
h1.title("Guided tour: Spatial Transformer Networks")
h2.toggle("Presentation mode", key=_k("present"),
          help="Hides the sidebar and the top bar and leaves the big fonts: for a projector. Toggle again to leave.")
st.progress(tour.progress(step), text=f"Step {step} of {tour.N_STEPS}: {tour.STEPS[step - 1].title}")
n1, n2, n3 = st.columns([1, 4, 1], vertical_alignment="bottom")
n1.button("◀ Previous", key=_k("prev"), on_click=_go, args=(-1,), disabled=step == 1, width="stretch")
n2.selectbox("Step", list(range(1, tour.N_STEPS + 1)), key=STEP_KEY, label_visibility="collapsed",
             format_func=lambda n: f"{n} · {tour.STEPS[n - 1].title}")
n3.button("Next ▶", key=_k("next"), on_click=_go, args=(1,), disabled=step == tour.N_STEPS, type="primary",
          width="stretch")
for m in _msgs:
    st.warning(m)


# --------------------------------------------------------------------------- steps

def step_problem() -> dict[str, str]:
    st.header("1 · The problem")
    st.markdown("A convolutional network is only **a little** invariant to where and how a digit sits: pooling "
                "forgives a pixel or two, not a quarter turn. Turn a test digit and watch how sure each network "
                "stays of the right answer.")
    found = _found()
    pair = tour.choose_pair(found)
    if pair is None:
        st.info("No pair of trained distorted-MNIST checkpoints with the same input size yet. Train, e.g.,\n\n"
                + _train_hint("r", "cnn") + "\n\n" + _train_hint("r", "st-cnn-aff"))
        return {}
    ss.setdefault(_k("angle"), 45)
    ss.setdefault(_k("digit"), 0)
    ss.setdefault(_k("sweep"), True)
    ss.setdefault(_k("mean"), False)
    c1, c2, c3 = st.columns([2.6, 1.1, 1.5], vertical_alignment="bottom")
    angle = int(c1.slider("Rotation of the digit (°)", -90, 90, step=5, key=_k("angle")))
    index = int(c2.number_input("Test digit (0–499)", 0, 499, step=1, key=_k("digit")))
    sweep = c3.toggle("Sweep −90°…90°", key=_k("sweep"),
                      help="Runs the networks on the digit turned every 5° from −90° to 90°.")
    mean = c3.toggle("Mean of 100 digits", key=_k("mean"), disabled=not sweep,
                     help="The curve for the first 100 shipped test digits (mean confidence in the true class), "
                          "which is less noisy than one digit.")
    upright = reg.upright_cnn(pair.input_size)
    models: list[tuple[str, str, tuple[int, int]]] = [
        (pair.labels[0], str(pair.plain.stem), pair.plain.version), (pair.labels[1], str(pair.st.stem), pair.st.version)]
    if upright is not None:
        models.append((f"{reg.MODEL_LABELS['cnn']} (upright)", str(upright), reg.version(reg.stem(reg.UPRIGHT_CNN))))
    try:
        loaded = [common.load_checkpoint(stem, v) for _, stem, v in models]
    except CheckpointError as e:
        st.error(f"A checkpoint could not be loaded: {e}")
        return {}
    digit, label = _digit(index)
    d = tour.place_digit(digit, pair.input_size)
    x = tour.rotate_digits(d, [angle])[0, 0].numpy()
    preds = [insp.predict(m, x)[0] for m, _ in loaded]
    p_st = preds[1]
    keys: cached.Models = tuple((stem, v) for _, stem, v in models)
    left, right = st.columns([2.2, 2], gap="large")
    with left:
        if sweep:
            curves = cached.tour_mean_curves(keys, pair.input_size) if mean else None
            if curves is None:
                curves = cached.tour_curves(keys, index, pair.input_size)
            fig = tour.confidence_figure(tour.SWEEP_ANGLES, {name: c for (name, _, _), c in zip(models, curves)},
                                         angle)
            if mean:
                fig.update_layout(title_text="Mean confidence in the true class, 100 test digits")
            st.plotly_chart(fig, config=_cfg("confidence"), key="tour_fig_conf")
        else:
            st.info("Switch on **Sweep −90°…90°** to see the confidence at every angle.")
        st.markdown(f"**Confidence that the digit at {angle}° is a {label}:**")
        for col, (name, _, _), p in zip(st.columns(len(models)), models, preds):
            col.metric(name, f"{100 * p.probs[label]:.0f} %")
            col.caption(f"predicts {p.pred}")
    with right:
        a, b = st.columns(2)
        a.plotly_chart(viz.region_figure(x, p_st.region, title=f"input, turned {angle}°", height=380),
                       config=_cfg("rotated-digit"), key="tour_fig_rot")
        if p_st.output is not None:
            b.plotly_chart(viz.image_panel(p_st.output, "ST output V", height=380), config=_cfg("st-output"),
                           key="tour_fig_stout")
        st.caption(f"Shipped MNIST test digit #{index} (a {label}). Red: the region the spatial transformer "
                   "samples; right: what its classifier sees.")
    if upright is not None:
        st.markdown("**What the curves say.** The same CNN trained on upright digits only (orange, dotted) "
                    "loses the digit once it is turned. Trained on turned digits (R), the plain CNN copes too, "
                    "by learning every orientation separately in its weights. The ST-CNN instead learns to turn "
                    "the digit back before classifying it: its output V stands upright whatever the input's angle.")
    metas = [m for _, m in loaded]
    st.caption(pair.note + " Test error from the checkpoints' JSON: "
               + ", ".join(f"{name} {meta.get('test_error', '?')} %" for (name, _, _), meta in zip(models, metas))
               + ("" if upright is None else
                  f" (the upright CNN on the plain MNIST test set; "
                  f"`{metas[-1].get('command', reg.UPRIGHT_COMMAND)}`)") + ".")
    if upright is None:
        st.caption("A CNN trained on upright digits shows the problem best; it is not here yet: "
                   f"`{reg.UPRIGHT_COMMAND}`.")
    return {"angle": str(angle), "digit": str(index)}


def step_module() -> dict[str, str]:
    st.header("2 · The module: three parts")
    st.markdown("A spatial transformer is a small, differentiable module you can put anywhere in a network. "
                "For each input it **predicts θ**, builds a **sampling grid** from it and **resamples** the input.")
    rot = st.slider("How much the digit U is turned (°)", -60, 60, 35, step=5, key=_k("m_rot"))
    svg, scene = cached.tour_pipeline(int(rot))
    st.html(viz.svg_img_tag(svg, alt="Input U, localisation net, grid generator, sampler, output V"))
    downloads = st.container(horizontal=True)
    common.png_download(lambda scene=scene: viz.scene_png(scene), "tour-pipeline.png", where=downloads, key=_k("m_png"))
    downloads.download_button("Download SVG", data=svg.encode("utf-8"), file_name="tour-pipeline.svg",
                              mime="image/svg+xml", icon=":material/download:", key=_k("m_svg"))
    c1, c2, c3 = st.columns(3, gap="large")
    c1.markdown("**Localisation net**: any small network regressing θ from U; its last layer starts at the identity.")
    c1.latex(r"\theta = f_{\mathrm{loc}}(U)")
    c2.markdown("**Grid generator**: maps every output pixel to a source point in U.")
    c2.latex(r"\begin{pmatrix} x_i^s \\ y_i^s \end{pmatrix} = A_\theta \begin{pmatrix} x_i^t \\ y_i^t \\ 1 "
             r"\end{pmatrix}")
    c3.markdown("**Sampler**: reads U at the source points with a kernel k.")
    c3.latex(r"\begin{aligned} V_i &= \textstyle\sum_{n,m} U_{nm}\, \\ &\quad k(x_i^s - m)\, k(y_i^s - n) \end{aligned}")  # two lines: fits a third of the page
    st.caption("θ here is the exact inverse of the distortion: what a well-trained localisation net predicts.")
    return {}


def step_grid() -> dict[str, str]:
    st.header("3 · Grid generator")
    st.markdown("θ is a recipe for **where to read**: the regular output grid G is mapped into the input. "
                "Move the sliders: the cyan grid on U is $T_\\theta(G)$; each crossing becomes one crossing on V.")
    s1, s2, s3, s4, s5 = st.columns([1.2, 1, 1, 1, 1])
    rot = s1.slider("Rotation (°)", -180, 180, 30, step=5, key=_k("g_rot"))
    scale = s2.slider("Scale", 0.3, 2.0, 0.8, step=0.05, key=_k("g_scale"))
    tx = s3.slider("Shift x", -1.0, 1.0, 0.0, step=0.05, key=_k("g_tx"))
    ty = s4.slider("Shift y", -1.0, 1.0, 0.0, step=0.05, key=_k("g_ty"))
    src = s5.radio("Picture", ["digit", "bird"], key=_k("g_src"), horizontal=True)
    img = common.sample_image("mnist", 0) if src == "digit" else common.sample_image("bird", 0)
    params, res, outline = tour.grid_view(img, rot, scale, (tx, ty))
    c1, c2 = st.columns(2, gap="large")
    fig_in = viz.input_figure(img, res.grid, outline, res.valid, title="Input U with T<sub>θ</sub>(G)")
    fig_out = viz.output_figure(res.output, res.valid, title="Output V")
    fig_out.update_layout(height=fig_in.layout.height)
    c1.plotly_chart(fig_in, config=_cfg("grid-input"), key="tour_fig_gin")
    c2.plotly_chart(fig_out, config=_cfg("grid-output"), key="tour_fig_gout")
    st.latex(pg.theta_latex("affine", params) + r"\qquad " + pg.KIND_FORMULAS["affine"])
    st.caption("Coordinates are normalised to [−1, 1]; θ maps output → input (backward warping), which is why "
               "turning the window one way turns the picture the other way. ")
    st.page_link("pages/playground.py", label="More kinds (attention, projective) in the Transform playground",
                 icon=":material/arrow_forward:")
    return {}


def step_sampler() -> dict[str, str]:
    st.header("4 · Sampler and its gradients")
    st.markdown("Source points fall **between** pixels. The bilinear kernel blends the 4 neighbours, and because "
                "it is a tent, V changes smoothly when a source point moves: the gradient reaches θ.")
    st.latex(r"V_i^c = \sum_n \sum_m U_{nm}^c \max(0, 1 - |x_i^s - m|)\,\max(0, 1 - |y_i^s - n|)")
    st.latex(r"\frac{\partial V_i^c}{\partial U_{nm}^c} = \max(0, 1 - |x_i^s - m|)\,\max(0, 1 - |y_i^s - n|)")
    k3, k4 = st.columns([2.3, 1], vertical_alignment="center")
    k3.latex(r"\frac{\partial V_i^c}{\partial x_i^s} = \sum_n \sum_m U_{nm}^c \max(0, 1 - |y_i^s - n|)\; g(m, x_i^s)")
    k4.latex(r"g = \begin{cases} 0 & |m - x_i^s| \ge 1 \\ +1 & m \ge x_i^s \\ -1 & m < x_i^s \end{cases}")
    digit = common.sample_image("mnist", 0)
    params = pg.intuitive_to_params(pg.PlaygroundState(rot=20.0, sx=0.6, sy=0.6), digit.shape[:2])
    cmp = sl.compare(digit, "affine", params, (digit.shape[0], digit.shape[1]))
    res = cmp.bilinear
    if _k("s_i") not in ss or _k("s_j") not in ss:  # start where the two kernels differ most
        ss[_k("s_i")], ss[_k("s_j")] = (int(v) for v in sl.largest_difference(cmp.nearest.output, res.output))
    z1, z2 = st.columns(2)
    i = z1.slider("Output row i", 0, digit.shape[0] - 1, key=_k("s_i"))
    j = z2.slider("Output column j", 0, digit.shape[1] - 1, key=_k("s_j"))
    zm = sl.zoom(digit, res.grid, int(i), int(j))
    c1, c2 = st.columns([1.1, 1.4], gap="large")
    c1.plotly_chart(viz.zoom_figure(zm, height=520), config=_cfg("sampler-zoom"), key="tour_fig_zoom")
    with c2:
        st.plotly_chart(viz.kernel_figure(sl.kernel_curves(), height=330), config=_cfg("kernels"),
                        key="tour_fig_kernels")
        gf = sl.gradient_fields(digit, res.grid)
        st.plotly_chart(viz.gradient_pair_figure(gf.gx, gf.gy, "∂V/∂x<sup>s</sup>, ∂V/∂y<sup>s</sup> (bilinear)",
                                                 height=300), config=_cfg("gradients"), key="tour_fig_grads")
    st.caption(f"Output pixel ({zm.i}, {zm.j}) reads U around x = {zm.x:.2f}, y = {zm.y:.2f}: bilinear gives "
               f"{sum(zm.v_bilinear) / 3:.3f}, nearest {sum(zm.v_nearest) / 3:.3f}. With the nearest kernel every "
               f"gradient w.r.t. the source points is 0 (here max {gf.nearest_max:.1g}): θ could not learn.")
    st.page_link("pages/sampler.py", label="The full Nearest vs bilinear page (θ-fitting experiment, aliasing)",
                 icon=":material/arrow_forward:")
    return {}


def step_training() -> dict[str, str]:
    st.header("5 · End-to-end training")
    st.markdown("No one tells the transformer where the digit is. It starts at the identity (V = U) and only the "
                "**classification loss** trains it, by backpropagation through the sampler and the grid generator "
                "into the localisation net.")
    st.latex(r"\frac{\partial L}{\partial \theta} = \sum_i \frac{\partial L}{\partial V_i}"
             r"\left(\frac{\partial V_i}{\partial x_i^s}\frac{\partial x_i^s}{\partial \theta} + "
             r"\frac{\partial V_i}{\partial y_i^s}\frac{\partial y_i^s}{\partial \theta}\right),\qquad "
             r"\frac{\partial x_i^s}{\partial \theta_{1j}} = (x_i^t, y_i^t, 1)_j")
    found = _found()
    entry = found.get(("rts", "st-cnn-aff"))
    if entry is None or not entry.usable:
        entry = tour.best_st_entry(found)
    if entry is None:
        st.info("No trained spatial-transformer checkpoint yet. Train one with " + _train_hint("rts", "st-cnn-aff"))
    else:
        model, meta = common.load_checkpoint(str(entry.stem), entry.version)
        h = tour.history(meta)
        c1, c2 = st.columns([1.3, 1.7], gap="large")
        with c1:
            if h.steps.size:
                st.plotly_chart(tour.history_figure(h, f"{entry.label} on {reg.DIST_SHORT[entry.dist]}: "
                                                       "evaluations during training"),
                                config=_cfg("history"), key="tour_fig_hist")
            else:
                st.info("This checkpoint has no recorded training history.")
            st.caption(f"From `{entry.stem.name}.json` (\"history\"); command: `{meta.get('command', '?')}`.")
        with c2:
            td = common.test_digits(entry.task)
            idx = list(range(6))
            preds = insp.predict(model, td.x[idx])
            rows = [("input U", [td.x[i, 0].numpy() for i in idx]),
                    ("at initialisation (V = U)", [tour.identity_view(model, td.x[i, 0].numpy()) for i in idx]),
                    ("after training: V", [p.output for p in preds])]
            strip = tour.image_rows(rows)
            st.image(strip, width="stretch",
                     caption="Rows, top to bottom: " + " · ".join(name for name, _imgs in rows))
            common.png_download(lambda strip=strip: viz.png_bytes(strip), "tour-before-after-training.png",
                                key=_k("t_png"))
            st.caption("The same test digits before and after training: the transformer has learned, from the "
                       "labels alone, to zoom in on the digit and turn it upright.")
    st.page_link("pages/live.py", label="Watch it learn: Live training", icon=":material/play_circle:")
    return {}


def step_results() -> dict[str, str]:
    st.header("6 · Distorted MNIST results")
    found = _found()
    cells = t1.table1_cells(found=found)
    entry = tour.best_st_entry(found)
    if entry is None:
        st.info("No trained spatial-transformer checkpoint yet: " + _train_hint("rts", "st-cnn-aff"))
    else:
        st.markdown(f"**Figure 1, live**: {entry.label} on {reg.DIST_LABELS[entry.dist]}: (a) the test digit, (b) "
                    "the region the transformer samples, (c) what it hands the classifier, (d) the prediction.")
        td = common.test_digits(entry.task)
        n = int(td.x.shape[0])
        f1, f2 = st.columns([1, 3], vertical_alignment="center")
        start = int(f1.slider("First test digit", 0, max(0, n - 8), 0, step=8, key=_k("r_start")))
        indices = tuple(range(start, min(n, start + 8)))
        with f2:
            try:
                svg, scene = cached.tour_figure1(str(entry.stem), entry.version, entry.task, indices)
                st.html(viz.svg_img_tag(svg, alt="Figure 1: inputs, sampled regions, outputs, predictions"))
            except CheckpointError as e:
                svg = ""
                st.error(f"The checkpoint could not be loaded: {e}")
        if svg:
            common.png_download(lambda scene=scene: viz.scene_png(scene), "tour-figure1.png", where=f1, key=_k("r_png"))
            f1.download_button("Download SVG", data=svg.encode("utf-8"), file_name="tour-figure1.svg",
                               mime="image/svg+xml", icon=":material/download:", key=_k("r_svg"))
    st.subheader("Table 1: test error (%)")
    st.markdown("**ours** from the checkpoints' JSON files (bold: finished), **paper** from Table 1 (mean of 3 runs). "
                "Our runs use much shorter schedules than the paper's 150k steps.")
    st.markdown(t1.table1_markdown(cells))
    st.caption("Same table as `python scripts/make_table1.py` → results/table1.md.")
    st.page_link("pages/explorer.py", label="Explore every model on any digit (yours too)",
                 icon=":material/model_training:")
    return {}


def step_features() -> dict[str, str]:
    st.header("7 · Transformers inside the network")
    st.markdown("A transformer can sit anywhere in a network. For house numbers (SVHN, the paper's Table 2), "
                "**ST-CNN Multi** puts one before each of the first four conv layers: the first warps the image, "
                "the other three warp **feature maps**, each from a tiny localisation net. Convolutions and pooling "
                "keep normalised coordinates, so the four affine maps compose: their product shows where the last "
                "one's output lies in the image. Here on strings of MNIST digits (SVHN is not available offline).")
    st.latex(r"A_{\text{total}} = A_{\theta_1} A_{\theta_2} A_{\theta_3} A_{\theta_4}")
    seed = int(st.slider("String", 0, 49, 3, key=_k("f_seed")))
    images, labels = cached.tour_mnist() or (None, None)
    if images is None:
        st.info("The shipped MNIST sample is missing: no string to show.")
        return {}
    s = md.make_string(images, labels, "tight", seed)
    stem = reg.stem(reg.sequence_stem_name("seq-st-multi", "tight"))
    if not reg.ready(stem):
        st.image(md.picture(s.images[0, 0].numpy(), [], scale=5), caption="A string (no trained reader here yet)")
        st.info(f"The trained ST-CNN Multi is not here yet: `{reg.sequence_train_command('seq-st-multi', 'tight')}`.")
    else:
        model, _meta = common.load_checkpoint(str(stem), reg.version(stem))
        with torch.no_grad():
            v = model.views(s.images)
        text, p = md.reading(v)
        c1, c2 = st.columns([1, 2], gap="large")
        c1.image(md.picture(s.images[0, 0].numpy(), [(md.product_quad(v), md.PRODUCT_COLOUR, 4)], scale=5),
                 caption=f"Reads {text} ({100 * p:.0f} %); orange: the product of the four maps", width="stretch")
        cols = c2.columns(4)
        for i, col in enumerate(cols):
            col.image(md.feature_picture(v.st_inputs[i][0], md.theta_quad(v.thetas[i][0]), md.ST_COLOURS[i], 128),
                      caption=f"ST {i + 1} input" + (" (image)" if i == 0 else f" ({v.st_inputs[i].shape[1]} maps)"),
                      width="stretch")
            col.image(md.feature_picture(v.st_outputs[i][0], target=128), caption=f"ST {i + 1} output", width="stretch")
    st.page_link("pages/multidigit.py", label="Digit strings page", icon=":material/pin:")
    return {}


def step_cub() -> dict[str, str]:
    st.header("8 · CUB birds: attention without box labels")
    st.markdown("On 200 bird species the paper puts 2 or 4 **attention** transformers (scale + translation) in "
                "parallel. Trained with species labels only, one learns to look at the **head**, another at the "
                "**body**: 2×ST-CNN 83.1 %, 4×ST-CNN 84.1 % accuracy against 82.3 % for the CNN (paper).")
    st.latex(r"A_\theta = \begin{bmatrix} s & 0 & t_x \\ 0 & s & t_y \end{bmatrix}")
    bird, name = None, ""
    try:
        recs = load_cub_sample(load_images=True)
        ss.setdefault(_k("c_bird"), 0)
        i = int(st.selectbox("Bird", list(range(len(recs))), key=_k("c_bird"),
                             format_func=lambda k: str(recs[k]["class_name"]).replace("_", " ")))
        bird, name = pg.as_rgb(recs[i]["image"]), str(recs[i]["class_name"]).replace("_", " ")
    except Exception as e:
        st.info(f"The shipped CUB samples are missing ({type(e).__name__}: {e}).")
    shown = False
    # the 448-px models (the paper's high-resolution setting) when they are here, else the 224-px ones
    size = 448 if reg.ready(reg.cub_stem("2st", size=448)) else 224
    st_stem, base_stem = reg.cub_stem("2st", size=size), reg.cub_stem("baseline", size=size)
    if bird is not None and reg.ready(st_stem):
        try:
            model, meta = common.load_checkpoint(str(st_stem), reg.version(st_stem))
            pred = ca.predict_bird(model, meta, bird)
            c1, c2 = st.columns([1.4, 1], gap="large")
            with c1:
                boxed = ca.draw_boxes(bird, pred.boxes)
                st.image(boxed, caption=f"{name}: the transformers' boxes ({size}-px model)", width="stretch")
                common.png_download(lambda boxed=boxed: viz.png_bytes(boxed), "tour-cub-boxes.png", key=_k("c_png"))
            with c2:
                crops = list(pred.crops)
                cols = st.columns(max(1, len(crops)))
                for k, (col, crop) in enumerate(zip(cols, crops)):
                    col.image(viz.to_uint8(np.asarray(crop)), caption=f"transformer {k + 1}", width="stretch")
                st.markdown("**Top 5**  \n" + "  \n".join(f"{n_}: {100 * p:.0f} %" for _c, n_, p in pred.top5))
                if reg.ready(base_stem):
                    base, bmeta = common.load_checkpoint(str(base_stem), reg.version(base_stem))
                    top = ca.predict_bird(base, bmeta, bird).top5[0]
                    st.caption(f"The CNN without transformers says {top[1]} ({100 * top[2]:.0f} %).")
            if not meta.get("final", False):
                st.caption("This checkpoint is still training: boxes and numbers will change.")
            shown = True
        except Exception as e:  # the other helper's module may still be in progress
            st.info(f"The trained bird model could not be shown yet ({type(e).__name__}: {e}).")
    if not shown and bird is not None:
        c1, c2 = st.columns([1.4, 1], gap="large")
        c1.image(viz.to_uint8(bird), caption=f"{name} (shipped CUB-200-2011 sample)", width="stretch")
        c2.info("The trained bird model (`checkpoints/cub50_2st`, with `cub50_baseline` for contrast) is not here "
                "yet, so this is the plain photo. Train it as the CUB attention page describes, then come back: "
                "this step will draw both transformers' boxes and crops.")
    st.page_link("pages/cub.py", label="CUB attention page", icon=":material/flutter_dash:")
    return {}


def step_dcn() -> dict[str, str]:
    st.header("9 · Deformable convolution, for contrast")
    st.markdown("Both learn **where to sample** from the data. A spatial transformer predicts a few global numbers "
                "(6 for affine) and warps the whole map once. A deformable convolution predicts an **offset for "
                "every tap of every kernel at every position** (2·k·k per position) and folds the sampling into "
                "the convolution.")
    st.latex(r"y(p_0) = \sum_{k} w_k \, x(p_0 + p_k + \Delta p_k)")
    found = _found()
    # a distortion with both a deformable CNN and a transformer model if there is one (same input size)
    entry = next((e for e in (tour.best_st_entry(found, (d,)) for d in ("rts", "r", "p", "e")
                              if reg.ready(reg.stem(f"mnist_{d}_dcn"))) if e is not None), None)
    entry = entry or tour.best_st_entry(found)
    c0, c1, c2 = st.columns([1, 1, 1])
    size = int(entry.meta["input_size"]) if entry is not None else 28
    yy = int(c0.slider("Output position: row", 0, size - 1, size // 2, key=_k("d_y")))
    xx = int(c1.slider("Output position: column", 0, size - 1, size // 2, key=_k("d_x")))
    td = common.test_digits(entry.task) if entry is not None else None
    x = td.x[0, 0].numpy() if td is not None else tour.place_digit(_digit(0)[0], size)
    left, right = st.columns(2, gap="large")
    with left:
        if entry is None:
            st.info("No spatial-transformer checkpoint yet: only the regular grid is shown.")
            st.plotly_chart(tour.taps_figure(x, tour.regular_taps((yy, xx), K_PLAIN), None, "",
                                             f"Plain {K_PLAIN}×{K_PLAIN} convolution"),
                            config=_cfg("taps-plain"), key="tour_fig_taps_st")
        else:
            model, _meta = common.load_checkpoint(str(entry.stem), entry.version)
            pred = insp.predict(model, x)[0]
            st_pts = tour.st_taps(pred.grid, (yy, xx), K_PLAIN)
            st.plotly_chart(tour.taps_figure(x, tour.regular_taps((yy, xx), K_PLAIN), st_pts,
                                             "taps through the transformer (one global θ)",
                                             f"STN ({entry.label}): a {K_PLAIN}×{K_PLAIN} kernel on V reads U here"),
                            config=_cfg("taps-stn"), key="tour_fig_taps_st")
            st.caption(f"Yellow: the regular taps of a {K_PLAIN}×{K_PLAIN} kernel (the CNN's first layer); "
                       "blue: the same taps "
                       "after the transformer's warp. "
                       "Every position gets the same warp.")
    with right:
        dist = entry.dist if entry is not None else "r"
        dcn_name = f"mnist_{dist}_dcn"
        done = False
        if reg.ready(reg.stem(dcn_name)):
            try:
                dmodel, _dm = common.load_checkpoint(str(reg.stem(dcn_name)), reg.version(reg.stem(dcn_name)))
                view = dfm.dcn_view(dmodel, np.asarray(x, dtype=np.float32))
                out = tour.nearest_output(dfm.output_centres(view, 0), (yy, xx))
                pts, regular = dfm.image_points(view, 0, out)
                k = int(round(np.sqrt(len(pts))))
                st.plotly_chart(tour.taps_figure(x, np.asarray(regular), np.asarray(pts), "deformed taps (DCN)",
                                                 f"Deformable conv, layer 1 ({k}×{k}): its own offsets here"),
                                config=_cfg("taps-dcn"), key="tour_fig_taps_dcn")
                sizes = ", ".join(f"{name} {float(np.mean(dfm.offset_magnitude_map(view, None, i))):.2f} px"
                                  for i, name in enumerate(dfm.layer_names(view)))
                st.caption("Blue: where the deformable kernel at this position reads (offsets predicted per position); "
                           "move the position to see them change. How far this trained DCN moves its taps on this "
                           f"digit (mean |Δp| over all positions and taps, in pixels of each layer's input): {sizes}. "
                           "The STN vs deformable conv page shows every layer.")
                done = True
            except (CheckpointError, OSError, ValueError) as e:
                st.error(f"The deformable CNN `checkpoints/{dcn_name}` could not be loaded: {e}")
        if not done:
            st.plotly_chart(tour.taps_figure(x, tour.regular_taps((yy, xx), K_PLAIN), None, "",
                                             f"Plain {K_PLAIN}×{K_PLAIN} convolution: the regular, un-deformed grid"),
                            config=_cfg("taps-regular"), key="tour_fig_taps_dcn")
            st.caption(f"The trained deformable CNN (`checkpoints/{dcn_name}`) is not here yet, so this shows the "
                       "regular k×k grid a plain convolution reads at every position. Train it with "
                       f"`python -m stn_core.train --task mnist-{dist} --model dcn --out checkpoints/{dcn_name}`.")
    st.page_link("pages/dcn.py", label="STN vs deformable conv page", icon=":material/scatter_plot:")
    return {}


STEP_FUNCS = (step_problem, step_module, step_grid, step_sampler, step_training, step_results, step_features, step_cub,
              step_dcn)

try:
    extra = STEP_FUNCS[step - 1]() or {}
except Exception as e:  # one broken step must not take the tour down
    st.error(f"Step {step} could not be shown ({type(e).__name__}: {e}). Use Next / Previous to continue.")
    extra = {}

st.divider()
b1, _b2, b3 = st.columns([1, 4, 1])
b1.button("◀ Previous", key=_k("prev2"), on_click=_go, args=(-1,), disabled=step == 1, width="stretch")
b3.button("Next ▶", key=_k("next2"), on_click=_go, args=(1,), disabled=step == tour.N_STEPS, type="primary",
          width="stretch")

ss[_k("saved")] = step
query = {"step": str(step), **extra}
ss[_k("last_query")] = query
common.sync_query_params(query)
common.copy_link(params=query)
if present:
    common.copy_link(where=st, params=query)
