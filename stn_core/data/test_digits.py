"""The test digits a page or report evaluates on: a task's fixed seeded test set, or without the full
MNIST files the 500 shipped sample digits distorted exactly like the first 500 of that test set."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from stn_core.data import distortions as D
from stn_core.data import tasks as ds
from stn_core.data.common import DataError
from stn_core.data.samples import load_mnist_sample


@dataclass
class TestDigits:
    """Distorted test digits of a task: ``x (N, 1, S, S)`` float32 in [0, 1], ``y (N,)`` int64;
    ``source`` "full" (the fixed test set) or "sample" (the shipped 500), and a caption."""

    x: torch.Tensor
    y: torch.Tensor
    source: str
    caption: str


def sample_test_set(task: str, seed: int = ds.TEST_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """The 500 shipped MNIST test digits distorted like the first 500 of the fixed test set:
    parameters for all 10,000 test digits are drawn from the same seeded generator as
    :func:`stn_core.data.tasks.make_test_set`, and the first 500 are used."""
    images, labels = load_mnist_sample()
    kind = ds.task_kind(task)
    imgs = torch.from_numpy(images)
    if kind is None:
        return imgs.unsqueeze(1).float() / 255.0, torch.from_numpy(labels)
    g = D.make_generator(ds.derive_seed(seed, D.KINDS.index(kind)))
    params = D.sample_params(kind, 10_000, g)
    return D.warp(imgs, kind, D.slice_params(params, 0, imgs.shape[0])), torch.from_numpy(labels)


def test_digits(task: str, root: str | os.PathLike | None = None, seed: int = ds.TEST_SEED) -> TestDigits:
    """The fixed test set of ``task``; without the MNIST files, the shipped-sample stand-in."""
    try:
        x, y = ds.fixed_test_set(task, seed, root)
        return TestDigits(x, y, "full", f"fixed {ds.check_task(task)} test set: the {x.shape[0]:,} MNIST test "
                                        f"digits distorted once with seed {seed}")
    except (DataError, OSError) as e:
        missing = str(e).split(". ")[0]
    x, y = sample_test_set(task, seed)
    return TestDigits(x, y, "sample", f"full MNIST not found ({missing}): showing the {x.shape[0]} shipped test "
                                      f"digits, distorted with the same seeded parameters as the first "
                                      f"{x.shape[0]} digits of the fixed {task} test set")
