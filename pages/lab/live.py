"""Live training (issue 8): a small ST-CNN learns RTS MNIST in a background thread, for the
Live training page (``pages/live.py``); no Streamlit here.

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

    python -m pages.lab.live --steps 1500 --seed 0 --out checkpoints/live/my-run
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stn_core.data import tasks as ds
from stn_core.data import distortions as D
from stn_core.checkpoints import checkpoint_paths, save_checkpoint
from stn_core.models import build_model, count_params

TASK = "mnist-rts"
#: Most runs training at the same time in one process (all browser sessions together).
MAX_ACTIVE = int(os.environ.get("STN_LAB_LIVE_MAX", "2") or 2)
#: Shipped-sample fallback: digits #0..SAMPLE_HOLDOUT-1 are held out, the rest are trained on.
SAMPLE_HOLDOUT = 100
#: Sub-folder of the checkpoint folder where live runs are saved.
LIVE_SUBDIR = "live"
STATES = ("ready", "preparing", "running", "paused", "finished", "stopped", "error")
LANE_NAMES = ("ST-CNN", "CNN")


class LiveBusyError(RuntimeError):
    """Too many live runs are training at once."""


# --------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class LiveConfig:
    """Settings of a live run (defaults: the measured ones, see the module docstring)."""

    transform: str = "affine"
    target_params: int = 30_000  # weights of each model (ST-CNN; the CNN gets the same count)
    batch: int = 64
    lr: float = 0.002  # Adam
    seed: int = 0
    compare: bool = False  # also train a plain CNN of the same size on the same batches
    eval_size: int = 1000  # held-out test digits for the error curve and the saved test error
    eval_every: int = 50  # steps between test-error measurements
    display_every: int = 10  # steps between updates of the displayed batch
    display_n: int = 16
    log_every: int = 5  # training steps averaged into one loss point (before decimation)
    history_cap: int = 400  # points per curve; beyond that a curve halves its resolution
    max_steps: int = 20_000  # the run ends here ("finished")
    idle_timeout_s: float = 300.0  # workers stop when the page has not touched the run this long
    source: str = "auto"  # "auto" | "full" | "sample": where the digits come from
    data_root: str | None = None  # MNIST folder (None: the default places)

    def __post_init__(self) -> None:
        if self.transform not in ("affine", "projective", "tps"):
            raise ValueError(f"transform must be affine, projective or tps, got {self.transform!r}")
        if self.source not in ("auto", "full", "sample"):
            raise ValueError(f"source must be auto, full or sample, got {self.source!r}")
        for name in ("batch", "eval_size", "eval_every", "display_every", "display_n", "log_every", "max_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.history_cap < 4:
            raise ValueError(f"history_cap must be at least 4, got {self.history_cap}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")


# --------------------------------------------------------------------------- data

@dataclass(frozen=True)
class LiveData:
    """Digits of a live run: training digits ``(N, 28, 28)`` uint8 + labels (distorted on the
    fly), held-out test digits ``eval_x (M, 1, 42, 42)`` float32 in [0, 1] + ``eval_y (M,)``."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    eval_x: torch.Tensor
    eval_y: torch.Tensor
    source: str  # "full" | "sample"
    description: str  # one sentence for the page
    test_set: dict  # JSON description of the held-out digits (goes into the checkpoint)
    root: str | os.PathLike | None  # the MNIST folder given (None: the default places)


def fixed_test_prefix(images: torch.Tensor, labels: torch.Tensor, seed: int = ds.TEST_SEED
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` digits of the fixed ``mnist-rts`` test set, from the first ``n`` MNIST
    test digits ``images (n, 28, 28)`` uint8: the parameters of all 10,000 are drawn as in
    :func:`stn_core.data.tasks.make_test_set` and the first n used → ``(n, 1, 42, 42)``, ``(n,)``."""
    kind = ds.task_kind(TASK)
    g = D.make_generator(ds.derive_seed(seed, D.KINDS.index(kind)))
    params = D.sample_params(kind, 10_000, g)
    n = int(images.shape[0])
    return D.warp(images, kind, D.slice_params(params, 0, n)), labels[:n].clone()


_DATA: dict[tuple, LiveData] = {}
_DATA_LOCK = threading.Lock()


def load_data(source: str = "auto", eval_size: int = 1000, root: str | os.PathLike | None = None) -> LiveData:
    """The digits of a live run (cached per process; shared read-only by all runs).

    ``source`` "full": the MNIST files (DataError if missing); "sample": the shipped 500 test
    digits; "auto": full when available, else sample."""
    key = (source, int(eval_size), None if root is None else str(root))
    with _DATA_LOCK:
        if key not in _DATA:
            _DATA[key] = _load_data(source, int(eval_size), root)
        return _DATA[key]


def _load_data(source: str, eval_size: int, root) -> LiveData:
    from stn_core.data.common import DataError

    missing = ""
    if source in ("auto", "full"):
        try:
            x, y = ds.load_split("train", root)
            xt, yt = ds.load_split("test", root)
            m = min(eval_size, int(xt.shape[0]))
            ex, ey = fixed_test_prefix(xt[:m], yt[:m])
            test_set = {"seed": ds.TEST_SEED, "size": m, "md5": ds.test_set_md5(ex, ey),
                        "what": f"the first {m:,} digits of the fixed mnist-rts test set"}
            desc = (f"Training on the {x.shape[0]:,} MNIST training digits, RTS-distorted on the fly; "
                    f"test error on {m:,} held-out test digits (the first {m:,} of the fixed RTS test set).")
            return LiveData(x, y, ex, ey, "full", desc, test_set, root)
        except (DataError, OSError) as e:
            if source == "full":
                raise
            missing = str(e).split(". ")[0]
    from stn_core.data.samples import load_mnist_sample

    images, labels = load_mnist_sample()
    imgs, labs = torch.from_numpy(images), torch.from_numpy(labels)
    hold = min(SAMPLE_HOLDOUT, eval_size, imgs.shape[0] // 2)
    ex, ey = fixed_test_prefix(imgs[:hold], labs[:hold])
    test_set = {"seed": ds.TEST_SEED, "size": hold, "md5": ds.test_set_md5(ex, ey),
                "what": f"shipped sample digits #0-{hold - 1} = the first {hold} digits of the fixed mnist-rts "
                        "test set"}
    desc = (f"The full MNIST training set was not found{' (' + missing + ')' if missing else ''}, so this run "
            f"trains on the {imgs.shape[0] - hold} shipped sample digits #{hold}–{imgs.shape[0] - 1} "
            f"(MNIST test digits), RTS-distorted afresh in every batch: it still learns, but from few digits, "
            f"so expect a higher error than with the full set. The test error is measured on the {hold} held-out "
            f"digits #0–{hold - 1}, never trained on. Import MNIST with: python -m stn_core.data mnist")
    return LiveData(imgs[hold:].contiguous(), labs[hold:].contiguous(), ex, ey, "sample", desc, test_set, None)


_MD5: dict[str, str] = {}


def data_md5(data: LiveData) -> str | None:
    """md5 of the MNIST arrays a full-data run trains on (None for the shipped sample);
    computed when first needed (saving), not while the page waits for the first step."""
    if data.source != "full":
        return None
    key = str(data.root)
    if key not in _MD5:
        _MD5[key] = ds.mnist_md5(data.root)
    return _MD5[key]


# --------------------------------------------------------------------------- bounded curves

class Series:
    """A curve with at most ``cap`` points. ``mode="mean"``: ``every`` added values are averaged
    into one point, and when the cap is reached neighbouring points are averaged pairwise (the
    resolution halves, ``every`` doubles); ``mode="keep"``: every value is a point and every
    other point is dropped at the cap (the latest is kept)."""

    def __init__(self, cap: int, every: int = 1, mode: str = "mean") -> None:
        if mode not in ("mean", "keep"):
            raise ValueError(f"mode must be 'mean' or 'keep', got {mode!r}")
        self.cap, self.every, self.mode = int(cap), int(every), mode
        self.steps: list[int] = []
        self.values: list[float] = []
        self._acc, self._n, self._last = 0.0, 0, 0

    def add(self, step: int, value: float) -> None:
        self._acc += float(value)
        self._n += 1
        self._last = int(step)
        if self.mode == "keep" or self._n >= self.every:
            self.steps.append(int(step))
            self.values.append(self._acc / self._n)
            self._acc, self._n = 0.0, 0
            if len(self.values) > self.cap:
                self._halve()

    def _halve(self) -> None:
        n = len(self.values)
        if self.mode == "keep":
            keep = list(range(n - 1, -1, -2))[::-1]
            self.steps = [self.steps[i] for i in keep]
            self.values = [self.values[i] for i in keep]
            return
        odd = n % 2  # an odd first point stays alone
        s, v = self.steps[:odd], self.values[:odd]
        for i in range(odd, n, 2):
            s.append(self.steps[i + 1])
            v.append(0.5 * (self.values[i] + self.values[i + 1]))
        self.steps, self.values = s, v
        self.every *= 2

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies: steps int64 ``(n,)``, values float64 ``(n,)``; values still being averaged
        give a provisional last point (so the curve reaches the latest step)."""
        steps, values = list(self.steps), list(self.values)
        if self._n:
            steps.append(self._last)
            values.append(self._acc / self._n)
        return np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.values)


# --------------------------------------------------------------------------- training replay

@dataclass(frozen=True)
class ReplayFrame:
    """The displayed batch at one point of training, for the training replay (GIF). Its arrays
    are never modified after creation (frames share them with snapshots, no copies)."""

    step: int
    error: float | None  # test error % of the latest evaluation, measured at ``error_step`` ≤ ``step``
    error_step: int | None
    outputs: np.ndarray  # (n, S, S) uint8: the transformer's output V
    thetas: np.ndarray | None  # (n, 2, 3) affine / (n, 3, 3) projective / (n, K, 2) TPS
    pred: np.ndarray | None  # (n,) the ST-CNN's predicted classes
    serial: int  # unique within its run (never reused, not even after a reset)


class FrameHistory:
    """At most ``cap`` :class:`ReplayFrame` s spread evenly over the whole run: frames are kept
    every ``stride``-th :meth:`add`; when ``cap − 1`` are kept every other one is dropped (the
    first, step 0, stays) and the stride doubles, so the spacing stays even. The latest frame
    added is always the last of :meth:`frames`."""

    def __init__(self, cap: int | None = None) -> None:
        from pages.lab.export import MAX_FRAMES

        self.cap = MAX_FRAMES if cap is None else int(cap)
        if self.cap < 3:
            raise ValueError(f"a frame history needs room for at least 3 frames, got {self.cap}")
        self.stride = 1
        self._added = 0
        self._kept: list[ReplayFrame] = []
        self._latest: ReplayFrame | None = None

    def add(self, frame: ReplayFrame) -> None:
        if self._added % self.stride == 0:
            self._kept.append(frame)
            if len(self._kept) > self.cap - 1:  # one place stays free for the latest frame
                self._kept = self._kept[::2]
                self.stride *= 2
        self._latest = frame
        self._added += 1

    def frames(self) -> tuple[ReplayFrame, ...]:
        """The kept frames in order, ending with the latest one (at most ``cap``; no array copies)."""
        if self._latest is None:
            return ()
        if self._kept and self._kept[-1] is self._latest:
            return tuple(self._kept)
        return (*self._kept, self._latest)

    def __len__(self) -> int:
        return len(self.frames())


# --------------------------------------------------------------------------- snapshot

@dataclass(frozen=True)
class LaneView:
    """One model's progress (copies; safe to use while training goes on)."""

    name: str
    params: int
    step: int
    loss_steps: np.ndarray
    loss: np.ndarray  # training loss (cross-entropy), averaged per point
    eval_steps: np.ndarray
    eval_error: np.ndarray  # test error % on the held-out digits
    train_seconds: float
    display_pred: np.ndarray | None  # (display_n,) predicted classes of the displayed batch
    display_conf: np.ndarray | None  # (display_n,) their probabilities

    @property
    def last_error(self) -> float | None:
        return float(self.eval_error[-1]) if len(self.eval_error) else None

    @property
    def steps_per_s(self) -> float | None:
        return self.step / self.train_seconds if self.train_seconds > 0.5 and self.step else None


@dataclass(frozen=True)
class Snapshot:
    """A consistent, copied view of a run for drawing."""

    state: str
    message: str
    config: LiveConfig
    lanes: tuple[LaneView, ...]
    data_source: str | None
    data_description: str
    eval_size: int
    display_step: int | None  # step of the ST-CNN whose view of the batch is shown
    inputs: np.ndarray | None  # (display_n, S, S) float32: the fixed held-out digits
    labels: np.ndarray | None  # (display_n,)
    outputs: np.ndarray | None  # (display_n, S, S) float32: the transformer's output V
    thetas: np.ndarray | None  # (display_n, 2, 3) affine / (n, 3, 3) projective / (n, K, 2) TPS
    replay: tuple[ReplayFrame, ...] = ()  # the displayed batch through training (≤ export.MAX_FRAMES)

    @property
    def active(self) -> bool:
        """Training or about to (the page should keep redrawing)."""
        return self.state in ("preparing", "running")

    @property
    def step(self) -> int:
        return self.lanes[0].step if self.lanes else 0


# --------------------------------------------------------------------------- run

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


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 500) -> tuple[float, float]:
    """(error %, mean cross-entropy) of ``model`` on ``x (N, 1, S, S)``, ``y (N,)``."""
    was = model.training
    model.eval()
    wrong, loss = 0, 0.0
    for i in range(0, x.shape[0], chunk):
        logits = model(x[i:i + chunk])
        wrong += int((logits.argmax(1) != y[i:i + chunk]).sum())
        loss += float(F.cross_entropy(logits, y[i:i + chunk], reduction="sum"))
    model.train(was)
    n = max(1, int(x.shape[0]))
    return 100.0 * wrong / n, loss / n


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
                    loss = F.cross_entropy(lane.model(xb), yb)
                    lane.opt.zero_grad(set_to_none=True)
                    loss.backward()
                    lane.opt.step()
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
        st = lane.model.transformer
        with lane.lock, torch.no_grad():
            lane.model.eval()
            x = data.eval_x[:n]
            v = st(x)
            theta = st.last_theta.detach().clone()
            probs = torch.softmax(lane.model(x), 1)
            lane.model.train()
        conf, pred = probs.max(1)
        outputs, thetas = v[:, 0].numpy().copy(), theta.numpy().copy()
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

    def replay_gif(self, snap: Snapshot | None = None, fps: float = 4.0) -> bytes:
        """:func:`replay_gif` of ``snap`` (default: a fresh snapshot); the last GIF is kept, so
        redrawing a still page does not encode it again."""
        snap = self.snapshot() if snap is None else snap
        key = (tuple(f.serial for f in snap.replay), snap.config.transform, float(fps))
        memo = self._gif
        if memo is not None and memo[0] == key:
            return memo[1]
        data = replay_gif(snap, fps)
        self._gif = (key, data)
        return data

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
        pages.lab.live``), for the recorded command. Returns (JSON path, meta)."""
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
    cli = (f"python -m pages.lab.live --steps {step} --seed {cfg.seed} --transform {cfg.transform} "
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

_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_name(name: str) -> str:
    """A user's checkpoint name → a safe file stem (letters, digits, ``.``, ``_``, ``-``; at
    most 60 characters; no leading dot). ValueError with a human message when nothing is left."""
    s = _NAME_OK.sub("-", str(name).strip()).strip("-.")
    s = re.sub(r"-{2,}", "-", s)[:60].strip("-.")
    if not s:
        raise ValueError("Give the checkpoint a name with letters or digits, e.g. my-live-run.")
    return s


def live_dir() -> Path:
    """Folder of saved live runs: ``<checkpoint folder>/live`` (where the model explorer looks,
    :func:`pages.lab.explorer.discover_live`)."""
    from stn_core.registry import LIVE_SUBDIR as sub
    from stn_core.registry import checkpoint_dir

    return checkpoint_dir() / sub


def live_stem(name: str, directory: str | os.PathLike | None = None) -> Path:
    """``<live_dir()>/<sanitized name>`` (no suffix)."""
    return (live_dir() if directory is None else Path(directory)) / sanitize_name(name)


def mnist_available(root: str | os.PathLike | None = None) -> bool:
    """Whether the full MNIST files are there (cheap: looks for the files, loads nothing)."""
    from stn_core.data.common import DataError
    from stn_core.data.mnist import find_mnist_dir

    try:
        find_mnist_dir("train", None if root is None else Path(root))
        find_mnist_dir("test", None if root is None else Path(root))
        return True
    except DataError:
        return False


def exists(stem: str | os.PathLike) -> bool:
    paths = checkpoint_paths(stem)
    return paths["meta"].exists() or paths["weights"].exists()


def default_name(snap: Snapshot) -> str:
    """A suggested checkpoint name: ``rts-st-cnn-aff-<steps>steps``."""
    short = {"affine": "aff", "projective": "proj", "tps": "tps"}[snap.config.transform]
    return f"rts-st-cnn-{short}-{snap.step}steps"


# --------------------------------------------------------------------------- drawing (no UI)

GOOD, BAD, REGION = (40, 170, 70), (220, 50, 50), (255, 60, 60)


def region_pixels(kind: str, theta: np.ndarray, size: int, scale: int, per_edge: int = 16) -> np.ndarray:
    """Border of the region sampled by θ, in pixel coordinates of an image ``size·scale`` wide:
    ``(M, 2)`` float (x, y). θ maps output → input, normalised, align_corners=False."""
    from stn_core.regions import region_outline

    pts = region_outline(kind, np.asarray(theta), per_edge)
    return (pts + 1.0) * 0.5 * size * scale


def mosaic(images: np.ndarray, cols: int = 4, scale: int = 3, gap: int = 4, borders: list | None = None,
           regions: list[np.ndarray | None] | None = None) -> np.ndarray:
    """Tile ``images (n, S, S)`` float in [0, 1] into a uint8 RGB picture: ``cols`` per row,
    each enlarged ``scale``× (nearest), ``gap`` px apart on white; ``borders`` an optional
    RGB colour per tile (a 2-px frame); ``regions`` optional pixel polylines ``(M, 2)`` per
    tile (from :func:`region_pixels`) drawn in red."""
    import cv2

    imgs = np.asarray(images, dtype=np.float32)
    n, s = imgs.shape[0], imgs.shape[1]
    rows = max(1, math.ceil(n / cols))
    t = s * scale
    pitch = t + gap
    out = np.full((gap + rows * pitch, gap + cols * pitch, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y0, x0 = gap + r * pitch, gap + c * pitch
        tile = np.clip(np.nan_to_num(imgs[i]), 0, 1)
        tile = np.repeat(np.repeat((tile * 255 + 0.5).astype(np.uint8), scale, 0), scale, 1)
        tile = np.ascontiguousarray(np.repeat(tile[:, :, None], 3, 2))
        if regions is not None and regions[i] is not None:
            pts = np.asarray(regions[i], dtype=np.float64)
            ok = np.isfinite(pts).all(1)
            if ok.sum() >= 2:
                poly = np.round(pts[ok] * 16).astype(np.int32).reshape(-1, 1, 2)
                cv2.polylines(tile, [poly], False, REGION, thickness=max(1, scale // 2), lineType=cv2.LINE_AA,
                              shift=4)
        if borders is not None and borders[i] is not None:
            cv2.rectangle(tile, (0, 0), (t - 1, t - 1), tuple(int(v) for v in borders[i]), thickness=2)
        out[y0:y0 + t, x0:x0 + t] = tile
    return out


def batch_pictures(snap: Snapshot, cols: int = 4, scale: int = 3) -> tuple[np.ndarray, np.ndarray] | None:
    """(inputs with the sampled regions, transformer outputs framed green/red by the ST-CNN's
    prediction) as uint8 RGB mosaics; None before the first display update."""
    if snap.inputs is None:
        return None
    st = snap.lanes[0] if snap.lanes else None
    return _pictures(snap.config.transform, snap.inputs, snap.labels, snap.outputs, snap.thetas,
                     None if st is None else st.display_pred, cols, scale)


def _pictures(kind: str, inputs: np.ndarray, labels: np.ndarray | None, outputs: np.ndarray | None,
              thetas: np.ndarray | None, pred: np.ndarray | None, cols: int, scale: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """(inputs ``(n, S, S)`` with the regions sampled by ``thetas``, ``outputs`` framed by
    ``pred`` vs ``labels``) as uint8 RGB mosaics (see :func:`batch_pictures`)."""
    n, s = inputs.shape[0], inputs.shape[1]
    regions = None
    if thetas is not None:
        regions = [region_pixels(kind, thetas[i], s, scale) for i in range(n)]
    borders = None
    if pred is not None and labels is not None:
        borders = [GOOD if int(p) == int(y) else BAD for p, y in zip(pred, labels)]
    left = mosaic(inputs, cols, scale, regions=regions)
    right = mosaic(outputs if outputs is not None else np.zeros_like(inputs), cols, scale, borders=borders)
    return left, right


REPLAY_GAP = 12  # px between (a)+(b) and (c) in a replay frame


def replay_picture(snap: Snapshot, frame: ReplayFrame, cols: int = 4, scale: int = 2) -> np.ndarray:
    """One frame of the training replay: the inputs with the sampled regions (red) | the
    transformer's outputs framed green/red by the ST-CNN's prediction, as at ``frame.step``.
    uint8 ``(H, W, 3)`` (W = 2 mosaics + :data:`REPLAY_GAP`)."""
    if snap.inputs is None:
        raise ValueError("no displayed batch yet: start the training first")
    outputs = frame.outputs.astype(np.float32) / 255.0
    left, right = _pictures(snap.config.transform, snap.inputs, snap.labels, outputs, frame.thetas, frame.pred,
                            cols, scale)
    gap = np.full((left.shape[0], REPLAY_GAP, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], 1)


def replay_caption(frame: ReplayFrame) -> str:
    """"step N · error E %" (E: the latest test error measured by then)."""
    err = "–" if frame.error is None else f"{frame.error:.1f}"
    return f"step {frame.step:,} · error {err} %"


def replay_gif(snap: Snapshot, fps: float = 4.0, side: int = 512) -> bytes:
    """Animated GIF of ``snap.replay`` (at most :data:`pages.lab.export.MAX_FRAMES` frames, from
    step 0 to the latest display update): :func:`replay_picture` per frame, scaled so its longer
    side is ``side`` px, captioned "step N · error E %". ValueError with fewer than 2 frames."""
    from pages.lab.export import training_replay_gif

    frames = snap.replay
    if len(frames) < 2:
        raise ValueError("the training replay needs at least two recorded steps: let the training run a little")
    pics = [replay_picture(snap, f) for f in frames]
    return training_replay_gif(pics, fps=fps, captions=[replay_caption(f) for f in frames], side=side)


def curves_figure(snap: Snapshot, height: int = 330):
    """Plotly figure: training loss (left axis) and test error % (right panel) per step, one
    colour per model."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.09, subplot_titles=(
        "Training loss (cross-entropy) per step", f"Test error (%) on {snap.eval_size:,} held-out digits per step"))
    colours = {"ST-CNN": "#d62728", "CNN": "#7f7f7f"}
    for lane in snap.lanes:
        c = colours.get(lane.name, "#1f77b4")
        label = f"{lane.name} ({lane.params:,} weights)"
        fig.add_trace(go.Scatter(x=lane.loss_steps, y=lane.loss, mode="lines", name=label,
                                 line=dict(color=c, width=3), legendgroup=lane.name), 1, 1)
        fig.add_trace(go.Scatter(x=lane.eval_steps, y=lane.eval_error, mode="lines+markers", name=label,
                                 line=dict(color=c, width=3), marker=dict(size=7), legendgroup=lane.name,
                                 showlegend=False), 1, 2)
    fig.update_xaxes(rangemode="tozero")
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[0, 100], row=1, col=2)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), font=dict(size=16),
                      legend=dict(orientation="h", yanchor="top", y=-0.12, x=0), showlegend=True,
                      template="plotly_white", uirevision="live")
    return fig


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
    p = argparse.ArgumentParser(prog="python -m pages.lab.live",
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
    if exists(a.out) and not a.overwrite:
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


__all__ = ["FrameHistory", "LIVE_SUBDIR", "LaneView", "LiveBusyError", "LiveConfig", "LiveData", "LiveRun",
           "MAX_ACTIVE", "ReplayFrame", "Series", "Snapshot", "replay_caption", "replay_gif", "replay_picture",
           "active_runs", "batch_pictures", "busy_message", "checkpoint_meta",
           "curves_figure", "data_md5", "default_name", "evaluate", "exists", "fixed_test_prefix", "live_dir", "live_stem",
           "load_data", "main", "mnist_available", "mosaic", "region_pixels", "sanitize_name", "train_headless"]

if __name__ == "__main__":
    raise SystemExit(main())
