"""Transform playground: warp an image with an affine, attention or projective θ.

URL path: ``/playground`` (the home page is ``/``). The view lives in the query string, so a
shared link reopens it; every parameter is optional and a bad one gives a warning, never a crash:

- ``image``: ``mnist-<i>`` (shipped MNIST test digit i), ``bird-<i>`` (shipped CUB bird i) or
  ``upload`` (uploads are not shared: a fresh session shows the default digit instead)
- ``kind``: ``affine`` | ``attention`` | ``projective``
- ``mode``: ``intuitive`` (θ composed from the controls) | ``raw`` (θ taken from ``theta``)
- ``rot`` (degrees), ``sx``, ``sy`` (scale; attention uses ``sx`` as s), ``shear``, ``tx``, ``ty``
  (normalised translation), ``px``, ``py`` (perspective, projective only): intuitive controls
- ``theta``: raw parameters, comma separated: 6 for affine (θ11,θ12,θ13,θ21,θ22,θ23),
  3 for attention (s,tx,ty), 8 for projective (h11,h12,h13,h21,h22,h23,h31,h32; h33 = 1)
- ``sampling``: ``bilinear`` | ``nearest``
- ``out``: ``same`` | ``64`` | ``128`` | ``256`` (output size; the fixed sizes are square)

Example: ``/playground?image=mnist-7&kind=affine&mode=raw&theta=0.5,0,0,0,0.5,0``.

Widget keys (for AppTest): ``pg_src``, ``pg_digit``, ``pg_bird``, ``pg_upload``, ``pg_kind``,
``pg_mode``, ``pg_rot`` … ``pg_py``, ``pg_raw_0`` … ``pg_raw_7``, ``pg_sampling``, ``pg_out``;
buttons ``preset_zoom``, ``preset_rotate45``, ``preset_mirror``, ``preset_tilt``, ``reset``;
export (GIF / MP4 from the identity to the current θ): ``pg_exp_frames``, ``pg_exp_side``, ``pg_exp_fps``,
``pg_exp_fmt``, button ``pg_exp_make``, then the download button ``pg_exp_download``.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import replace

import streamlit as st

from pages.lab import common, export_ui
from pages.lab import figures as viz
from pages.lab import playground as pg
from pages.shell.navigation import require_app

require_app()  # first: a run that bypassed app.py reruns through it


P = "pg_"
ss = st.session_state
MODE_LABELS = {"intuitive": "Intuitive controls", "raw": "Raw θ numbers"}
OUT_LABELS = {"same": "same as input", "64": "64 × 64", "128": "128 × 128", "256": "256 × 256"}


def _k(name: str) -> str:
    return P + name


def _raw_keys(kind: str) -> list[str]:
    return [_k(f"raw_{i}") for i in range(pg.n_params(kind))]


def _from_session(base: pg.PlaygroundState) -> pg.PlaygroundState:
    """The state the widgets hold now (values not in session state come from ``base``)."""
    kind = ss.get(_k("kind"), base.kind)
    kw = {n: float(ss.get(_k(n), getattr(base, n))) for n in pg.SLIDERS}
    fallback = base.raw if len(base.raw) == pg.n_params(kind) else pg.IDENTITY[kind]
    raw = tuple(float(ss.get(key, fallback[i])) for i, key in enumerate(_raw_keys(kind)))
    return replace(base, kind=kind, mode=ss.get(_k("mode"), base.mode), raw=raw,
                   sampling=ss.get(_k("sampling"), base.sampling), out=ss.get(_k("out"), base.out), **kw)


def _write_widgets(state: pg.PlaygroundState, everything: bool = False) -> None:
    """Overwrite the θ widgets (``everything``: also image and sampler widgets) with ``state``;
    only from callbacks or before the widgets exist in this run."""
    if everything:
        ss[_k("sampling")] = state.sampling
        ss[_k("out")] = state.out
        for name in ("src", "digit", "bird"):
            ss.pop(_k(name), None)
        common.seed_picker(P, state.image)
    ss[_k("kind")] = state.kind
    ss[_k("mode")] = state.mode
    for n in pg.SLIDERS:
        ss[_k(n)] = float(getattr(state, n))
    for key, v in zip(_raw_keys(state.kind), state.raw):
        ss[key] = float(v)


def _seed(state: pg.PlaygroundState) -> None:
    """Fill widget keys that are missing (first visit, or dropped after a visit to another page)."""
    for key, v in ((_k("kind"), state.kind), (_k("mode"), state.mode), (_k("sampling"), state.sampling),
                   (_k("out"), state.out)):
        ss.setdefault(key, v)
    for n in pg.SLIDERS:
        ss.setdefault(_k(n), float(getattr(state, n)))
    for key, v in zip(_raw_keys(state.kind), state.raw):
        ss.setdefault(key, float(v))
    common.seed_picker(P, state.image)


# --------------------------------------------------------------------------- callbacks

def _last_state() -> pg.PlaygroundState:
    return ss.get(_k("state"), pg.PlaygroundState())


def _on_preset(name: str) -> None:
    _write_widgets(pg.apply_preset(_from_session(_last_state()), name, ss.get(_k("in_size"))))


def _on_reset() -> None:
    _write_widgets(pg.identity_state(_from_session(_last_state())))


def _on_kind() -> None:
    old = _last_state()
    new_kind = ss[_k("kind")]
    old_raw = [float(ss.get(key, old.raw[i] if i < len(old.raw) else 0.0))
               for i, key in enumerate(_raw_keys(old.kind))]
    for key, v in zip(_raw_keys(new_kind), pg.convert_raw(old_raw, old.kind, new_kind)):
        ss[key] = float(v)


def _to_intuitive() -> None:
    ss[_k("mode")] = "intuitive"


def _to_raw() -> None:
    ss[_k("mode")] = "raw"


# --------------------------------------------------------------------------- state

_url = common.query_dict()
if _k("state") not in ss or (_url and _url != ss.get(_k("last_query"))):
    # First visit in this session, or arrival through a link with another view: the URL decides.
    state, url_msgs = pg.state_from_query(_url)
    key, more = common.clamp_image_key(state.image)
    state, url_msgs = replace(state, image=key), url_msgs + more
    if _k("state") in ss:
        _write_widgets(state, everything=True)
else:
    state, url_msgs = ss[_k("state")], []
_seed(state)

# --------------------------------------------------------------------------- sidebar controls

with st.sidebar:
    st.header("1 · Input image")
    image_key, U, caption, pick_msgs = common.image_picker(P)
    in_size = (int(U.shape[0]), int(U.shape[1]))
    ss[_k("in_size")] = in_size

    st.header("2 · Transformation θ")
    kind = st.radio("Kind", pg.KINDS, format_func=pg.KIND_LABELS.get, key=_k("kind"), on_change=_on_kind)
    st.caption("Presets")
    cols = st.columns(2)
    for i, (name, preset) in enumerate(pg.PRESETS.items()):
        cols[i % 2].button(preset.short, key=f"preset_{name}", help=preset.label, on_click=_on_preset, args=(name,),
                           width="stretch")
    st.button("Reset to identity", key="reset", on_click=_on_reset, width="stretch", type="primary")
    mode = st.radio("θ comes from", pg.MODES, format_func=MODE_LABELS.get, key=_k("mode"), horizontal=True,
                    help="Moving a slider switches to intuitive mode; typing a raw number switches to raw mode.")
    if mode == "raw":
        st.info("**Raw mode**: θ is the numbers under the figures. The sliders below are ignored; "
                "moving one switches back to intuitive mode and recomputes θ from the sliders.")
    for n in pg.KIND_SLIDERS[kind]:
        spec = pg.SLIDERS[n]
        label = "Scale s" if (kind == "attention" and n == "sx") else spec.label
        st.slider(label, min_value=spec.lo, max_value=spec.hi, step=spec.step, key=_k(n), help=spec.help,
                  on_change=_to_intuitive)

    st.header("3 · Sampler")
    st.radio("Kernel", pg.SAMPLINGS, key=_k("sampling"), horizontal=True,
             help="Bilinear: the paper's differentiable kernel. Nearest: integer kernel (no gradient w.r.t. θ).")
    st.selectbox("Output size H' × W'", pg.OUT_CHOICES, format_func=OUT_LABELS.get, key=_k("out"))

# --------------------------------------------------------------------------- compute

state = _from_session(replace(state, image=image_key))
if state.mode == "intuitive":
    state = replace(state, raw=pg.intuitive_to_params(state, in_size))
    for key, v in zip(_raw_keys(state.kind), state.raw):
        ss[key] = float(v)
params, check_msgs, ok = pg.resolve_params(state.kind, state.raw, ss.get(_k("last_good")))
if ok:
    ss[_k("last_good")] = (state.kind, params)
out_size = pg.output_size(state.out, in_size)
res = pg.warp(U, state.kind, params, out_size, state.sampling)

# --------------------------------------------------------------------------- main area

st.title("Transform playground")
st.markdown("θ maps every **output** pixel $(x^t, y^t)$ to a **source** point $(x^s, y^s)$ in the input; "
            "the sampler reads U there (backward warping). Left: where the output's pixels are read from. "
            "Right: what comes out.")
common.show_messages(url_msgs + pick_msgs + check_msgs + res.messages)
if state.mode == "intuitive":
    st.markdown(":blue-badge[Intuitive mode] θ is composed from the sliders in the sidebar; "
                "the raw numbers below follow them. Type a raw number to switch to raw mode.")
else:
    st.markdown(":orange-badge[Raw mode] θ is exactly the numbers you typed below; the sliders are ignored "
                "until you move one.")

fig_in = viz.input_figure(U, res.grid, pg.outline(state.kind, params), res.valid,
                          title=f"Input U ({in_size[0]}×{in_size[1]}) with sampling grid T<sub>θ</sub>(G)")
fig_out = viz.output_figure(res.output, res.valid, title=f"Output V ({out_size[0]}×{out_size[1]}, {state.sampling})")
fig_out.update_layout(height=max(fig_in.layout.height, fig_out.layout.height))
fig_in.update_layout(height=fig_out.layout.height)  # side by side: same height
c1, c2 = st.columns(2, gap="large")
with c1:
    st.plotly_chart(fig_in, config=common.plot_config("playground-input"), key="fig_input")
    st.caption(caption)
with c2:
    st.plotly_chart(fig_out, config=common.plot_config("playground-output"), key="fig_output")
    st.caption("The faint lines are the regular grid G; each crossing is read from the matching crossing on the left.")

c3, c4 = st.columns([1, 1], gap="large")
with c3:
    st.subheader("θ now")
    st.latex(pg.theta_latex(state.kind, state.raw))
    st.latex(pg.KIND_FORMULAS[state.kind])
    st.caption(f"det = {pg.determinant(state.kind, state.raw):.4g}  ·  coordinates normalised to [-1, 1], "
               "align_corners=False")
with c4:
    st.subheader("Raw parameters")
    names = pg.RAW_NAMES[state.kind]
    keys = _raw_keys(state.kind)
    rows = [[0, 1, 2]] if state.kind == "attention" else [[0, 1, 2], [3, 4, 5]] + (
        [[6, 7]] if state.kind == "projective" else [])
    for row in rows:
        rc = st.columns(3)
        for j, i in enumerate(row):
            rc[j].number_input(names[i], key=keys[i], step=0.01, format="%.4f", on_change=_to_raw)
        if state.kind == "projective" and row == [6, 7]:
            rc[2].number_input("h33 (fixed)", value=1.0, disabled=True, format="%.4f", key="pg_h33")

ss[_k("state")] = state
ss[_k("last_query")] = pg.state_to_query(state)
common.sync_query_params(ss[_k("last_query")])
with c3:
    st.markdown(f"[Compare nearest and bilinear sampling for this θ](/sampler?"
                f"{urllib.parse.urlencode(ss[_k('last_query')])})")
export_ui.warp_export(P, U, state.kind, params, "playground-warp",
                      controls=state.intuitive() if state.mode == "intuitive" and ok else None,
                      out_size=out_size, sampling=state.sampling, label="identity → the current θ")
common.copy_link(params=ss[_k("last_query")])
