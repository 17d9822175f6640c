"""Live training (issue 8): a small ST-CNN learns RTS MNIST in a background thread, for the
Live training page (``pages/live.py``) and the headless CLI; no UI here. Pictures of a run:
``pages/lab/live.py``; the run's state types: :mod:`stn_core.train.live_state`.

* :class:`LiveRun` — one run per browser session: ``start`` / ``pause`` / ``resume`` /
  ``reset`` / ``snapshot`` / ``save``. Training happens in worker threads (one per model,
  ``torch.set_num_threads(1)`` in each), never on the UI thread. Batch ``t`` is a pure
  function of ``(seed, t)`` (:class:`stn_core.data.tasks.TrainStream`), so pausing changes
  nothing in what is learned; with ``compare=True`` a plain CNN of the same size trains on the
  very same batches in its own thread.
* Memory is bounded: curves are :class:`Series` that halve their resolution when they reach
  ``history_cap`` points; the fixed display batch is a few small arrays, replaced in place;
  the training replay (:class:`FrameHistory`, the displayed batch through training as uint8,
  for :func:`replay_gif`) keeps at most ``export.MAX_FRAMES`` frames, thinned evenly.
* Independence: every run has its own models and thread(s); the data (MNIST, the held-out
  digits) is shared read-only. A run whose page is gone stops by itself: the page calls
  :meth:`LiveRun.touch` on every redraw, and the workers stop when nobody touched the run for
  ``idle_timeout_s`` (state ``"stopped"``; ``start`` continues it from where it was). At most
  :data:`MAX_ACTIVE` runs train at once in a process (:class:`LiveBusyError` otherwise).
* Data: the 60,000 MNIST training digits distorted on the fly when the MNIST files are there;
  test digits (curves, the displayed batch, the saved test error) are the first ``eval_size``
  digits of the fixed ``mnist-rts`` test set, never trained on. Without the MNIST files the
  run trains on the shipped sample digits #100–499 (distorted on the fly) and holds out #0–99
  (distorted like the first 100 digits of the fixed test set): it still learns, but from 400
  digits; :attr:`LiveData.description` says so.

Default settings, measured with ``python bench/live.py`` (results/bench-live.md) on the
2-core CPU of the development machine while it was heavily shared (load average 13.6): ST-CNN
affine with 30k weights (the paper's localisation net, classifier width 15), batch 64, Adam
lr 0.002: 189 ms per step on one thread (median; data 11 ms of it), 609 steps in the first
2 minutes after Start, test error on the 1,000 held-out RTS digits from 88 % at step 0 to
9.7 % after 2 minutes. With ``compare=True`` both models share the two cores: ST-CNN 20.0 %
at step 253, CNN 47.5 % at step 142 after 2 minutes (the CNN's step costs twice as much).
Adam rather than the paper's SGD: in a scratch comparison (not kept in the repo) SGD with
momentum learned far too slowly for a two-minute demonstration.

Also a headless CLI with the same code path (what a saved checkpoint's ``command`` names)::

    python -m stn_core.train.live --steps 1500 --seed 0 --out checkpoints/live/my-run
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from stn_core.checkpoints import checkpoint_paths, save_checkpoint
from stn_core.data import tasks as ds
from stn_core.data.common import DataError
from stn_core.data.mnist import find_mnist_dir
from stn_core.models import build_model, count_params
from stn_core.registry import checkpoint_exists
from stn_core.train.live_state import (LANE_NAMES, TASK, FrameHistory, LaneView, LiveBusyError, LiveConfig, LiveData,
                                       ReplayFrame, Series, Snapshot, data_md5, load_data)
from stn_core.train.loop import evaluate as loop_evaluate
from stn_core.train.loop import train_step

# --------------------------------------------------------------------------- run

#: Most runs training at the same time in one process (all browser sessions together).
MAX_ACTIVE = int(os.environ.get("STN_LAB_LIVE_MAX", "2") or 2)
_ACTIVE: dict[int, int] = {}  # id(run) -> generation holding a slot
_ACTIVE_LOCK = threading.Lock()
_INIT_LOCK = threading.Lock()  # model init uses the global torch RNG: one at a time


def active_runs() -> int:
    """How many runs hold a training slot now."""
    with _ACTIVE_LOCK:
        return len(_ACTIVE)


def busy_message(limit: int | None = None) -> str:
    n = MAX_ACTIVE if limit is None else limit
    return (f"{n} live training run{'s are' if n != 1 else ' is'} already going on this machine (in other browser "
            f"tabs or by other users), and the CPU is shared. Wait until one is paused for a while, finishes "
            f"or is reset, then press Start again.")


def _init_model(name: str, cfg: LiveConfig, seed: int) -> torch.nn.Module:
    transform = cfg.transform if name == "st-cnn" else None
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(name, transform, ds.input_size(TASK), 10, target_params=cfg.target_params)


def _make_optimizer(model: torch.nn.Module, cfg: LiveConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=cfg.lr)


class _Lane:
    """One model being trained: its optimizer, step counter, curves; ``lock`` is held during
    every step so :meth:`LiveRun.save` reads a consistent set of weights."""

    def __init__(self, index: int, cfg: LiveConfig) -> None:
        self.index = index
        self.name = LANE_NAMES[index]
        self.model = _init_model("st-cnn" if index == 0 else "cnn", cfg, ds.derive_seed(cfg.seed, 10 + index))
        self.model.train()
        self.opt = _make_optimizer(self.model, cfg)
        self.step = 0
        self.train_seconds = 0.0
        self.loss = Series(cfg.history_cap, cfg.log_every, "mean")
        self.err = Series(cfg.history_cap, 1, "keep")
        self.evals: list[dict] = []  # mirrors `err` with losses, for the checkpoint's history
        self.display_pred: np.ndarray | None = None
        self.display_conf: np.ndarray | None = None
        self.lock = threading.Lock()


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 500) -> tuple[float, float]:
    """(error %, mean cross-entropy) of ``model`` on ``x (N, 1, S, S)``, ``y (N,)`` (the training loop's
    :func:`stn_core.train.loop.evaluate` on the CPU)."""
    return loop_evaluate(model, x, y, torch.device("cpu"), chunk=chunk)


class LiveRun:
    """A live training run (see the module docstring). Thread-safe; cheap to create: nothing
    is loaded or trained before :meth:`start`."""

    def __init__(self, config: LiveConfig | None = None) -> None:
        self.config = config or LiveConfig()
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._state = "ready"
        self._message = ""
        self._gen = 0
        self._paused = False
        self._stopping = False  # set when the workers of the current generation must exit (idle)
        self._stop_reason: str | None = None
        self._error: str | None = None
        self._lanes: list[_Lane] = []
        self._data: LiveData | None = None
        self._stream: ds.TrainStream | None = None
        self._stream_lock = threading.Lock()
        self._display: dict | None = None
        self._replay = FrameHistory()
        self._serial = 0  # numbers the replay frames (never reset)
        self._gif: tuple[tuple, bytes] | None = None  # (key, GIF) of the last replay_gif
        self._threads: list[threading.Thread] = []
        self._last_touch = time.monotonic()

    # ----------------------------------------------------------------- controls

    def touch(self) -> None:
        """Heartbeat: the page is still showing this run (call on every redraw)."""
        with self._lock:
            self._last_touch = time.monotonic()

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    def start(self) -> None:
        """Start (or continue a stopped run, or resume a paused one). Raises
        :class:`LiveBusyError` when :data:`MAX_ACTIVE` runs are already training."""
        with self._lock:
            self._last_touch = time.monotonic()
            if self._state == "paused":
                self._resume_locked()
                return
            if self._state not in ("ready", "stopped"):
                return  # preparing / running: nothing to do; finished / error: reset first
            with _ACTIVE_LOCK:
                if id(self) not in _ACTIVE and len(_ACTIVE) >= MAX_ACTIVE:
                    raise LiveBusyError(busy_message())
                self._gen += 1
                _ACTIVE[id(self)] = self._gen
            gen = self._gen
            self._paused = False
            self._stopping = False
            self._stop_reason = None
            self._state = "preparing" if not self._lanes else "running"
            self._message = "Loading the digits and building the models …" if not self._lanes else ""
            t = threading.Thread(target=self._main, args=(gen,), name=f"live-run-{id(self):x}-{gen}", daemon=True)
            self._threads = [t]
        t.start()

    def pause(self) -> None:
        """Stop stepping after the current step (the run keeps its training slot)."""
        with self._lock:
            if self._state in ("running", "preparing"):
                self._paused = True
                if self._state == "running":
                    self._state = "paused"
                self._cond.notify_all()

    def resume(self) -> None:
        """Continue a paused run (or restart a stopped one)."""
        with self._lock:
            self._last_touch = time.monotonic()
            if self._state == "paused":
                self._resume_locked()
                return
        if self.state == "stopped":
            self.start()

    def _resume_locked(self) -> None:
        self._paused = False
        self._state = "running"
        self._cond.notify_all()

    def reset(self, config: LiveConfig | None = None, join_timeout: float = 10.0) -> None:
        """Stop the workers, forget the models and curves; optionally new settings."""
        threads = self._halt("reset")
        for t in threads:
            if t is not threading.current_thread():
                t.join(join_timeout)
        with self._lock:
            if config is not None:
                self.config = config
            self._state, self._message = "ready", ""
            self._lanes, self._stream, self._display = [], None, None
            self._replay, self._gif = FrameHistory(), None
            self._paused, self._error, self._stop_reason = False, None, None

    def close(self) -> None:
        """Stop the workers (keeping what was learned, state ``"stopped"``)."""
        for t in self._halt("closed"):
            if t is not threading.current_thread():
                t.join(10.0)

    def _halt(self, reason: str) -> list[threading.Thread]:
        with self._lock:
            self._gen += 1  # every worker of an older generation exits at its next check
            self._stop_reason = reason
            if self._state in ("preparing", "running", "paused"):
                self._state = "stopped"
                self._message = "Stopped." if reason == "closed" else ""
            self._cond.notify_all()
            threads = list(self._threads)
        with _ACTIVE_LOCK:
            _ACTIVE.pop(id(self), None)
        return threads

    # ----------------------------------------------------------------- workers

    def _current(self, gen: int) -> bool:
        return self._gen == gen

    def _main(self, gen: int) -> None:
        """Coordinator (first worker thread): prepare, run lane 0 here and the others in threads."""
        torch.set_num_threads(1)
        try:
            self._prepare(gen)
            with self._lock:
                if not self._current(gen):
                    return
                if self._state == "preparing":
                    self._state = "paused" if self._paused else "running"
                    self._message = ""
                lanes = list(self._lanes)
                others = [threading.Thread(target=self._lane_loop, args=(gen, lane), daemon=True,
                                           name=f"live-lane-{id(self):x}-{gen}-{lane.index}") for lane in lanes[1:]]
                self._threads += others
            for t in others:
                t.start()
            self._lane_loop(gen, lanes[0])
            for t in others:
                t.join()
        except Exception as e:  # a worker must never die silently: the page shows the message
            with self._lock:
                if self._current(gen) and self._error is None:
                    self._error = f"{type(e).__name__}: {e}"
                    self._cond.notify_all()
        finally:
            self._finish(gen)

    def _prepare(self, gen: int) -> None:
        cfg = self.config
        data = self._data if self._data is not None else load_data(cfg.source, cfg.eval_size, cfg.data_root)
        with self._lock:
            if not self._current(gen):
                return
            self._data = data
            need_lanes = not self._lanes
            need_stream = self._stream is None
        stream = ds.TrainStream(data.train_images, data.train_labels, TASK, cfg.seed, cfg.batch) if need_stream else None
        lanes = [_Lane(i, cfg) for i in range(2 if cfg.compare else 1)] if need_lanes else None
        with self._lock:
            if not self._current(gen):
                return
            if stream is not None:
                self._stream = stream
            if lanes is not None:
                self._lanes = lanes
                n = min(cfg.display_n, int(data.eval_x.shape[0]))
                self._display = {"step": None, "inputs": data.eval_x[:n, 0].numpy().copy(),
                                 "labels": data.eval_y[:n].numpy().copy(), "outputs": None, "thetas": None}

    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        with self._stream_lock:  # the stream caches its epoch permutations
            return self._stream.batch(step)

    def _wait_turn(self, gen: int, lane: _Lane) -> bool:
        """Block while paused; False when this worker must exit."""
        cfg = self.config
        with self._cond:
            while True:
                if not self._current(gen) or self._stopping or self._error is not None:
                    return False
                if lane.step >= cfg.max_steps:
                    return False
                if time.monotonic() - self._last_touch > cfg.idle_timeout_s:
                    self._stop_reason = "idle"
                    self._stopping = True  # stops the other lanes too
                    self._cond.notify_all()
                    return False
                if not self._paused:
                    return True
                self._cond.wait(0.25)

    def _lane_loop(self, gen: int, lane: _Lane) -> None:
        torch.set_num_threads(1)
        cfg = self.config
        try:
            if lane.step == 0 and not lane.evals:
                self._eval_lane(gen, lane)
                if lane.index == 0:
                    self._update_display(gen, lane)
            while self._wait_turn(gen, lane):
                xb, yb = self._batch(lane.step)
                with lane.lock:
                    t0 = time.perf_counter()
                    _logits, loss = train_step(lane.model, lane.opt, xb, yb)
                    dt = time.perf_counter() - t0
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise FloatingPointError(f"the {lane.name}'s training loss became {value} at step {lane.step + 1}")
                with self._lock:
                    if not self._current(gen):
                        return
                    lane.step += 1
                    lane.train_seconds += dt
                    lane.loss.add(lane.step, value)
                    step = lane.step
                if step % cfg.eval_every == 0 or step == cfg.max_steps:
                    self._eval_lane(gen, lane)
                if lane.index == 0 and (step % cfg.display_every == 0 or step == cfg.max_steps):
                    self._update_display(gen, lane)
        except Exception as e:
            with self._lock:
                if self._current(gen) and self._error is None:
                    self._error = f"{lane.name}: {type(e).__name__}: {e}"
                    self._cond.notify_all()

    def _eval_lane(self, gen: int, lane: _Lane) -> None:
        data = self._data
        n = min(self.config.display_n, int(data.eval_x.shape[0]))
        with lane.lock:
            err, loss = evaluate(lane.model, data.eval_x, data.eval_y)
            if lane.index != 0:  # the ST-CNN's predictions come with the display update
                with torch.no_grad():
                    lane.model.eval()
                    conf, pred = torch.softmax(lane.model(data.eval_x[:n]), 1).max(1)
                    lane.model.train()
        with self._lock:
            if not self._current(gen):
                return
            lane.err.add(lane.step, err)
            lane.evals.append({"step": lane.step, "test_error": round(err, 4), "test_loss": round(loss, 5)})
            if len(lane.evals) > self.config.history_cap:
                lane.evals = lane.evals[len(lane.evals) % 2::2] if len(lane.evals) % 2 else lane.evals[1::2]
            if lane.index != 0:
                lane.display_pred, lane.display_conf = pred.numpy(), conf.numpy()

    def _update_display(self, gen: int, lane: _Lane) -> None:
        """The ST-CNN's view of the fixed batch: outputs V, θ, predictions."""
        data = self._data
        n = min(self.config.display_n, int(data.eval_x.shape[0]))
        with lane.lock, torch.no_grad():
            lane.model.eval()
            views = lane.model.views(data.eval_x[:n])
            lane.model.train()
        probs = torch.softmax(views.logits, 1)
        conf, pred = probs.max(1)
        outputs, thetas = views.outputs[:, 0].numpy().copy(), views.theta.numpy().copy()
        out_u8 = np.rint(np.clip(np.nan_to_num(outputs), 0.0, 1.0) * 255.0).astype(np.uint8)  # replay frame
        with self._lock:
            if not self._current(gen):
                return
            lane.display_pred, lane.display_conf = pred.numpy(), conf.numpy()
            self._display.update(step=lane.step, outputs=outputs, thetas=thetas)
            self._serial += 1
            self._replay.add(ReplayFrame(
                step=lane.step, error=lane.err.values[-1] if len(lane.err) else None,
                error_step=lane.err.steps[-1] if len(lane.err) else None, outputs=out_u8, thetas=thetas,
                pred=lane.display_pred, serial=self._serial))

    def _finish(self, gen: int) -> None:
        with self._lock:
            if not self._current(gen):
                return  # reset / close moved the state on and released the slot
            with _ACTIVE_LOCK:
                if _ACTIVE.get(id(self)) == gen:
                    _ACTIVE.pop(id(self), None)
            if self._error is not None:
                self._state, self._message = "error", f"Training stopped with an error: {self._error}"
            elif self._lanes and all(la.step >= self.config.max_steps for la in self._lanes):
                self._state = "finished"
                self._message = f"Finished: {self.config.max_steps:,} steps."
            elif self._stop_reason == "idle":
                self._state = "stopped"
                mins = f"{self.config.idle_timeout_s / 60:g} min"
                self._message = (f"Paused for more than {mins}, so the run gave its place to others; press Start to "
                                 "continue from here." if self._paused else
                                 f"Stopped after {mins} without anyone watching this page (closed tab?); press "
                                 "Start to continue from here.")
            else:
                self._state, self._message = "stopped", "Stopped."
            self._cond.notify_all()

    # ----------------------------------------------------------------- reading

    def snapshot(self) -> Snapshot:
        """A copy of everything the page draws (thread-safe, cheap)."""
        with self._lock:
            lanes = []
            for la in self._lanes:
                ls, lv = la.loss.arrays()
                es, ev = la.err.arrays()
                lanes.append(LaneView(la.name, count_params(la.model), la.step, ls, lv, es, ev, la.train_seconds,
                                      None if la.display_pred is None else la.display_pred.copy(),
                                      None if la.display_conf is None else la.display_conf.copy()))
            d = self._display or {}
            data = self._data
            return Snapshot(
                state=self._state, message=self._message, config=self.config, lanes=tuple(lanes),
                data_source=None if data is None else data.source,
                data_description="" if data is None else data.description,
                eval_size=0 if data is None else int(data.eval_x.shape[0]),
                display_step=d.get("step"), inputs=d.get("inputs"), labels=d.get("labels"),
                outputs=d.get("outputs"), thetas=d.get("thetas"), replay=self._replay.frames())

    def evaluate_now(self, lane: int = 0) -> tuple[int, float]:
        """(step, test error %) of lane ``lane``'s current weights on the held-out digits."""
        with self._lock:
            if lane >= len(self._lanes) or self._data is None:
                raise ValueError("nothing to evaluate yet: start the training first")
            la, data = self._lanes[lane], self._data
        with la.lock:
            return la.step, evaluate(la.model, data.eval_x, data.eval_y)[0]

    # ----------------------------------------------------------------- saving

    def save(self, stem: str | os.PathLike, lane: int = 0, overwrite: bool = False, via: str = "app"
             ) -> tuple[Path, dict]:
        """Write lane ``lane``'s current weights as an STN Lab checkpoint (atomic;
        :func:`stn_core.checkpoints.save_checkpoint`), with its test error measured now on the
        held-out digits. Refuses (FileExistsError) to replace an existing checkpoint unless
        ``overwrite``. ``via``: "app" (the Live training page) or "cli" (``python -m
        stn_core.train.live``), for the recorded command. Returns (JSON path, meta)."""
        paths = checkpoint_paths(stem)
        if not overwrite and (paths["meta"].exists() or paths["weights"].exists()):
            raise FileExistsError(f"a checkpoint named {paths['meta'].stem!r} already exists in "
                                  f"{paths['meta'].parent}")
        with self._lock:
            if lane >= len(self._lanes) or self._data is None:
                raise ValueError("nothing to save yet: start the training first")
            la, data, cfg, state = self._lanes[lane], self._data, self.config, self._state
        with la.lock:  # between two steps: a consistent set of weights
            weights = {k: v.detach().clone() for k, v in la.model.state_dict().items()}
            step, seconds = la.step, la.train_seconds
            cfg_model = dict(la.model.config)
        with self._lock:
            history = list(la.evals)
        model = build_model(cfg_model["name"], cfg_model["transform"], cfg_model["input_size"], 10,
                            width=cfg_model["width"], target_params=cfg_model["target_params"])
        model.load_state_dict(weights)
        err, loss = evaluate(model, data.eval_x, data.eval_y)
        meta = checkpoint_meta(cfg, cfg_model, data, step, err, loss, seconds, history, state, _shown(paths["meta"]), via)
        return save_checkpoint(stem, model, meta), meta


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when inside it (for recorded commands)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def checkpoint_meta(cfg: LiveConfig, model_config: dict, data: LiveData, step: int, err: float, loss: float,
                    seconds: float, history: list[dict], state: str, out: str = "checkpoints/live/NAME.json", via: str = "app") -> dict:
    """Metadata of a saved live run (keys of :data:`stn_core.checkpoints.OPTIONAL_META`)."""
    name = model_config["name"]
    cli = (f"python -m stn_core.train.live --steps {step} --seed {cfg.seed} --transform {cfg.transform} "
           f"--target-params {cfg.target_params} --batch {cfg.batch} --lr {cfg.lr:g} --eval-size {cfg.eval_size} "
           f"--source {data.source}" + (" --lane cnn --compare" if name == "cnn" else "")
           + f" --out {out[:-len('.json')] if out.endswith('.json') else out}")
    return {
        "task": TASK, "model": name, "transform": model_config["transform"],
        "input_size": int(model_config["input_size"]), "num_classes": 10, "classes": ds.CLASSES,
        "test_error": round(float(err), 4), "steps": int(step), "seed": int(cfg.seed), "final": True,
        "command": (f"trained in the STN Lab app, Live training page (pages/live.py), {step:,} steps; "
                    f"the same run without the app: {cli}") if via == "app" else cli,
        "data_md5": data_md5(data), "torch_version": torch.__version__, "device": "cpu", "threads": 1,
        "test_set": dict(data.test_set),
        "train_args": {"steps": int(step), "batch": cfg.batch, "lr": cfg.lr, "optimizer": "adam",
                       "target_params": cfg.target_params, "seed": cfg.seed, "eval_size": cfg.eval_size,
                       "source": data.source},
        "train_seconds": round(float(seconds), 2),
        "samples_per_s": round(step * cfg.batch / seconds, 1) if seconds > 0 else None,
        "history": history,
        "notes": ("A short live run on a CPU, not the paper's schedule: a small model (about "
                  f"{cfg.target_params:,} weights) trained with Adam for {step:,} steps of batch {cfg.batch}. "
                  + data.description),
        "extra": {"live": {"run_state_when_saved": state, "data_source": data.source,
                           "test_loss": round(float(loss), 5), "paper_error_not_comparable": True}},
    }


# --------------------------------------------------------------------------- names and paths

def mnist_available(root: str | os.PathLike | None = None) -> bool:
    """Whether the full MNIST files are there (cheap: looks for the files, loads nothing)."""
    try:
        find_mnist_dir("train", None if root is None else Path(root))
        find_mnist_dir("test", None if root is None else Path(root))
        return True
    except DataError:
        return False


def default_name(snap: Snapshot) -> str:
    """A suggested checkpoint name: ``rts-st-cnn-aff-<steps>steps``."""
    short = {"affine": "aff", "projective": "proj", "tps": "tps"}[snap.config.transform]
    return f"rts-st-cnn-{short}-{snap.step}steps"


# --------------------------------------------------------------------------- headless CLI

def train_headless(cfg: LiveConfig, steps: int, poll: float = 0.2, timeout: float | None = None,
                   progress=None) -> LiveRun:
    """Run ``steps`` steps of a live run without the app (same code path); returns the
    finished run. ``progress(snapshot)`` is called every ``poll`` seconds."""
    run = LiveRun(replace(cfg, max_steps=int(steps), idle_timeout_s=max(cfg.idle_timeout_s, 3600.0)))
    t0 = time.monotonic()
    run.start()
    while True:
        run.touch()
        snap = run.snapshot()
        if progress is not None:
            progress(snap)
        if snap.state in ("finished", "error", "stopped"):
            break
        if timeout is not None and time.monotonic() - t0 > timeout:
            run.close()
            break
        time.sleep(poll)
    if run.state == "error":
        raise RuntimeError(run.snapshot().message)
    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stn_core.train.live",
                                description="Train the Live training page's small ST-CNN without the app.")
    d = LiveConfig()
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--transform", default=d.transform, choices=("affine", "projective", "tps"))
    p.add_argument("--target-params", type=int, default=d.target_params)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--eval-size", type=int, default=d.eval_size)
    p.add_argument("--source", default="auto", choices=("auto", "full", "sample"))
    p.add_argument("--compare", action="store_true", help="also train the plain CNN")
    p.add_argument("--lane", default="st-cnn", choices=("st-cnn", "cnn"), help="which model to save")
    p.add_argument("--out", required=True, help="checkpoint stem, e.g. checkpoints/live/my-run")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    if a.lane == "cnn" and not a.compare:
        p.error("--lane cnn needs --compare")
    if checkpoint_exists(a.out) and not a.overwrite:
        p.error(f"{a.out} exists; pass --overwrite to replace it")
    cfg = LiveConfig(transform=a.transform, target_params=a.target_params, batch=a.batch, lr=a.lr, seed=a.seed,
                     compare=a.compare, eval_size=a.eval_size, source=a.source)
    torch.set_num_threads(1)
    last = [0.0]

    def say(s: Snapshot) -> None:
        if time.monotonic() - last[0] > 10 and s.lanes:
            last[0] = time.monotonic()
            print(" · ".join(f"{la.name} step {la.step}, test error {la.last_error}" for la in s.lanes),
                  file=sys.stderr, flush=True)

    run = train_headless(cfg, a.steps, progress=say)
    path, meta = run.save(a.out, lane=0 if a.lane == "st-cnn" else 1, overwrite=a.overwrite, via="cli")
    print(f"{path}: test error {meta['test_error']:.2f} % on {meta['test_set']['size']} held-out digits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
