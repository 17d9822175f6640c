"""stn_core.train.live: the background training run behind the Live training page.

Tiny settings (batch 8, the shipped 500 sample digits, 24 held-out digits) keep every test
to a few seconds on a busy 2-core machine."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from pages.lab import live
from stn_core.checkpoints import load_meta, load_model
from stn_core import registry as reg
from stn_core.train import live_state
from stn_core.train import live as live_train

TINY = live_state.LiveConfig(batch=8, eval_size=24, eval_every=4, display_every=2, display_n=6, log_every=1,
                       history_cap=16, source="sample", target_params=20_000)


def wait_for(cond, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def steps(run, lane=0):
    s = run.snapshot()
    return s.lanes[lane].step if len(s.lanes) > lane else 0


@pytest.fixture()
def runs():
    made = []

    def make(cfg=TINY):
        r = live_train.LiveRun(cfg)
        made.append(r)
        return r

    yield make
    for r in made:
        r.reset()
    assert live_train.active_runs() == 0


def test_start_trains_and_history_grows(runs):
    run = runs()
    assert run.state == "ready" and run.snapshot().lanes == ()
    run.start()
    wait_for(lambda: steps(run) >= 9, what="9 steps")
    snap = run.snapshot()
    assert snap.state == "running"
    lane = snap.lanes[0]
    assert lane.name == "ST-CNN" and lane.params > 0
    assert len(lane.loss) >= 8 and np.isfinite(lane.loss).all()
    assert lane.eval_steps[0] == 0 and len(lane.eval_error) >= 2  # step 0, then every 4 steps
    assert 0.0 <= lane.last_error <= 100.0
    # the display batch: fixed held-out digits, the transformer's output and θ
    assert snap.inputs.shape == (6, 42, 42) and snap.outputs.shape == (6, 42, 42)
    assert snap.thetas.shape == (6, 2, 3) and snap.labels.shape == (6,)
    assert snap.display_step is not None and lane.display_pred.shape == (6,)
    assert snap.data_source == "sample" and "shipped" in snap.data_description
    left, right = live.batch_pictures(snap)
    assert left.dtype == np.uint8 and left.shape == right.shape and left.shape[2] == 3
    assert live.curves_figure(snap).data  # plotly traces for loss and error


def test_pause_stops_stepping_and_resume_continues(runs):
    run = runs()
    run.start()
    wait_for(lambda: steps(run) >= 3, what="3 steps")
    run.pause()
    time.sleep(0.3)  # the step in flight (if any) finishes
    assert run.state == "paused"
    frozen = steps(run)
    time.sleep(0.5)
    assert steps(run) == frozen, "a paused run kept stepping"
    run.resume()
    assert run.state == "running"
    wait_for(lambda: steps(run) >= frozen + 3, what="3 more steps after resume")


def test_reset_clears_and_restarts_from_zero(runs):
    run = runs()
    run.start()
    wait_for(lambda: steps(run) >= 3, what="3 steps")
    run.reset()
    snap = run.snapshot()
    assert snap.state == "ready" and snap.lanes == () and snap.outputs is None
    assert live_train.active_runs() == 0
    run.start()
    wait_for(lambda: run.snapshot().lanes and run.snapshot().lanes[0].eval_steps.size, what="restart")
    assert run.snapshot().lanes[0].eval_steps[0] == 0


def test_runs_are_independent(runs):
    a, b = runs(), runs(replace(TINY, seed=1))
    a.start()
    b.start()
    wait_for(lambda: steps(a) >= 3 and steps(b) >= 3, what="both running")
    a.pause()
    time.sleep(0.2)
    n_a, n_b = steps(a), steps(b)
    wait_for(lambda: steps(b) >= n_b + 3, what="b continues while a is paused")
    assert steps(a) == n_a
    b.reset()  # closing one session's run leaves the other intact
    a.resume()
    wait_for(lambda: steps(a) >= n_a + 3, what="a continues after b was reset")


def test_global_cap(runs, monkeypatch):
    monkeypatch.setattr(live_train, "MAX_ACTIVE", 1)
    a, b = runs(), runs()
    a.start()
    with pytest.raises(live_state.LiveBusyError, match="already going"):
        b.start()
    a.reset()
    b.start()  # the slot is free again
    wait_for(lambda: steps(b) >= 1, what="b running")


def test_idle_timeout_stops_the_run_and_start_continues(runs):
    run = runs(replace(TINY, idle_timeout_s=0.5))
    run.start()
    wait_for(lambda: steps(run) >= 1, what="first step")
    wait_for(lambda: run.state == "stopped", timeout=30, what="idle stop")
    assert "without anyone watching" in run.snapshot().message
    assert live_train.active_runs() == 0
    n = steps(run)
    time.sleep(0.3)
    assert steps(run) == n
    run.start()  # continues from where it stopped, with the models it has
    wait_for(lambda: steps(run) >= n + 2, what="continue after idle stop")


def test_finished_at_max_steps(runs):
    run = runs(replace(TINY, max_steps=5))
    run.start()
    wait_for(lambda: run.state == "finished", what="finish")
    snap = run.snapshot()
    assert snap.lanes[0].step == 5 and snap.lanes[0].eval_steps[-1] == 5
    assert live_train.active_runs() == 0


def test_compare_trains_a_plain_cnn_of_the_same_size(runs):
    run = runs(replace(TINY, compare=True))
    run.start()
    wait_for(lambda: steps(run, 1) >= 2, what="CNN steps")
    st, cnn = run.snapshot().lanes
    assert (st.name, cnn.name) == ("ST-CNN", "CNN")
    assert abs(st.params - cnn.params) / st.params < 0.1
    assert np.isfinite(cnn.loss).all()


def test_save_load_round_trip_gives_the_same_logits(runs, tmp_path):
    run = runs(replace(TINY, max_steps=6))
    run.start()
    wait_for(lambda: run.state == "finished", what="finish")
    stem = reg.live_stem("my run!", tmp_path)
    assert stem.name == "my-run"
    path, _ = run.save(stem)
    model, loaded = load_model(path)
    assert loaded["task"] == "mnist-rts" and loaded["model"] == "st-cnn" and loaded["transform"] == "affine"
    assert loaded["steps"] == 6 and loaded["final"] is True and "Live training page" in loaded["command"]
    assert loaded["test_set"]["size"] == 24 and 0 <= loaded["test_error"] <= 100
    data = live_state.load_data("sample", 24)
    lane_model = run._lanes[0].model
    lane_model.eval()
    with torch.no_grad():
        assert torch.allclose(model(data.eval_x), lane_model(data.eval_x), atol=1e-6)
    err, _ = live_train.evaluate(model, data.eval_x, data.eval_y)
    assert err == pytest.approx(loaded["test_error"], abs=1e-3)
    first_id = loaded["checkpoint_id"]
    with pytest.raises(FileExistsError):
        run.save(stem)
    assert load_meta(path)["checkpoint_id"] == first_id
    run.save(stem, overwrite=True)
    assert load_meta(path)["checkpoint_id"] != first_id


def test_save_before_start_is_refused(tmp_path):
    with pytest.raises(ValueError, match="start the training"):
        live_train.LiveRun(TINY).save(tmp_path / "x")


def test_sanitize_name():
    assert reg.sanitize_name("  Lecture 1: RTS/ST-CNN  ") == "Lecture-1-RTS-ST-CNN"
    assert reg.sanitize_name("../../etc/passwd") == "etc-passwd"
    assert len(reg.sanitize_name("a" * 500)) == 60
    for bad in ("", "   ", "///", ".."):
        with pytest.raises(ValueError, match="name"):
            reg.sanitize_name(bad)


def test_series_memory_is_bounded():
    s = live_state.Series(cap=8, every=1, mode="mean")
    for i in range(1, 10_001):
        s.add(i, 1.0)
    steps_, values = s.arrays()
    assert len(s) <= 8 and len(steps_) <= 9 and steps_[-1] == 10_000 and np.allclose(values, 1.0)
    assert list(steps_) == sorted(steps_)
    k = live_state.Series(cap=8, mode="keep")
    for i in range(1, 1001):
        k.add(i, float(i))
    assert len(k) <= 8 and k.steps[-1] == 1000 and k.values == [float(v) for v in k.steps]
    assert k.steps == sorted(k.steps)


def test_history_stays_bounded_in_a_run(runs):
    run = runs(replace(TINY, history_cap=4, eval_every=1, max_steps=30))
    run.start()
    wait_for(lambda: run.state == "finished", what="finish")
    lane = run.snapshot().lanes[0]
    assert len(lane.loss) <= 5 and len(lane.eval_error) <= 4 and len(run._lanes[0].evals) <= 4  # +1: provisional
    assert lane.eval_steps[-1] == 30


def test_config_validation():
    with pytest.raises(ValueError, match="transform"):
        live_state.LiveConfig(transform="shear")
    with pytest.raises(ValueError, match="batch"):
        live_state.LiveConfig(batch=0)


@pytest.mark.parametrize("transform", ["projective", "tps"])
def test_other_transforms_draw_their_regions(runs, transform):
    run = runs(replace(TINY, transform=transform, max_steps=2))
    run.start()
    wait_for(lambda: run.state == "finished", what="finish")
    snap = run.snapshot()
    left, right = live.batch_pictures(snap)
    assert left.shape == right.shape and (left[..., 0] > left[..., 1] + 80).any()  # red region lines


def test_saved_runs_appear_in_the_model_explorer(runs, tmp_path):
    from pages.lab import explorer as ex

    run = runs(replace(TINY, max_steps=2))
    run.start()
    wait_for(lambda: run.state == "finished", what="finish")
    run.save(reg.live_stem("lecture", tmp_path / reg.LIVE_SUBDIR))
    (tmp_path / reg.LIVE_SUBDIR / "broken.json").write_text("{not json")
    found = reg.discover_live(tmp_path)
    assert set(found) == {("rts", "live:lecture"), ("rts", "live:broken")}
    good, bad = found[("rts", "live:lecture")], found[("rts", "live:broken")]
    assert good.usable and good.label == "Live run 'lecture' (ST-CNN Aff)" and good.task == "mnist-rts"
    assert not bad.usable and "not valid JSON" in bad.error
    assert reg.discover(tmp_path) == {}  # Table 1 ignores live runs
    assert ex.model_options(found, "rts") == ["live:broken", "live:lecture"]
    assert ex.default_choice(found) == ("rts", "live:lecture")
    assert reg.paper_error("rts", "live:lecture") is None
    assert "stn_core.train.live" in reg.train_command("rts", "live:lecture")


def test_cli_trains_and_saves(tmp_path, capsys):
    out = tmp_path / "cli-run"
    assert live_train.main(["--steps", "3", "--batch", "8", "--eval-size", "16", "--source", "sample",
                      "--target-params", "20000", "--out", str(out)]) == 0
    meta = load_meta(out)
    assert meta["steps"] == 3 and meta["test_set"]["size"] == 16 and "python -m stn_core.train.live" in meta["command"]
    assert "test error" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # refuses to overwrite
        live_train.main(["--steps", "1", "--source", "sample", "--out", str(out)])
    assert live_train.active_runs() == 0


def test_same_settings_same_weights_even_with_pauses(runs):
    """What a saved checkpoint's command promises: N steps give the same weights, paused or not."""
    a, b = runs(replace(TINY, max_steps=8)), runs(replace(TINY, max_steps=8))
    a.start()
    wait_for(lambda: a.state == "finished", what="a finished")
    b.start()
    wait_for(lambda: steps(b) >= 2, what="b started")
    b.pause()
    time.sleep(0.2)
    b.resume()
    wait_for(lambda: b.state == "finished", what="b finished")
    wa, wb = a._lanes[0].model.state_dict(), b._lanes[0].model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


# --------------------------------------------------------------------------- training replay

def _frame(step, serial=None, n=6):
    return live_state.ReplayFrame(step=step, error=50.0, error_step=step, outputs=np.zeros((n, 42, 42), np.uint8),
                            thetas=np.tile(np.eye(3)[:2], (n, 1, 1)).astype(np.float32), pred=np.arange(n) % 10,
                            serial=step if serial is None else serial)


def test_frame_history_is_bounded_even_and_keeps_first_and_last():
    from pages.lab.export import MAX_FRAMES

    h = live_state.FrameHistory()
    assert h.cap == MAX_FRAMES and h.frames() == ()
    h.add(_frame(0))
    assert [f.step for f in h.frames()] == [0]
    for step in range(10, 10_001, 10):
        h.add(_frame(step))
        fr = h.frames()
        assert 2 <= len(fr) <= MAX_FRAMES
        assert fr[0].step == 0 and fr[-1].step == step  # step 0 and the latest always there
    steps_ = [f.step for f in h.frames()]
    assert steps_ == sorted(set(steps_)) and len(steps_) > MAX_FRAMES // 2  # thinned, not emptied
    gaps = set(np.diff(steps_[:-1]))
    assert len(gaps) == 1, f"uneven spacing {gaps}"  # evenly spread (the latest may sit closer)
    small = live_state.FrameHistory(cap=4)
    for step in range(9):
        small.add(_frame(step))
    assert [f.step for f in small.frames()] == [0, 4, 8]
    with pytest.raises(ValueError, match="at least 3"):
        live_state.FrameHistory(cap=2)


def test_replay_gif_from_a_snapshot():
    import io

    from PIL import Image

    n = 6
    frames = tuple(_frame(s, n=n) for s in (0, 10, 20))
    snap = live_state.Snapshot("paused", "", TINY, (), "sample", "", 24, 20, np.zeros((n, 42, 42), np.float32),
                         np.arange(n) % 10, None, None, frames)
    pic = live.replay_picture(snap, frames[1])
    assert pic.dtype == np.uint8 and pic.ndim == 3 and pic.shape[1] > pic.shape[0]  # (a)+(b) | (c)
    assert live.replay_caption(frames[2]) == "step 20 · error 50.0 %"
    im = Image.open(io.BytesIO(live.replay_gif(snap, side=256)))
    assert im.n_frames == 3 and max(im.size) <= 256 + 40
    with pytest.raises(ValueError, match="at least two"):
        live.replay_gif(replace(snap, replay=frames[:1]))


def test_run_records_the_replay_and_reset_clears_it(runs):
    import io

    from PIL import Image

    run = runs(replace(TINY, max_steps=8))  # display every 2 steps: steps 0, 2, 4, 6, 8
    run.start()
    wait_for(lambda: run.state == "finished", what="finish")
    snap = run.snapshot()
    assert [f.step for f in snap.replay] == [0, 2, 4, 6, 8]
    f0, last = snap.replay[0], snap.replay[-1]
    assert f0.error is not None and f0.error_step == 0 and last.error_step == 8  # evals at 0, 4, 8
    assert f0.outputs.dtype == np.uint8 and f0.outputs.shape == (6, 42, 42) and f0.thetas.shape == (6, 2, 3)
    assert np.array_equal(last.outputs, np.rint(np.clip(snap.outputs, 0, 1) * 255).astype(np.uint8))
    assert run.snapshot().replay[-1] is last  # snapshots share the frames, no copies
    gif = live.run_replay_gif(run, snap)
    assert live.run_replay_gif(run, snap) is gif  # the last GIF is kept
    im = Image.open(io.BytesIO(gif))
    assert im.n_frames == 5
    run.reset()
    assert run.snapshot().replay == ()
