"""Distorted-MNIST data for training and testing (paper Table 1).

* Training data is distorted **on the fly**, a whole batch at a time (vectorised on the
  training device). Batch ``t`` of a run depends only on ``(seed, t)``: the digits come from
  a fresh random permutation of the 60,000 training digits per epoch, and the distortion
  parameters from a generator seeded with ``(seed, t)``. A run can therefore be resumed at
  any step, and data-parallel ranks each take their slice of the same global batch.
* The test sets are fixed: the 10,000 MNIST test digits distorted once with ``TEST_SEED``
  (parameters drawn on the CPU, so the set is the same on every machine), cached in memory
  and optionally on disk as ``.npz`` (loaded with ``allow_pickle=False``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from stn_core.data import distortions as D
from stn_core.data.mnist import load_mnist

#: task name → distortion kind (None: plain MNIST).
TASKS: dict[str, str | None] = {"mnist-r": "R", "mnist-rts": "RTS", "mnist-p": "P", "mnist-e": "E", "mnist": None,
                                "mnist-addition": "RTS", "mnist-tc": "TC"}
#: Tasks whose input is a *pair* of digits in two channels and whose label is their sum
#: (paper appendix, MNIST addition): x ``(N, 2, 42, 42)``, y = label₁ + label₂ in 0..18.
PAIR_TASKS = ("mnist-addition",)
#: Seed of the fixed test sets.
TEST_SEED = 20150605
#: Seed of the validation digits held out of the training split (:func:`hold_out`) and of their distortions.
VAL_SEED = 20151207
#: Bump when the distortion code changes what a seed produces (invalidates disk caches).
DATA_VERSION = 1
CLASSES = [str(i) for i in range(10)]


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return task


def is_pair_task(task: str) -> bool:
    """True for the two-digit tasks (:data:`PAIR_TASKS`)."""
    return check_task(task) in PAIR_TASKS


def in_channels(task: str) -> int:
    """Input channels of a task: 2 for the pair tasks, else 1."""
    return 2 if is_pair_task(task) else 1


def num_classes(task: str) -> int:
    """Number of classes: 19 (sums 0..18) for MNIST addition, else 10."""
    return 19 if is_pair_task(task) else 10


def classes(task: str) -> list[str]:
    """Class names of a task: ``"0"``..``"18"`` for MNIST addition, else the ten digits."""
    return [str(i) for i in range(num_classes(task))]


def task_kind(task: str) -> str | None:
    """Distortion kind of a task (``"R"``, ``"RTS"``, ``"P"``, ``"E"``, ``"TC"`` or None)."""
    return TASKS[check_task(task)]


def input_size(task: str) -> int:
    """Side of the square images of a task (28, 42 for RTS, 60 for TC)."""
    kind = task_kind(task)
    return D.DIGIT if kind is None else D.CANVAS[kind]


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integers (``numpy.random.SeedSequence``)."""
    st = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint32)
    return int((int(st[0]) << 31) ^ int(st[1])) & ((1 << 63) - 1)


_SPLITS: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}


def load_split(split: str, root: str | os.PathLike | None = None, verify: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST split as tensors: images uint8 ``(N, 28, 28)``, labels int64 ``(N,)`` (cached)."""
    key = (split, str(root), bool(verify))
    if key not in _SPLITS:
        x, y = load_mnist(split, root=None if root is None else Path(root), verify=verify)
        _SPLITS[key] = (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)))
    return _SPLITS[key]


def mnist_md5(root: str | os.PathLike | None = None, verify: bool = True) -> str:
    """md5 of the MNIST arrays used (train then test; images then labels)."""
    h = hashlib.md5()
    for split in ("train", "test"):
        x, y = load_split(split, root, verify)
        h.update(x.numpy().tobytes())
        h.update(y.numpy().tobytes())
    return h.hexdigest()


def _tensor_md5(*ts: torch.Tensor) -> str:
    h = hashlib.md5()
    for t in ts:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- training stream

class TrainStream:
    """On-the-fly distorted training batches; batch ``t`` is a function of ``(seed, t)``.

    ``batch(t)`` → ``x (b, 1, S, S)`` float32 in [0, 1] and ``y (b,)`` int64 on ``device``,
    where the global batch of ``batch_size`` samples is split evenly across ``world``
    data-parallel ranks and this stream yields rank ``rank``'s slice.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, task: str, seed: int,
                 batch_size: int, rank: int = 0, world: int = 1, device: str | torch.device = "cpu") -> None:
        if batch_size < 1 or batch_size % world:
            raise ValueError(f"batch size {batch_size} must be a positive multiple of the number "
                             f"of processes ({world})")
        self.kind = task_kind(task)
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.n = images.shape[0]
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.lo = rank * (batch_size // world)
        self.hi = self.lo + batch_size // world
        self._perms: dict[tuple[int, int], torch.Tensor] = {}
        self.pair = is_pair_task(task)
        # RTS placement needs each digit's ink box: compute it once for the whole set
        self.bbox = D.ink_bbox(self.images) if self.kind == "RTS" else None

    def _perm(self, epoch: int, which: int = 0) -> torch.Tensor:
        key = (int(which), int(epoch))
        if key not in self._perms:
            if len(self._perms) > 4:
                self._perms.pop(min(self._perms, key=lambda k: k[1]))
            # which 0: the (first) digit, seed key 1 as before; which 1: the pair tasks' second digit
            g = D.make_generator(derive_seed(self.seed, 1, epoch) if which == 0 else derive_seed(self.seed, 3, epoch))
            self._perms[key] = torch.randperm(self.n, generator=g)
        return self._perms[key]

    def indices(self, step: int, which: int = 0) -> torch.Tensor:
        """Training-digit indices ``(batch_size,)`` of global batch ``step`` (CPU); ``which=1``:
        the second digits of the pair tasks (an independent permutation per epoch)."""
        pos = step * self.batch_size + torch.arange(self.batch_size)
        epoch, off = pos // self.n, pos % self.n
        out = torch.empty(self.batch_size, dtype=torch.long)
        for e in torch.unique(epoch).tolist():
            m = epoch == e
            out[m] = self._perm(int(e), which)[off[m]]
        return out

    def _pair_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """MNIST addition: two independent digits, each RTS-distorted with its own parameters."""
        i1 = self.indices(step, 0)[self.lo:self.hi].to(self.device)
        i2 = self.indices(step, 1)[self.lo:self.hi].to(self.device)
        g = D.make_generator(derive_seed(self.seed, 2, step))
        params = D.sample_params("RTS", 2 * self.batch_size, g)  # rows [0, B): digit 1, [B, 2B): digit 2
        b = self.batch_size
        x = warp_pair(self.images[i1], self.images[i2], D.slice_params(params, self.lo, self.hi),
                      D.slice_params(params, b + self.lo, b + self.hi), self.bbox[i1], self.bbox[i2])
        return x, self.labels[i1] + self.labels[i2]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pair:
            return self._pair_batch(step)
        idx = self.indices(step)[self.lo:self.hi].to(self.device)
        imgs, y = self.images[idx], self.labels[idx]
        if self.kind is None:
            return imgs.unsqueeze(1).float().div_(255.0), y
        g = D.make_generator(derive_seed(self.seed, 2, step))
        params = D.slice_params(D.sample_params(self.kind, self.batch_size, g), self.lo, self.hi)
        box = self.bbox[idx] if self.bbox is not None else None
        # TC: clutter cut from the whole training split
        return D.warp(imgs, self.kind, params, bbox=box, pool=self.images if self.kind == "TC" else None), y

    def iterate(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        step = start
        while stop is None or step < stop:
            yield self.batch(step)
            step += 1


class DistortedBatches(IterableDataset):
    """``IterableDataset`` of whole distorted batches (use ``DataLoader(ds, batch_size=None)``)."""

    def __init__(self, stream: TrainStream, start: int = 0, stop: int | None = None) -> None:
        self.stream, self.start, self.stop = stream, start, stop

    def __iter__(self):
        return self.stream.iterate(self.start, self.stop)


# --------------------------------------------------------------------------- digit pairs (MNIST addition)

def warp_pair(images1: torch.Tensor, images2: torch.Tensor, params1: dict[str, torch.Tensor],
              params2: dict[str, torch.Tensor], bbox1: torch.Tensor | None = None,
              bbox2: torch.Tensor | None = None) -> torch.Tensor:
    """Two digits per sample, each RTS-distorted with its own parameters, one per channel.

    images1, images2: ``(n, 28, 28)`` uint8 or float; params: :func:`stn_core.data.distortions.sample_params`
    ``("RTS", n)`` dicts. Returns ``(n, 2, 42, 42)`` float32 in [0, 1].
    """
    return torch.cat([D.warp(images1, "RTS", params1, bbox=bbox1),
                      D.warp(images2, "RTS", params2, bbox=bbox2)], 1)


def pair_test_plan(n: int, seed: int = TEST_SEED) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """How the fixed MNIST-addition test set is drawn from ``n`` test digits: pair i is test
    digit i (channel 1) with test digit ``partner[i]`` (channel 2), a seeded permutation;
    returns ``(partner (n,), params1, params2)`` (RTS parameters of the two channels)."""
    g = D.make_generator(derive_seed(seed, 10, 1))
    partner = torch.randperm(n, generator=g)
    params = D.sample_params("RTS", 2 * n, g)
    return partner, D.slice_params(params, 0, n), D.slice_params(params, n, 2 * n)


def make_pair_test_set(images: torch.Tensor, labels: torch.Tensor, seed: int = TEST_SEED,
                       chunk: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed MNIST-addition test set: one pair per test digit (:func:`pair_test_plan`):
    ``x (n, 2, 42, 42)`` float32, ``y (n,)`` = label₁ + label₂ (CPU)."""
    n = images.shape[0]
    partner, p1, p2 = pair_test_plan(n, seed)
    parts = [warp_pair(images[i:i + chunk], images[partner[i:i + chunk]], D.slice_params(p1, i, i + chunk),
                       D.slice_params(p2, i, i + chunk)) for i in range(0, n, chunk)]
    return torch.cat(parts), labels + labels[partner]


# --------------------------------------------------------------------------- fixed test sets

_TEST_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def make_test_set(images: torch.Tensor, labels: torch.Tensor, task: str, seed: int = TEST_SEED,
                  chunk: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Distort every image once: ``(N, 1, S, S)`` float32, labels ``(N,)`` (CPU); for MNIST
    addition ``(N, 2, 42, 42)`` pairs and their sums (:func:`make_pair_test_set`).

    All parameters are drawn up front from one generator (seeded by ``(seed, kind)``), so the
    result does not depend on ``chunk``.
    """
    kind = task_kind(task)
    if is_pair_task(task):
        return make_pair_test_set(images, labels, seed, chunk)
    if kind is None:
        return images.unsqueeze(1).float() / 255.0, labels.clone()
    g = D.make_generator(derive_seed(seed, D.KINDS.index(kind)))
    params = D.sample_params(kind, images.shape[0], g)
    pool = images if kind == "TC" else None  # TC: clutter cut from the whole split, whatever the chunk
    parts = [D.warp(images[i:i + chunk], kind, D.slice_params(params, i, i + chunk), pool=pool)
             for i in range(0, images.shape[0], chunk)]
    return torch.cat(parts), labels.clone()


def _generator_key(task: str) -> str:
    """The fingerprint of the task's distortion generator (:func:`distortions.fingerprint`; pairs: RTS)."""
    kind = "RTS" if is_pair_task(task) else task_kind(task)
    return "plain" if kind is None else D.fingerprint(kind)


def _cache_file(cache_dir: Path, task: str, seed: int) -> Path:
    return Path(cache_dir) / f"{task}-test-seed{seed}-v{DATA_VERSION}-{_generator_key(task)}.npz"


def _save_npz(path: Path, x: torch.Tensor, y: torch.Tensor, source_md5: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, images=x.numpy(), labels=y.numpy(),
                                source_md5=np.array(source_md5), version=np.array(DATA_VERSION))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_npz(path: Path, source_md5: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    try:
        with np.load(path, allow_pickle=False) as d:
            if str(d["source_md5"]) != source_md5 or int(d["version"]) != DATA_VERSION:
                return None
            return torch.from_numpy(d["images"].copy()), torch.from_numpy(d["labels"].copy())
    except (OSError, ValueError, KeyError):
        return None  # unreadable or stale cache: rebuild it


def fixed_test_set(task: str, seed: int = TEST_SEED, root: str | os.PathLike | None = None,
                   limit: int | None = None, cache_dir: str | os.PathLike | None = None,
                   verify: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed test set of a task: ``x (N, 1, S, S)`` float32 in [0, 1], ``y (N,)`` (CPU).

    Built once per process (cached in memory); with ``cache_dir`` also stored as / read from
    ``<cache_dir>/<task>-test-seed<seed>-v<version>-<generator fingerprint>.npz``. ``limit`` keeps the
    first N images.
    """
    check_task(task)
    key = (task, int(seed), str(root), bool(verify), _generator_key(task))
    if key not in _TEST_CACHE:
        images, labels = load_split("test", root, verify)
        src = _tensor_md5(images, labels)
        got = _load_npz(_cache_file(Path(cache_dir), task, seed), src) if cache_dir else None
        if got is None:
            got = make_test_set(images, labels, task, seed)
            if cache_dir:
                _save_npz(_cache_file(Path(cache_dir), task, seed), *got, src)
        _TEST_CACHE[key] = got
    x, y = _TEST_CACHE[key]
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y


def hold_out(images: torch.Tensor, labels: torch.Tensor, n: int, seed: int = VAL_SEED
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split the training digits ``(N, 28, 28)``, ``(N,)`` into ``(train images, train labels, validation
    images, validation labels)``: ``n`` digits chosen by a permutation seeded by ``seed`` alone (the same
    digits for every run, model and training seed) are held out; both parts keep the split's order."""
    total = images.shape[0]
    if not 0 < n < total:
        raise ValueError(f"--val-digits must be in 1..{total - 1} (the training split has {total} digits), got {n}")
    perm = torch.randperm(total, generator=D.make_generator(derive_seed(seed, 20)))
    val, train = perm[:n].sort().values, perm[n:].sort().values
    return images[train], labels[train], images[val], labels[val]


def validation_set(images: torch.Tensor, labels: torch.Tensor, task: str, n: int, seed: int = VAL_SEED
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(train images, train labels, x_val, y_val)``: :func:`hold_out` ``n`` training digits and distort them
    once, as the fixed test set is made (:func:`make_test_set`, seeded by ``seed``; the pair task pairs held-out
    digits with each other, TC cuts its clutter from them): a validation set the training stream never sees."""
    train_x, train_y, vi, vl = hold_out(images, labels, n, seed)
    x_val, y_val = make_test_set(vi, vl, task, seed)
    return train_x, train_y, x_val, y_val


def test_set_md5(x: torch.Tensor, y: torch.Tensor) -> str:
    """md5 of a test set's arrays (identifies the exact images a test error was measured on)."""
    return _tensor_md5(x, y)


class FixedTestSet(Dataset):
    """Map-style ``Dataset`` over :func:`fixed_test_set`: item i → (``(1, S, S)`` float, label)."""

    def __init__(self, task: str, seed: int = TEST_SEED, root: str | os.PathLike | None = None,
                 limit: int | None = None, cache_dir: str | os.PathLike | None = None) -> None:
        self.x, self.y = fixed_test_set(task, seed, root, limit, cache_dir)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


__all__ = ["CLASSES", "DistortedBatches", "FixedTestSet", "PAIR_TASKS", "TASKS", "TEST_SEED", "TrainStream",
           "VAL_SEED", "classes", "derive_seed", "fixed_test_set", "hold_out", "in_channels", "input_size",
           "is_pair_task", "load_split", "make_pair_test_set", "make_test_set", "mnist_md5", "num_classes",
           "pair_test_plan", "task_kind", "test_set_md5", "validation_set", "warp_pair"]
