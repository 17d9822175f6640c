"""What a trained distorted-MNIST model does with an image: class probabilities and, for a model with a
spatial transformer, its output V, sampling grid, θ and the region of the input it samples (the
paper's Figure 1 (a)–(d)); and its most confident mistakes on a test set.

Coordinates: normalised [-1, 1], ``align_corners=False``; θ maps output → input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stn_core.regions import region_outline

# --------------------------------------------------------------------------- inference

@dataclass
class Prediction:
    """A model's view of one digit.

    probs ``(C,)``; pred (class index); for models with a spatial transformer: kind, output V
    ``(S, S)`` (before the 2× pooling of RTS), grid ``(S, S, 2)`` (``model.views(x).grid``),
    theta (the kind's natural form as numpy), region ``(M, 2)`` the border of the sampled region
    in the input (NaN breaks) and, for TPS, ctrl ``(K, 2)`` the input control points.
    """

    probs: np.ndarray
    pred: int
    kind: str | None = None
    output: np.ndarray | None = None
    grid: np.ndarray | None = None
    theta: np.ndarray | None = None
    region: np.ndarray | None = None
    ctrl: np.ndarray | None = None

    @property
    def confidence(self) -> float:
        return float(self.probs[self.pred])


def _as_batch(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image).float()
    if t.dim() == 2:
        t = t[None, None]
    elif t.dim() == 3:
        t = t[None]
    if t.dim() != 4 or t.shape[1] != 1:
        raise ValueError(f"expected a grey image (S, S), (1, S, S) or (N, 1, S, S), got {tuple(t.shape)}")
    return t


def predict(model: torch.nn.Module, images: np.ndarray | torch.Tensor, with_region: bool = True
            ) -> list[Prediction]:
    """The model's view of each digit of ``images`` (``(S, S)``, ``(1, S, S)`` or ``(N, 1, S, S)``,
    float in [0, 1], S = the model's input size). One batched forward pass."""
    x = _as_batch(images)
    want = getattr(model, "config", {}).get("input_size")
    if want is not None and tuple(x.shape[-2:]) != (want, want):
        raise ValueError(f"this model takes {want}×{want} digits, got {x.shape[-2]}×{x.shape[-1]}")
    st = getattr(model, "transformer", None)
    with torch.inference_mode():
        views = model.views(x)
    probs = torch.softmax(views.logits.float(), 1).numpy()
    out: list[Prediction] = []
    for i in range(x.shape[0]):
        p = Prediction(probs=probs[i], pred=int(probs[i].argmax()))
        if st is not None:
            p.kind = st.transform
            p.output = views.outputs[i, 0].numpy()
            p.grid = views.grid[i].numpy()
            p.theta = views.theta[i].numpy()
            if with_region:
                p.region = region_outline(st.transform, p.theta)
            if st.transform == "tps":
                p.ctrl = p.theta.reshape(-1, 2)
        out.append(p)
    return out


@torch.inference_mode()
def predict_probs(model: torch.nn.Module, x: torch.Tensor, chunk: int = 500) -> np.ndarray:
    """Class probabilities ``(N, C)`` for ``x (N, 1, S, S)``, in chunks (no transformer views)."""
    parts = [torch.softmax(model(x[i:i + chunk]).float(), 1) for i in range(0, x.shape[0], chunk)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, 0), np.float32)


@dataclass
class Mistakes:
    """Mistakes among the first ``n`` test digits: their indices (most confident first), the
    predicted classes and confidences of all n digits."""

    n: int
    indices: np.ndarray
    preds: np.ndarray
    confidence: np.ndarray

    @property
    def count(self) -> int:
        return int(self.indices.size)

    @property
    def error(self) -> float:
        return 100.0 * self.count / max(1, self.n)


def find_mistakes(probs: np.ndarray, labels: np.ndarray | torch.Tensor) -> Mistakes:
    """Where ``argmax(probs (N, C)) != labels (N,)``, the most confident mistakes first."""
    y = np.asarray(labels)
    preds = probs.argmax(1)
    conf = probs.max(1)
    wrong = np.nonzero(preds != y)[0]
    order = wrong[np.argsort(-conf[wrong], kind="stable")]
    return Mistakes(n=int(y.shape[0]), indices=order, preds=preds, confidence=conf)
