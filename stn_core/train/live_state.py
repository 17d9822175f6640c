"""What a live training run shows and keeps (:mod:`stn_core.train.live`): its settings, its data, curves
that halve their resolution when full, the replay frames, and the snapshot a page draws."""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass

import numpy as np
import torch

from stn_core.data import distortions as D
from stn_core.data import tasks as ds
from stn_core.data.common import DataError
from stn_core.data.samples import load_mnist_sample

TASK = "mnist-rts"
#: Frames the training replay keeps at most (thinned evenly over the run; the GIF export's limit too).
REPLAY_FRAMES = 60
#: Shipped-sample fallback: digits #0..SAMPLE_HOLDOUT-1 are held out, the rest are trained on.
SAMPLE_HOLDOUT = 100
#: Sub-folder of the checkpoint folder where live runs are saved.
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
        self.cap = REPLAY_FRAMES if cap is None else int(cap)
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
