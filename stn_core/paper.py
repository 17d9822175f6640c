"""The paper's published numbers (Jaderberg et al., NIPS 2015), in one place.

Every results script, report and page that puts the paper's number beside ours reads it from here.
"""

from __future__ import annotations

#: The paper's Table 1 schedule (appendix): SGD, 150k steps, batch 256, lr 0.01 ÷10 every 50k steps.
PAPER_STEPS, PAPER_BATCH, PAPER_LR = 150_000, 256, 0.01

#: Published test errors (%) of Table 1, keyed by (model, transform) then task.
PAPER_TABLE1: dict[tuple[str, str | None], dict[str, float]] = {
    ("fcn", None): {"mnist-r": 2.1, "mnist-rts": 5.2, "mnist-p": 3.1, "mnist-e": 3.2},
    ("cnn", None): {"mnist-r": 1.2, "mnist-rts": 0.8, "mnist-p": 1.5, "mnist-e": 1.4},
    ("st-fcn", "affine"): {"mnist-r": 1.2, "mnist-rts": 0.8, "mnist-p": 1.5, "mnist-e": 2.7},
    ("st-fcn", "projective"): {"mnist-r": 1.3, "mnist-rts": 0.9, "mnist-p": 1.4, "mnist-e": 2.6},
    ("st-fcn", "tps"): {"mnist-r": 1.1, "mnist-rts": 0.8, "mnist-p": 1.4, "mnist-e": 2.4},
    ("st-cnn", "affine"): {"mnist-r": 0.7, "mnist-rts": 0.5, "mnist-p": 0.8, "mnist-e": 1.2},
    ("st-cnn", "projective"): {"mnist-r": 0.8, "mnist-rts": 0.6, "mnist-p": 0.8, "mnist-e": 1.3},
    ("st-cnn", "tps"): {"mnist-r": 0.7, "mnist-rts": 0.5, "mnist-p": 0.8, "mnist-e": 1.1},
}

#: Published test errors (%) of the MNIST addition experiment (paper appendix), keyed by
#: (model, transform); task "mnist-addition".
PAPER_ADDITION: dict[tuple[str, str | None], float] = {
    ("fcn", None): 47.7, ("cnn", None): 14.7, ("st-fcn", "affine"): 18.5, ("2st-fcn", "affine"): 5.8,
}

#: Published CUB accuracies (%) of the paper's Table 3 (200 classes, Inception-BN, 224/448 px).
PAPER_TABLE3 = {
    "previous best": 81.0, "CNN (224px)": 82.3, "2×ST-CNN (224px)": 83.1, "2×ST-CNN (448px)": 83.9,
    "4×ST-CNN (448px)": 84.1,
}

#: The paper's text: translated + cluttered MNIST (60×60), test error (%).
PAPER_TC: dict[str, float] = {"fcn": 13.2, "cnn": 3.5, "st-fcn": 2.0, "st-cnn": 1.7}


def paper_error(model: str, transform: str | None, task: str) -> float | None:
    """Published test error (%) (Table 1, the MNIST addition experiment, or TC from the text) or None.
    The text's TC numbers name no transform; we read them as the affine transformers', like the
    other experiments' headline ST models."""
    if task == "mnist-addition":
        return PAPER_ADDITION.get((model, transform))
    if task == "mnist-tc":
        return PAPER_TC.get(model) if transform in (None, "affine") and (transform is None) == (
            model in ("fcn", "cnn")) else None
    return PAPER_TABLE1.get((model, transform), {}).get(task)

