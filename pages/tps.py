"""Thin-plate spline: drag the K control points on the input and watch the warp.

URL path: ``/tps``. The dragged points are ``ctrl_in``: where each point of the fixed output
lattice (3×3, 4×4 or 5×5) samples the input; ``V = sample(U, tps_grid(ctrl_in, out_size, reg=reg))``.
The bottom row shows the best affine map (least squares ``ctrl_out → ctrl_in``) for the same points.

Widget keys (for AppTest): ``tps_src``, ``tps_digit``, ``tps_bird``, ``tps_upload`` (image picker),
``tps_side`` (lattice side), ``tps_reg``, ``tps_out``, ``tps_pick``, ``tps_px``, ``tps_py`` (move a
point by numbers); buttons ``tps_preset_bend`` / ``_twist`` / ``_pinch`` / ``_random``, ``tps_undo``,
``tps_reset``, ``tps_move``. The drag component has key ``tps_editor``; the editor state
(:class:`pages.lab.tps_editor.EditorState`) is ``st.session_state["tps_state"]``.
"""

from __future__ import annotations

import hashlib

import streamlit as st

from components.point_drag import point_drag, read_drop
from pages.lab import common
from pages.lab import figures as viz
from pages.lab import links
from pages.lab import playground as pg
from pages.lab import tps_editor as te
from pages.shell.navigation import require_app

require_app()  # first: a run that bypassed app.py reruns through it


P = "tps_"
ss = st.session_state
OUT_LABELS = {"same": "same as input", "64": "64 × 64", "128": "128 × 128", "256": "256 × 256"}
SIDE_LABELS = {s: f"{s} × {s} = {s * s} points" for s in te.LATTICE_SIDES}
EDITOR_KEY = "tps_editor"


def _k(name: str) -> str:
    return P + name


def _state() -> te.EditorState:
    return ss.get(_k("state")) or te.EditorState()


def _set_state(new: te.EditorState, messages: list[pg.Message] | None = None) -> None:
    """Store a new editor state (from a callback) and bring the dependent widgets in line."""
    ss[_k("state")] = new
    ss[_k("side")] = new.side
    ss[_k("cb_msgs")] = list(messages or [])
    _sync_fine_tune(new)


def _sync_fine_tune(state: te.EditorState) -> None:
    pick = int(ss.get(_k("pick"), 1))
    if not 1 <= pick <= state.k:
        pick = 1
    ss[_k("pick")] = pick
    x, y = state.points[pick - 1]
    ss[_k("px")] = float(x)
    ss[_k("py")] = float(y)


# --------------------------------------------------------------------------- callbacks

def _on_drop() -> None:
    state = _state()
    pts = read_drop(EDITOR_KEY, state.k)
    if pts is None:
        ss[_k("cb_msgs")] = [pg.Message("error", "The dragged points could not be read; the last placement is kept.")]
        return
    clean, msgs = te.sanitize_points(pts, state.k)
    if clean is None:
        ss[_k("cb_msgs")] = msgs
        return
    _set_state(te.with_points(state, clean), msgs)


def _on_side() -> None:
    _set_state(te.reset(_state(), int(ss[_k("side")])))


def _on_preset(name: str) -> None:
    _set_state(te.apply_preset(_state(), name))


def _on_undo() -> None:
    _set_state(te.undo(_state()))


def _on_reset() -> None:
    _set_state(te.reset(_state()))


def _on_pick() -> None:
    _sync_fine_tune(_state())


def _on_move() -> None:
    state = _state()
    pick = int(ss.get(_k("pick"), 1))
    try:
        new = te.move_point(state, pick - 1, float(ss[_k("px")]), float(ss[_k("py")]))
    except (ValueError, KeyError) as e:
        ss[_k("cb_msgs")] = [pg.Message("error", f"Could not move point {pick}: {e}.")]
        return
    _set_state(new)


# --------------------------------------------------------------------------- state

def _from_link(q: dict[str, str]) -> list[pg.Message]:
    """Apply a shared link (``image``, ``pts`` = x1,y1,x2,y2,… of K = 9, 16 or 25 points, ``reg``, ``out``)
    to the session; unusable parts are ignored with a warning."""
    msgs: list[pg.Message] = []
    if "pts" in q:
        try:
            vals = [float(v) for v in q["pts"].split(",")]
            pairs = [vals[i:i + 2] for i in range(0, len(vals), 2)]
            if len(vals) % 2 or len(pairs) not in [n * n for n in te.LATTICE_SIDES]:
                raise ValueError
            clean, bad = te.sanitize_points(pairs, len(pairs))
        except ValueError:
            clean, bad = None, []
        if clean is None:
            msgs.append(pg.Message("warning", f"Link parameter pts={q['pts'][:40]!r} is not 9, 16 or 25 pairs of "
                                              "numbers; starting from the identity lattice."))
        else:
            side = te.side_of(clean)
            ss[_k("state")] = te.with_points(te.EditorState(points=te.lattice_points(side)), clean)
            ss[_k("side")] = side
            ss.pop(_k("pick"), None)
        msgs += [m for m in bad if m.level != "error"]
    settings = dict(ss.get(_k("settings"), {"reg": 0.0, "out": "same", "show_affine": False}))
    reg = links.parse_float(q["reg"]) if "reg" in q else None
    if reg in te.REG_CHOICES:
        settings["reg"] = reg
        ss[_k("reg")] = reg
    elif "reg" in q:
        msgs.append(pg.Message("warning", f"Link parameter reg={q['reg'][:20]!r} is not one of "
                                          f"{', '.join(f'{v:g}' for v in te.REG_CHOICES)}; using {settings['reg']:g}."))
    if q.get("out") in OUT_LABELS:
        settings["out"] = q["out"]
        ss[_k("out")] = q["out"]
    ss[_k("settings")] = settings
    if "image" in q:
        key, more = common.clamp_image_key(q["image"])
        msgs += more
        for name in ("src", "digit", "bird"):
            ss.pop(_k(name), None)
        common.seed_picker(P, key)
    return msgs


_url = common.query_dict()
link_msgs: list[pg.Message] = []
if _url and _url != ss.get(_k("last_query")):
    link_msgs = _from_link(_url)
if _k("state") not in ss:
    ss[_k("state")] = te.EditorState()
state: te.EditorState = ss[_k("state")]
# Widget values are dropped while another page is shown: seed them from the last run's settings.
_settings = ss.get(_k("settings"), {"reg": 0.0, "out": "same", "show_affine": False})
ss.setdefault(_k("side"), state.side)
for _name, _value in _settings.items():
    ss.setdefault(_k(_name), _value)
if _k("pick") not in ss or _k("px") not in ss:
    _sync_fine_tune(state)
cb_msgs = ss.pop(_k("cb_msgs"), [])

# --------------------------------------------------------------------------- sidebar

with st.sidebar:
    st.header("1 · Input image")
    image_key, U, caption, pick_msgs = common.image_picker(P)
    in_size = (int(U.shape[0]), int(U.shape[1]))

    st.header("2 · Control points")
    st.radio("Lattice", te.LATTICE_SIDES, format_func=SIDE_LABELS.get, key=_k("side"), on_change=_on_side,
             help="Changing the lattice starts again from the identity (Undo brings the old points back).")
    st.caption("Presets")
    cols = st.columns(2)
    for i, (name, label) in enumerate(te.PRESETS.items()):
        cols[i % 2].button(name.capitalize(), key=f"tps_preset_{name}", help=label, on_click=_on_preset,
                           args=(name,), width="stretch")
    cols = st.columns(2)
    cols[0].button("Undo", key=_k("undo"), on_click=_on_undo, disabled=not state.can_undo(), width="stretch",
                   help="Go back one step (drags, presets, resets, lattice changes).")
    cols[1].button("Reset", key=_k("reset"), on_click=_on_reset, width="stretch", type="primary",
                   help="Put every point back on the lattice (the identity warp).")

    st.header("3 · Spline and output")
    st.select_slider("Regularisation (reg)", options=te.REG_CHOICES, key=_k("reg"),
                     format_func=lambda v: "0 (interpolate)" if v == 0 else f"{v:g}",
                     help="reg > 0 adds reg·I to the spline's kernel matrix: the spline no longer passes "
                          "exactly through your points (white dots show where they really land) and "
                          "bends less; very large reg gives the best affine fit.")
    st.selectbox("Output size H' × W'", list(OUT_LABELS), format_func=OUT_LABELS.get, key=_k("out"))
    show_affine = st.checkbox("Show the affine fit's points on the input", key=_k("show_affine"),
                              help="Red diamonds: where the best affine map sends the lattice points.")

# --------------------------------------------------------------------------- compute

reg = float(ss[_k("reg")])
ss[_k("settings")] = {"reg": reg, "out": ss[_k("out")], "show_affine": bool(show_affine)}
out_size = pg.output_size(ss[_k("out")], in_size)
res = te.compute(U, state.points, out_size, reg=reg)

# --------------------------------------------------------------------------- main area

st.title("Thin-plate spline")
st.markdown("Drag the **yellow points** on the input. Point *k* is where output lattice point *k* reads from "
            "(θ = the K positions, 2K numbers); the spline carries every other output pixel along smoothly. "
            "The bottom row does the same with the **best affine map**: the gaps are what 6 numbers cannot do.")
common.show_messages(link_msgs + cb_msgs + pick_msgs + res.messages)

marks = []
if reg > 0 and res.ok:
    marks.append({"kind": "landed", "points": res.landed.tolist()})
if show_affine:
    marks.append({"kind": "affine", "points": res.affine.mapped.tolist()})
version = hashlib.blake2b(repr((state.points, reg, image_key, out_size, show_affine)).encode(),
                          digest_size=6).hexdigest()

c1, c2 = st.columns(2, gap="large")
with c1:
    st.subheader("Input U: drag the points")
    try:
        point_drag(viz.display_uri(U)[0], in_size, state.points, key=EDITOR_KEY, on_drop=_on_drop,
                   side=state.side, lines=te.grid_lines(res.grid) if res.ok else [], marks=marks,
                   view=te.view_extent(state.points), version=version, max_width=620,
                   radius_px=te.handle_radius(state.side))
    except Exception as e:  # the editor must never take the page down
        st.error(f"The point editor could not be shown ({type(e).__name__}: {e}). "
                 "Use “Move a point by numbers” below.")
    st.caption(f"{caption}. Cyan: the sampling grid T<sub>θ</sub>(G) of the spline"
               + ("; white dots: where the points really land (reg > 0)" if marks and reg > 0 else "")
               + ". The output updates when you release the mouse.", unsafe_allow_html=True)
with c2:
    fig_tps = viz.lattice_output_figure(res.output, res.ctrl_out,
                                        title=f"Output V: thin-plate spline ({out_size[0]}×{out_size[1]})")
    st.plotly_chart(fig_tps, config=common.plot_config("tps-output"), key="tps_fig_output")
    st.caption("Numbered: the fixed output lattice. Every output pixel is read from the matching point of the "
               "cyan grid on the left.")

c3, c4 = st.columns(2, gap="large")
fig_fit_in = viz.affine_fit_figure(U, res.affine_grid, res.affine.mapped, state.points,
                                   title="Best affine fit (least squares) on U")
fig_fit_out = viz.lattice_output_figure(res.affine_output, res.ctrl_out,
                                        title=f"Output V: best affine fit ({out_size[0]}×{out_size[1]})")
fig_fit_out.update_layout(height=max(fig_fit_in.layout.height, fig_fit_out.layout.height))
fig_fit_in.update_layout(height=fig_fit_out.layout.height)
with c3:
    st.plotly_chart(fig_fit_in, config=common.plot_config("tps-affine-fit-input"), key="tps_fig_fit_input")
    st.caption("Red lines: how far each of your points is from where the best affine map sends its lattice point.")
with c4:
    st.plotly_chart(fig_fit_out, config=common.plot_config("tps-affine-fit-output"), key="tps_fig_fit_output")

st.subheader("The spline's parameters")
m1, m2, m3 = st.columns(3)
m1.metric("Bending energy trace(WᵀKW)", te.fmt(res.bending_energy),
          help="0 for any affine placement; grows with how much the spline has to bend.")
m2.metric("Affine fit error (RMS)", te.fmt(res.affine.rms),
          help="Root-mean-square distance (normalised units) between your points and where the best affine "
               "map puts them: 0 means an affine θ would do the same job.")
m3.metric("Folded part of V", f"{100 * min(res.folds.positive, res.folds.negative):.0f}%",
          help="Share of the output where the Jacobian determinant of the warp has the minority sign: "
               "there the picture is mirrored (folded over). 0% means no fold.")
st.latex(r"f(x, y) = \underbrace{a_1 + a_x\,x + a_y\,y}_{\text{affine part } A\ (3\times 2)}"
         r" + \sum_{k=1}^{K} w_k\, U(\lVert (x, y) - c_k \rVert),\qquad U(r) = r^2 \log r^2")
a_table, w_table = te.parameter_tables(res.a, res.w)
t1, t2 = st.columns([1, 1.3])
with t1:
    st.markdown("**Affine part A** (rows: 1, x<sup>t</sup>, y<sup>t</sup>)", unsafe_allow_html=True)
    st.markdown(te.markdown_table(a_table))
with t2:
    st.markdown(f"**Non-rigid weights W** ({state.k} × 2; each column sums to 0)")
    with st.container(height=min(45 + 36 * state.k, 330), border=False):  # scrolls past 8 points
        st.markdown(te.markdown_table(w_table))
st.caption(te.state_summary(state) + f"; reg = {reg:g}.")

with st.expander("Move a point by numbers (keyboard alternative to dragging)"):
    f1, f2, f3, f4 = st.columns([1, 1, 1, 1])
    f1.selectbox("Point", list(range(1, state.k + 1)), key=_k("pick"), on_change=_on_pick)
    f2.number_input("x (−1 left … 1 right)", min_value=-te.POINT_LIMIT, max_value=te.POINT_LIMIT, step=0.05,
                    format="%.3f", key=_k("px"))
    f3.number_input("y (−1 top … 1 bottom)", min_value=-te.POINT_LIMIT, max_value=te.POINT_LIMIT, step=0.05,
                    format="%.3f", key=_k("py"))
    f4.button("Move the point", key=_k("move"), on_click=_on_move, width="stretch")

# --------------------------------------------------------------------------- URL

_query = {"image": image_key, "pts": ",".join(f"{v:.4g}" for pt in state.points for v in pt), "reg": f"{reg:g}",
          "out": str(ss[_k("out")])}
ss[_k("last_query")] = _query
common.sync_query_params(_query)
common.copy_link(params=_query)
