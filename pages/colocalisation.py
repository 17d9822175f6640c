"""Co-localisation without labels (paper appendix A.2, its Figure 4): windows that find a digit class in a set
of images, from a triplet loss on a frozen CNN's features, with no label and no box.

URL path: ``/colocalisation``; query parameters ``digit`` (0–9), ``clutter`` (1: TC) and ``seed``. Data:
the shipped test digits of the class (about 50; the paper uses 100) on 84×84 canvases. Encoder: the shipped
R CNN (``checkpoints/mnist_r_cnn``). Logic in :mod:`pages.lab.colocalisation` and
:mod:`stn_core.colocalisation`.

Widget keys (for AppTest): ``co_digit``, ``co_clutter``, ``co_seed``; buttons ``co_run`` (the search), ``co_sgd``
(the paper's SGD on a localisation net, live), ``co_basin`` (the probe: windows started near their digits) and
``co_tiled`` (SGD from a grid of starts per image, live). Below: the shipped localisation nets (``checkpoints/coloc_t``,
``coloc_tc``: one per class) on the same canvases.
"""

from __future__ import annotations

import streamlit as st
import torch

from pages.lab import colocalisation as cl
from pages.lab import common, links
from pages.shell.navigation import require_app
from stn_core import colocalisation as C
from stn_core import registry as reg
from stn_core.checkpoints import CheckpointError, checkpoint_paths
from stn_core.data.samples import load_mnist_sample

require_app()  # first: a run that bypassed app.py reruns through it

P = "co_"
ss = st.session_state

if P + "init" not in ss:
    q = common.query_dict()
    for name, default, hi in (("digit", 3, 9), ("seed", 0, 10**6)):
        v = links.parse_int(q[name], 0, hi) if q.get(name) else default
        if v is None:
            st.warning(f"Ignored {name}={str(q[name])[:20]!r}: choose a whole number from 0 to {hi}.")
            v = default
        ss[P + name] = v
    ss[P + "clutter"] = links.parse_flag(q.get("clutter", ""))
    ss[P + "init"] = True

st.title("Co-localisation without labels")
st.markdown(
    "The paper's appendix A.2: give a spatial transformer a set of images that all show a digit of one class "
    "somewhere, and nothing else — no label, no box. It crops a 28×28 window of every image, and a triplet loss on "
    "the features of a frozen digit classifier makes the crops of two different images alike and each crop unlike "
    "a random crop of its own image. The only thing the images share is the digit, so the windows go to the "
    "digits. Here the loss is minimised by **coordinate descent over windows** (in each sweep every image takes "
    "the window with the lowest loss against the others' windows of the sweep before): the paper's SGD on a "
    "localisation net got trapped on "
    "background in our runs (`stn_core/colocalisation.py` says what was tried), while SGD from a grid of starts per "
    "image finds the digits too (further down). A localisation net *taught* the "
    "windows the search finds then predicts windows for images it never saw, and SGD on the paper's loss keeps "
    "them there for most classes (the results name those it moved off). Results for every class, the search and "
    "the taught net on held-out images: "
    "`results/colocalisation.md`.")

sb = st.sidebar
sb.subheader("The set")
sb.selectbox("Digit class", list(range(10)), key=P + "digit")
sb.toggle("Clutter (16 pieces of other digits)", key=P + "clutter")
sb.number_input("Placement seed", 0, 10**6, step=1, key=P + "seed")
state = {"digit": str(ss[P + "digit"]), "clutter": "1" if ss[P + "clutter"] else "0", "seed": str(ss[P + "seed"])}
common.sync_query_params(state)
common.copy_link(sb, state)

try:  # a missing or damaged shipped sample (DataError) or too few digits of the class
    images, labels = load_mnist_sample()
    data = cl.make_set(images, labels, int(ss[P + "digit"]), bool(ss[P + "clutter"]), int(ss[P + "seed"]))
except ValueError as e:
    st.error(str(e))
    st.stop()
stem = reg.checkpoint_dir() / "mnist_r_cnn"
try:
    encoder = common.load_checkpoint(str(stem), reg.version(stem))[0].classifier
except CheckpointError as e:
    st.error(f"The encoder (the R CNN, `{stem}`) cannot be loaded: {e}")
    st.stop()

n = data.x.shape[0]
st.caption(f"{n} shipped test digits of class {ss[P + 'digit']} (the paper uses 100), "
           + ("with" if ss[P + "clutter"] else "without") + " clutter. Orange: the window; thin green: the digit's "
           "true box, drawn for you only — the method never sees it.")
key = (int(ss[P + "digit"]), bool(ss[P + "clutter"]), int(ss[P + "seed"]))
done = ss.get(P + "result")
st.button("Run the search", key=P + "run", type="primary", icon=":material/play_arrow:",
          on_click=lambda: ss.__setitem__(P + "want_run", True))
run = ss.pop(P + "want_run", False)
cols = st.columns(cl.TRACK)
slots = [c.empty() for c in cols]
chart = st.empty()
status = st.empty()


def _show(sweep: int, params: torch.Tensor, res: C.CoLocSearch) -> None:
    for slot, pic in zip(slots, cl.pictures(data, params)):
        slot.image(pic, width="stretch")
    chart.plotly_chart(cl.loss_figure(res.losses, res.correct), width="stretch", key=f"{P}loss_{sweep}")
    shown = f"{100 * res.correct[-1]:.0f} % of the {n} windows correct" if res.correct else "all windows start centred"
    status.markdown(f"**Sweep {sweep}**: {shown}.")


if run:
    with st.spinner("Computing every window's features …"):
        res = C.search(data, encoder, iters=6, callback=_show)
    ss[P + "result"] = (key, res)
elif done is not None and done[0] == key:
    res = done[1]
    _show(len(res.losses) - 1, res.params, res)
else:
    start = C.candidate_windows()
    for slot, pic in zip(slots, cl.pictures(data, start[[len(start) // 2] * n])):
        slot.image(pic, width="stretch")
    status.markdown("Press **Run the search**: about ten seconds on this CPU.")

# ---------------------------------------------------------------------------- the paper's SGD, live
st.subheader("The paper's optimiser: SGD on a localisation net, from scratch")
cfg = cl.SGD_CONFIG
st.markdown(
    "The paper trains the localisation net (conv 8 × 9×9 stride 4, pool, FC 8, FC 8, FC 3) by SGD on the same "
    f"loss, every window starting centred at half the canvas. Run it here ({cfg.steps} steps of {cfg.batch} images, "
    "SGD with momentum, about fifteen seconds) and watch the windows: in our runs they end away from the digits, "
    "on empty background where every crop looks alike, while the loss still falls — the trap that made us search "
    "instead. Every class, with and without clutter: `results/colocalisation-sgd.md`; the variants tried: "
    "`stn_core/colocalisation.py`.")


def _live_area(label: str, name: str) -> tuple[list, object, object]:
    """A run button (it sets ``want_<name>``), then the places a live run draws into: one per tracked image, a
    chart and a status line."""
    st.button(label, key=P + name, icon=":material/play_arrow:",
              on_click=lambda: ss.__setitem__(P + "want_" + name, True))
    return [c.empty() for c in st.columns(cl.TRACK)], st.empty(), st.empty()


sgd_slots, sgd_chart, sgd_status = _live_area("Run SGD", "sgd")


def _show_sgd(step: int, run: C.CoLocRun, lead: tuple[float, int] | None = None) -> None:
    """Draw the run's windows, its loss/correct figure and the status line (with the start's lead once known)."""
    for slot, pic in zip(sgd_slots, cl.box_pictures(data, run.history_boxes[-1])):
        slot.image(pic, width="stretch")
    correct = run.history_correct(data)
    sgd_chart.plotly_chart(cl.sgd_figure(run, correct), width="stretch", key=f"{P}sgd_loss_{step}")
    _sgd_status(step, correct[-1], lead)


def _sgd_status(step: int, correct: float, lead: tuple[float, int] | None = None) -> None:
    sgd_status.markdown(f"**SGD step {step}**: {100 * correct:.0f} % of the {n} windows correct."
                        + (" " + cl.lead_sentence(lead, n) if lead is not None else ""))


done_sgd = ss.get(P + "sgd_result")
if ss.pop(P + "want_sgd", False):
    with st.spinner("SGD on the localisation net …"):
        sgd_run = cl.run_sgd(data, encoder, callback=_show_sgd)  # draws every history point as it goes
        ss[P + "sgd_result"] = (key, sgd_run, cl.start_lead(data, encoder))
    _sgd_status(sgd_run.history_steps[-1], sgd_run.history_correct(data)[-1], ss[P + "sgd_result"][2])
elif done_sgd is not None and done_sgd[0] == key:
    _show_sgd(done_sgd[1].history_steps[-1], done_sgd[1], done_sgd[2])

# ---------------------------------------------------------------------------- why SGD gets trapped: the basin
st.markdown(
    "**Why it gets trapped.** For most classes the same loss does pull windows back to their digits when *every* "
    f"window starts near its own digit. Press the button to start each of the {n} windows {cl.BASIN_OFFSET:g} px "
    f"off its digit in a random direction and run SGD on the windows themselves (no localisation net; "
    f"{cl.BASIN_STEPS} steps, about a minute on this CPU). The start is placed with the true boxes, so this probes "
    "the loss — it is not a way to localise. From SGD's shared start above, the windows begin outside this pull. "
    "Every class: the last table of `results/colocalisation-sgd.md`.")
basin_slots, basin_chart, basin_status = _live_area("Start near the digits", "basin")


def _show_basin(trace: list[tuple[int, torch.Tensor, float]]) -> None:
    """Draw the probe's latest windows, its loss/correct figure and the status line from its trace so far."""
    step, windows, _ = trace[-1]
    for slot, pic in zip(basin_slots, cl.pictures(data, windows)):
        slot.image(pic, width="stretch")
    correct = [C.share_correct(C.iou(C.boxes_of(w), data.boxes)) for _, w, _ in trace]
    if len(trace) > 1:  # trace[0] is the start, before any step: no loss yet
        basin_chart.plotly_chart(cl.basin_figure([s_ for s_, _, _ in trace[1:]], [v for _, _, v in trace[1:]],
                                                 correct[1:]), width="stretch", key=f"{P}basin_{step}")
    basin_status.markdown(f"**Step {step}**: {100 * correct[-1]:.0f} % of the {n} windows correct "
                          f"(at the start {100 * correct[0]:.0f} %).")


done_basin = ss.get(P + "basin_result")
if ss.pop(P + "want_basin", False):
    trace: list[tuple[int, torch.Tensor, float]] = []
    with st.spinner("SGD on windows started near their digits …"):
        cl.run_basin(data, encoder, callback=lambda step, w, loss: (trace.append((step, w, loss)), _show_basin(trace)))
    ss[P + "basin_result"] = (key, trace)
elif done_basin is not None and done_basin[0] == key:
    _show_basin(done_basin[1])

# ---------------------------------------------------------------------------- SGD from many starts, no boxes
st.subheader(f"SGD from {C.TILES ** 2} starts per image: no box needed")
st.markdown(
    f"So give SGD starts near the digits without knowing where they are: every image gets {C.TILES} × {C.TILES} "
    "windows spread over its canvas (thin), each moved by SGD on the same loss against the other images' best "
    "windows; every image's best window (orange) is its one of lowest loss, and each image keeps fewer of its "
    f"windows at each phase ({' → '.join(str(k) for k, _ in cl.TILED_SCHEDULE)}) until one is left "
    f"({cl.TILED_SCHEDULE[-1][1]} steps, one to two minutes on this CPU). No label and no box is used: the green "
    "boxes are drawn for you only. These are windows per image, not a localisation net. Every class: "
    "`results/colocalisation-tiled.md`.")
tiled_slots, tiled_chart, tiled_status = _live_area(f"Run SGD from {C.TILES ** 2} starts", "tiled")


def _show_tiled(trace: list[tuple[int, torch.Tensor, torch.Tensor, float]]) -> None:
    """Draw the run's latest kept windows, its loss/correct figure and the status line from its trace so far."""
    step, windows, best, _ = trace[-1]
    for slot, pic in zip(tiled_slots, cl.tiled_pictures(data, windows, best)):
        slot.image(pic, width="stretch")
    correct = [C.share_correct(C.iou(C.boxes_of(w[torch.arange(n), b]), data.boxes)) for _, w, b, _ in trace]
    if len(trace) > 1:  # trace[0] is the start, before any step: no loss yet
        tiled_chart.plotly_chart(cl.tiled_figure([t[0] for t in trace[1:]], [t[3] for t in trace[1:]], correct[1:],
                                                 cl.TILED_SCHEDULE),
                                 width="stretch", key=f"{P}tiled_{step}")
    tiled_status.markdown(f"**Step {step}**, {windows.shape[1]} window(s) kept per image: the best window is "
                          f"correct for {100 * correct[-1]:.0f} % of the {n} images.")


done_tiled = ss.get(P + "tiled_result")
if ss.pop(P + "want_tiled", False):
    tiled_trace: list[tuple[int, torch.Tensor, torch.Tensor, float]] = []
    with st.spinner(f"SGD from {C.TILES ** 2} starts per image …"):
        cl.run_tiled(data, encoder, callback=lambda *a: (tiled_trace.append(a), _show_tiled(tiled_trace)))
    ss[P + "tiled_result"] = (key, tiled_trace)
elif done_tiled is not None and done_tiled[0] == key:
    _show_tiled(done_tiled[1])

# ---------------------------------------------------------------------------- the shipped localisation nets
st.subheader("A localisation net that learned this class")
bank_stem = reg.checkpoint_dir() / cl.bank_stem(bool(ss[P + "clutter"]))
if not checkpoint_paths(bank_stem)["meta"].is_file():
    st.info(f"No trained nets here yet (`{bank_stem.name}`): `python scripts/colocalisation.py --save checkpoints` "
            "trains them (about half an hour on a 2-core CPU).")
else:
    try:
        bank, bank_meta = common.load_checkpoint(str(bank_stem), reg.version(bank_stem))
        params, right = cl.bank_windows(bank, data, int(ss[P + "digit"]))
    except (CheckpointError, ValueError) as e:
        st.error(f"The shipped localisation nets (`{bank_stem.name}`) cannot be used: {e}")
    else:
        per = ((bank_meta.get("extra") or {}).get("per_class") or {}).get(str(ss[P + "digit"])) or {}
        bcols = st.columns(cl.TRACK)
        for c, pic in zip(bcols, cl.pictures(data, params)):
            c.image(pic, width="stretch")
        held = per.get("sgd_held_out")
        st.markdown(
            f"The spatial transformer's own localisation net for this class, in one forward pass: **{100 * right:.0f} %** "
            f"of these {n} windows are correct" + (f"; on {C.N_IMAGES} held-out canvases of the class it never saw, "
                                                  f"**{100 * held:.0f} %**" if isinstance(held, (int, float)) else "")
            + ".")
        st.caption(
            "How it learned, with no label and no box: it was taught the windows the search finds on the class's "
            f"first {C.N_IMAGES} MNIST test digits, then trained further by SGD on the paper's triplet loss "
            "(the paper's SGD from scratch got trapped on background here). The shipped digits above are among "
            "those 100, at other places when the placement seed is not 0. "
            f"`{bank_meta.get('command', 'python scripts/colocalisation.py --save checkpoints')}`; every class: "
            "`results/colocalisation.md`.")
