"""Live training: a small ST-CNN learns RTS-distorted MNIST on this CPU while you watch.

URL path ``/live``; query parameters ``compare`` (1: also train a plain CNN), ``seed`` and
``transform``. The training runs in background threads owned by this browser session
(:class:`stn_core.train.live.LiveRun` in ``st.session_state["lv_run"]``); the live view is a
fragment that redraws every second while the run trains. The run is ``stn_core.train.live``; its pictures ``pages.lab.live``.

Widget keys (for AppTest): ``lv_compare``, ``lv_seed``, ``lv_transform``; buttons ``lv_start``,
``lv_pause``, ``lv_resume``, ``lv_reset``; saving: ``lv_name``, ``lv_save``, ``lv_overwrite``,
``lv_cancel``; downloads (while still): ``lv_dl_in``, ``lv_dl_out``, ``lv_dl_gif`` (training replay).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pages.lab import common
from pages.lab import figures as viz
from pages.lab import links, live
from pages.shell.navigation import require_app
from stn_core import registry as reg
from stn_core.train import live as live_train
from stn_core.train import live_state

require_app()  # first: a run that bypassed app.py reruns through it


ss = st.session_state
RUN = "lv_run"
MSG = "lv_msg"  # (level, text) shown once after a button
PENDING = "lv_pending"  # a save waiting for the overwrite confirmation
REFRESH_S = 1.0
TRANSFORMS = {"affine": "affine (6 parameters)", "projective": "projective (8)", "tps": "thin-plate spline (16 points)"}


# --------------------------------------------------------------------------- state

def _settings_from_url() -> None:
    q = common.query_dict()
    if "lv_compare" not in ss:
        ss["lv_compare"] = q.get("compare", "0") == "1"
    if "lv_seed" not in ss:
        ss["lv_seed"] = min(9999, max(0, links.parse_int(q.get("seed", "0")) or 0))
    if "lv_transform" not in ss:
        ss["lv_transform"] = q.get("transform", "affine") if q.get("transform") in TRANSFORMS else "affine"


def _config() -> live_state.LiveConfig:
    return live_state.LiveConfig(transform=ss["lv_transform"], seed=int(ss["lv_seed"]), compare=bool(ss["lv_compare"]))


def _run() -> live_train.LiveRun:
    run = ss.get(RUN)
    if run is None:
        run = ss[RUN] = live_train.LiveRun(_config())
    return run


# --------------------------------------------------------------------------- callbacks

def _start() -> None:
    run = _run()
    if run.state == "ready":
        run.reset(_config())  # the sidebar settings apply to a fresh run
    try:
        run.start()
    except live_state.LiveBusyError as e:
        ss[MSG] = ("warning", str(e))


def _pause() -> None:
    _run().pause()


def _resume() -> None:
    try:
        _run().resume()
    except live_state.LiveBusyError as e:
        ss[MSG] = ("warning", str(e))


def _reset() -> None:
    _run().reset(_config())
    ss.pop(PENDING, None)


def _save(overwrite: bool = False) -> None:
    run = _run()
    try:
        stem = reg.live_stem(ss.get("lv_name", ""))
    except ValueError as e:
        ss[MSG] = ("error", str(e))
        return
    if reg.checkpoint_exists(stem) and not overwrite:
        ss[PENDING] = str(stem)
        return
    ss.pop(PENDING, None)
    saved = []
    try:
        lanes = len(run.snapshot().lanes)
        for lane in range(lanes):
            target = stem if lane == 0 else stem.with_name(stem.name + "-cnn")
            if lane and reg.checkpoint_exists(target) and not overwrite:
                continue
            path, meta = run.save(target, lane=lane, overwrite=overwrite)
            saved.append(f"`{path.with_suffix('').name}` ({meta['model']}, step {meta['steps']:,}, test error "
                         f"{meta['test_error']:.2f} % on {meta['test_set']['size']:,} held-out digits)")
    except (ValueError, OSError) as e:
        ss[MSG] = ("error", f"Could not save: {e}")
        return
    ss[MSG] = ("success", "Saved " + " and ".join(saved) + f" in `{_shown(stem.parent)}`. Open it in the "
               "**Trained model explorer** (distortion RTS, model \"Live run …\").")


def _cancel() -> None:
    ss.pop(PENDING, None)


# --------------------------------------------------------------------------- drawing

STATE_TEXT = {"ready": "Ready", "preparing": "Preparing …", "running": "Training", "paused": "Paused",
              "finished": "Finished", "stopped": "Stopped", "error": "Error"}


def _controls(snap: live_state.Snapshot) -> None:
    c = st.columns([1, 1, 1, 1, 3], vertical_alignment="center")
    c[0].button("Start", key="lv_start", on_click=_start, type="primary", icon=":material/play_arrow:",
                disabled=snap.state not in ("ready", "stopped"), width="stretch")
    c[1].button("Pause", key="lv_pause", on_click=_pause, icon=":material/pause:",
                disabled=snap.state not in ("running", "preparing"), width="stretch")
    c[2].button("Resume", key="lv_resume", on_click=_resume, icon=":material/resume:",
                disabled=snap.state != "paused", width="stretch")
    c[3].button("Reset", key="lv_reset", on_click=_reset, icon=":material/restart_alt:",
                disabled=snap.state == "ready", width="stretch")
    st_lane = snap.lanes[0] if snap.lanes else None
    text = f"**{STATE_TEXT[snap.state]}**"
    if st_lane is not None:
        text += f" · step **{st_lane.step:,}**"
        if st_lane.steps_per_s:
            text += f" · {st_lane.steps_per_s:.1f} steps/s"
    c[4].markdown(text)


def _metrics(snap: live_state.Snapshot) -> None:
    cols = st.columns(max(2, len(snap.lanes) + 1))
    for col, lane in zip(cols, snap.lanes):
        err = lane.last_error
        first = float(lane.eval_error[0]) if len(lane.eval_error) else None
        delta = None if err is None or first is None or len(lane.eval_error) < 2 else f"{err - first:+.1f} points"
        col.metric(f"{lane.name} test error", "–" if err is None else f"{err:.1f} %", delta=delta, delta_color="inverse",
                   help=f"On {snap.eval_size:,} held-out test digits, measured every {snap.config.eval_every} steps "
                        f"(last at step {int(lane.eval_steps[-1]) if len(lane.eval_steps) else 0:,}). "
                        f"{lane.params:,} weights.")
    minutes = snap.lanes[0].train_seconds / 60 if snap.lanes else 0.0
    cols[len(snap.lanes)].metric("Training time", f"{minutes:.1f} min",
                                 help="Time spent in training steps (pauses and evaluations not counted).")


def _batch(snap: live_state.Snapshot) -> None:
    pics = live.batch_pictures(snap)
    if pics is None:
        return
    left, right = pics
    st.subheader("The same 16 held-out test digits, as the transformer sees them")
    a, c = st.columns(2, gap="large")
    a.image(left, caption="(a) input, 42×42, with (b) the region the spatial transformer samples (red)",
            width="stretch")
    st_lane = snap.lanes[0]
    right_caption = "(c) the transformer's output V, which the classifier sees"
    if st_lane.display_pred is not None and snap.labels is not None:
        ok = int((st_lane.display_pred == snap.labels).sum())
        right_caption += f" — frame: ST-CNN right (green) or wrong (red), {ok}/{len(snap.labels)} right"
    if len(snap.lanes) > 1 and snap.lanes[1].display_pred is not None and snap.labels is not None:
        right_caption += f"; plain CNN: {int((snap.lanes[1].display_pred == snap.labels).sum())}/{len(snap.labels)}"
    c.image(right, caption=right_caption + f" (step {snap.display_step or 0:,})", width="stretch")
    if not snap.active:  # downloads only while still: a new file every second would be wasted work
        common.png_download(lambda left=left: viz.png_bytes(left), f"live-inputs-step{snap.step}.png",
                            "Download (a)+(b) PNG", where=a, key="lv_dl_in")
        common.png_download(lambda right=right: viz.png_bytes(right), f"live-outputs-step{snap.step}.png",
                            "Download (c) PNG", where=c, key="lv_dl_out")
        if len(snap.replay) >= 2:
            run = _run()
            # made on click (deferred: about a second for 60 frames), then kept by the run
            c.download_button("Training replay (GIF)", data=lambda: live.run_replay_gif(run, snap), mime="image/gif",
                              file_name=f"live-replay-step{snap.replay[-1].step}.gif", key="lv_dl_gif",
                              icon=":material/movie:", on_click="ignore",
                              help=f"(a)+(b) and (c) as they changed during training: {len(snap.replay)} frames "
                                   f"from step 0 to step {snap.replay[-1].step:,}, each captioned with its step "
                                   "and the latest measured test error.")
    else:
        c.caption("Pause to download these pictures as PNG, or the training replay as an animated GIF.")


def _live_view(polling: bool) -> None:
    """Everything that changes while training (redrawn every second while the run trains)."""
    run = _run()
    run.touch()  # heartbeat: the run stops by itself when no page touches it for a while
    snap = run.snapshot()
    if snap.active != polling:
        st.rerun()  # start or stop the periodic redraw (a full rerun re-creates this fragment)
    _controls(snap)
    msg = ss.pop(MSG, None)
    if msg:
        {"warning": st.warning, "error": st.error, "success": st.success}.get(msg[0], st.info)(msg[1])
    if snap.state == "error":
        st.error(snap.message + " Press Reset to start again.")
    elif snap.message and snap.state != "preparing":
        st.info(snap.message)
    if snap.state == "preparing":
        st.info("Loading the digits and building the models … (a few seconds)")
    if snap.data_source == "sample":
        st.info(snap.data_description)
    if not snap.lanes:
        if snap.state == "ready":
            st.markdown("Press **Start**: the curves and the digits appear after a few seconds.")
        return
    _metrics(snap)
    st.plotly_chart(live.curves_figure(snap), config=common.plot_config(f"live-curves-step{snap.step}"),
                    key="lv_curves")
    _batch(snap)


def _shown(path) -> str:
    """A path relative to the working folder when it is inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _save_section() -> None:
    st.header("Save as checkpoint")
    st.markdown("Saves the ST-CNN's current weights (and the plain CNN's as *NAME*-cnn, when it is trained too) into "
                f"`{_shown(reg.live_dir())}`, with its test error measured now on the held-out digits. The "
                "**Trained model explorer** lists it under the RTS distortion as \"Live run *NAME*\".")
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    snap = _run().snapshot()
    ss.setdefault("lv_name", "my-live-run")
    c1.text_input("Name", key="lv_name", max_chars=60,
                  help=f"Letters, digits, '.', '_' and '-'; other characters become '-'. "
                       f"Suggestion: {live_train.default_name(snap)}")
    c2.button("Save as checkpoint", key="lv_save", on_click=_save, icon=":material/save:", width="stretch",
              disabled=not snap.lanes)
    pending = ss.get(PENDING)
    if pending:
        st.warning(f"A checkpoint `{pending}` already exists. Replace it with the current weights?")
        o1, o2, _ = st.columns([1, 1, 3])
        o1.button("Overwrite", key="lv_overwrite", on_click=_save, args=(True,), type="primary", width="stretch")
        o2.button("Cancel", key="lv_cancel", on_click=_cancel, width="stretch")


# --------------------------------------------------------------------------- page

def main() -> None:
    _settings_from_url()
    st.title("Live training")
    st.markdown(
        "A small **ST-CNN** (the paper's localisation net and a narrow CNN, about 30,000 weights) learns to classify "
        "**RTS-distorted MNIST** digits (rotated ±45°, scaled 0.7–1.2, anywhere in a 42×42 canvas) right here on "
        "the CPU. Nobody tells the spatial transformer what to do: it only gets the classification loss. Watch the "
        "test error fall and the digits below being straightened and zoomed: the paper's **Figure 1 (c)** "
        "emerging. Alone on a 2-core CPU it gets from 88 % to about 10 % test error in two minutes "
        "(`results/bench-live.md`).")
    run = _run()
    with st.sidebar:
        st.header("Settings")
        locked = run.state != "ready"
        st.toggle("Also train a plain CNN (same size)", key="lv_compare", disabled=locked,
                  help="A CNN without the transformer, with the same number of weights, trained on the very same "
                       "batches in its own thread: its curves appear in grey. On a 2-core machine both share the "
                       "CPU, so each learns more slowly than alone (results/bench-live.md).")
        st.selectbox("Transform", list(TRANSFORMS), format_func=TRANSFORMS.get, key="lv_transform", disabled=locked,
                     help="Affine is what the timings in results/bench-live.md are for.")
        st.number_input("Seed", min_value=0, max_value=9999, step=1, key="lv_seed", disabled=locked,
                        help="Initial weights and the order of the training batches.")
        if locked:
            st.caption("Press Reset to change the settings.")
        if not live_train.mnist_available():
            st.caption("Full MNIST not found: training on the shipped sample digits.")
    params = {"compare": "1" if ss["lv_compare"] else "0", "seed": str(int(ss["lv_seed"])),
              "transform": ss["lv_transform"]}
    common.sync_query_params(params)
    common.copy_link(st.sidebar, params)
    if run.state == "ready" and not live_train.mnist_available():
        st.info("The full MNIST training set is not on this machine, so a run trains on the 400 shipped sample "
                "digits #100–499 (RTS-distorted afresh in every batch: it still learns, but from few digits) and "
                "measures its error on the held-out digits #0–99. Import MNIST with "
                "`python -m stn_core.data mnist` for the real thing.")

    polling = run.snapshot().active
    st.fragment(run_every=REFRESH_S if polling else None)(_live_view)(polling)
    _save_section()
    with st.expander("How this works"):
        st.markdown(
            f"- Training runs in a background thread of the server that belongs to this browser tab (one torch "
            f"thread per model), so the page stays responsive; at most {live_train.MAX_ACTIVE} runs train at once on "
            "this machine. If this page is closed, its run stops by itself after "
            f"{live_state.LiveConfig().idle_timeout_s / 60:g} minutes.\n"
            "- Training digits: the 60,000 MNIST training digits, freshly RTS-distorted in every batch of 64. "
            "Test digits (curves and the 16 shown): the first 1,000 digits of the fixed RTS test set, never "
            "trained on.\n"
            "- Optimiser: Adam (lr 0.002), not the paper's plain SGD: SGD needs far more steps than a lecture "
            "has minutes. The paper's models are ~13× larger and trained for 150,000 steps of batch 256; the "
            "Trained model explorer has those.\n"
            "- The same run without the app: `python -m stn_core.train.live --steps 1500 --out checkpoints/live/NAME`.")


main()
