"""AppTest of the Live training page (pages/live.py): it renders, and Start / Pause / Reset work
through their on_click callbacks without an exception (the training itself: tests/test_live.py)."""

from __future__ import annotations

import time

from apptest_util import assert_no_exception, open_page

from stn_core import registry as reg
from stn_core.train import live_state
from stn_core.train import live as live_train


def test_live_page_start_pause_save_reset(tmp_path, monkeypatch):

    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(tmp_path))
    at = open_page("pages/live.py", {"seed": "3"})
    assert at.title[0].value == "Live training"
    assert not at.button(key="lv_start").disabled and at.button(key="lv_pause").disabled
    assert at.number_input(key="lv_seed").value == 3
    try:
        at.button(key="lv_start").click().run()
        assert_no_exception(at)
        run = at.session_state["lv_run"]
        assert run.config.seed == 3 and run.state in ("preparing", "running")
        deadline = time.monotonic() + 60
        while run.snapshot().step < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert run.snapshot().step >= 1, "no training step within 60 s"
        at.run()
        assert_no_exception(at)
        assert at.button(key="lv_start").disabled and not at.button(key="lv_pause").disabled
        at.button(key="lv_pause").click().run()
        assert_no_exception(at)
        assert run.state == "paused" and not at.button(key="lv_resume").disabled
        # save, then save again under the same name: asks before overwriting
        at.text_input(key="lv_name").input("lecture 1").run()
        at.button(key="lv_save").click().run()
        assert_no_exception(at)
        assert any("Saved" in m.value for m in at.success), [m.value for m in at.error]
        assert (tmp_path / "live" / "lecture-1.json").is_file()
        at.button(key="lv_save").click().run()
        assert any("already exists" in w.value for w in at.warning)
        at.button(key="lv_overwrite").click().run()
        assert_no_exception(at)
        assert any("Saved" in m.value for m in at.success)
        at.button(key="lv_reset").click().run()
        assert_no_exception(at)
        assert run.state == "ready" and live_train.active_runs() == 0
    finally:
        run = at.session_state["lv_run"] if "lv_run" in at.session_state else None
        if run is not None:
            run.reset()


def test_explorer_opens_a_saved_live_run(tmp_path, monkeypatch):
    from dataclasses import replace


    cfg = replace(live_state.LiveConfig(), batch=8, eval_size=24, eval_every=2, source="sample", max_steps=2)
    run = live_train.LiveRun(cfg)
    run.start()
    deadline = time.monotonic() + 60
    while run.state != "finished" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.state == "finished"
    run.save(tmp_path / reg.LIVE_SUBDIR / "lecture")
    run.reset()
    monkeypatch.setenv(reg.ENV_CHECKPOINTS, str(tmp_path))
    at = open_page("pages/explorer.py")
    assert at.selectbox(key="ex_model").value == "live:lecture"
    assert any("Live run 'lecture'" in m.value for m in at.markdown)


def test_training_replay_gif_button_after_a_short_run():
    """A (tiny, finished) run in the page's session: the still page offers the replay as a GIF."""
    from dataclasses import replace

    cfg = replace(live_state.LiveConfig(), batch=8, eval_size=24, eval_every=2, display_every=2, source="sample",
                  max_steps=4, target_params=20_000)
    run = live_train.LiveRun(cfg)
    run.start()
    deadline = time.monotonic() + 60
    while run.state != "finished" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.state == "finished" and len(run.snapshot().replay) == 3  # steps 0, 2, 4
    try:
        at = open_page("pages/live.py")
        assert not any("lv_dl_gif" in str(b.proto) for b in at.get("download_button"))  # fresh run: no frames
        at.session_state["lv_run"] = run
        at.run()
        assert_no_exception(at)
        gifs = [str(b.proto) for b in at.get("download_button") if "lv_dl_gif" in str(b.proto)]
        assert len(gifs) == 1 and "Training replay (GIF)" in gifs[0]  # the GIF itself is made on click
        assert "3 frames from step 0 to step 4" in gifs[0]
    finally:
        run.reset()
