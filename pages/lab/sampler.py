"""Pure (non-UI) logic of the "Nearest vs bilinear" page.

* the two sampling kernels of the paper and their (sub)gradients, as numbers and as curves;
* which input pixels an output pixel reads, and with what weights (the zoom);
* the gradient fields ∂V/∂x^s, ∂V/∂y^s of the bilinear sampler, by autograd through
  ``grid_sample`` and by the paper's formulas (the reference backend's backward);
* a live experiment: fit an affine θ by gradient descent with either kernel;
* a 4× downscale with one sample per output pixel (aliasing).

Pixel coordinates follow :func:`stn_core.sampling.to_pixel`: ``x = ((x_norm + 1)·W − 1) / 2``,
so pixel m has its centre at x = m. Images are float (H, W, 3) in [0, 1].
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pages.lab.playground import Message, PlaygroundState, WarpResult, as_rgb, intuitive_to_params, invert_affine, warp
from pages.lab.tps_editor import single_thread
from stn_core.sampling import sample, to_pixel
from stn_core.transforms import affine_grid, attention_grid

MODES = ("nearest", "bilinear")
Size = tuple[int, int]

#: The page's view without link parameters: a 20° turn and a 1/0.6 zoom onto a 128 × 128 output
#: (upsampling, where the two kernels differ visibly).
DEFAULT_VIEW = PlaygroundState(rot=20.0, sx=0.6, sy=0.6, out="128")


# --------------------------------------------------------------------------- kernels

def bilinear_kernel(d: np.ndarray) -> np.ndarray:
    """k(d) = max(0, 1 − |d|), d = x − m."""
    return np.maximum(0.0, 1.0 - np.abs(np.asarray(d, dtype=np.float64)))


def nearest_kernel(d: np.ndarray) -> np.ndarray:
    """The integer kernel δ(⌊x + 0.5⌋ − m) as a function of d = x − m: 1 on [−½, ½), else 0."""
    d = np.asarray(d, dtype=np.float64)
    return ((d >= -0.5) & (d < 0.5)).astype(np.float64)


def bilinear_subgradient(d: np.ndarray) -> np.ndarray:
    """∂k(x − m)/∂x with the paper's choice g: +1 if m ≥ x (−1 < d ≤ 0), −1 if m < x (0 < d < 1),
    0 if |d| ≥ 1."""
    d = np.asarray(d, dtype=np.float64)
    return np.where((d > -1) & (d <= 0), 1.0, np.where((d > 0) & (d < 1), -1.0, 0.0))


def nearest_subgradient(d: np.ndarray) -> np.ndarray:
    """The integer kernel is piecewise constant: its derivative is 0 wherever it exists (the
    jumps at d = ±½ would be Dirac spikes, which no gradient step can use)."""
    return np.zeros_like(np.asarray(d, dtype=np.float64))


@dataclass(frozen=True)
class Curve:
    """A piecewise curve for a plot: x, y with NaN breaks at jumps, and the values at the jumps
    (``dots``: (x, y, taken) — taken = the value the formula gives there)."""

    x: np.ndarray
    y: np.ndarray
    dots: tuple[tuple[float, float, bool], ...] = ()


def _piecewise(breaks: Sequence[float], values: Sequence[float], lo: float, hi: float,
               slopes: Sequence[float] | None = None) -> Curve:
    """Curve made of pieces between sorted ``breaks`` (inside (lo, hi)); piece i starts at value
    values[i] with slope slopes[i] (default 0); NaN between pieces so jumps are not drawn."""
    edges = [lo, *breaks, hi]
    slopes = slopes or [0.0] * len(values)
    xs: list[float] = []
    ys: list[float] = []
    for i in range(len(edges) - 1):
        a, b = edges[i], edges[i + 1]
        xs += [a, b, math.nan]
        ys += [values[i], values[i] + slopes[i] * (b - a), math.nan]
    return Curve(np.array(xs), np.array(ys))


def kernel_curves(lo: float = -2.0, hi: float = 2.0) -> dict[str, Curve]:
    """The kernels k(d) and their (sub)gradients dk/dx on [lo, hi] for plotting:
    keys ``bilinear``, ``nearest``, ``bilinear_grad``, ``nearest_grad``."""
    bil = Curve(np.array([lo, -1.0, 0.0, 1.0, hi]), np.array([0.0, 0.0, 1.0, 0.0, 0.0]))
    near = _piecewise([-0.5, 0.5], [0.0, 1.0, 0.0], lo, hi)
    near = Curve(near.x, near.y, dots=((-0.5, 1.0, True), (-0.5, 0.0, False), (0.5, 0.0, True), (0.5, 1.0, False)))
    g = _piecewise([-1.0, 0.0, 1.0], [0.0, 1.0, -1.0, 0.0], lo, hi)
    g = Curve(g.x, g.y, dots=((0.0, 1.0, True), (0.0, -1.0, False), (-1.0, 0.0, True), (-1.0, 1.0, False),
                              (1.0, 0.0, True), (1.0, -1.0, False)))
    gn = Curve(np.array([lo, hi]), np.array([0.0, 0.0]))
    return {"bilinear": bil, "nearest": near, "bilinear_grad": g, "nearest_grad": gn}


# --------------------------------------------------------------------------- outputs and reads

@dataclass
class Comparison:
    """One θ sampled with both kernels: the two :class:`~pages.lab.playground.WarpResult` and
    |bilinear − nearest| per pixel ``(H', W')`` (max over channels)."""

    nearest: WarpResult
    bilinear: WarpResult
    diff: np.ndarray

    @property
    def messages(self) -> list[Message]:
        return self.bilinear.messages


def compare(image: np.ndarray, kind: str, params: Sequence[float], out_size: Size) -> Comparison:
    """Warp ``image`` with θ (a playground transform kind and its raw parameters) with both kernels."""
    with single_thread():
        near = warp(image, kind, params, out_size, "nearest")
        bil = warp(image, kind, params, out_size, "bilinear")
    return Comparison(nearest=near, bilinear=bil, diff=difference(near.output, bil.output))


@dataclass(frozen=True)
class Read:
    """One term of the kernel sum: input pixel (row n, column m), its weight k(x − m)·k(y − n),
    U there (zeros outside the image: zero padding) and whether it is inside."""

    n: int
    m: int
    weight: float
    value: tuple[float, ...]
    inside: bool


def source_pixel(grid: np.ndarray, in_size: Size, i: int, j: int) -> tuple[float, float]:
    """Pixel coordinates (x, y) of the source point of output pixel (row i, column j)."""
    h, w = in_size
    g = torch.from_numpy(np.asarray(grid[i, j], dtype=np.float64)).view(1, 1, 1, 2)
    x, y = to_pixel(g, h, w)
    return float(x), float(y)


def _pixel(image: np.ndarray, n: int, m: int) -> tuple[tuple[float, ...], bool]:
    h, w = image.shape[:2]
    if 0 <= n < h and 0 <= m < w:
        return tuple(float(v) for v in image[n, m]), True
    return tuple(0.0 for _ in range(image.shape[2])), False


def bilinear_reads(image: np.ndarray, x: float, y: float) -> list[Read]:
    """The four pixels around (x, y) with weights (1 − |x − m|)(1 − |y − n|) (those with weight 0
    included, so the 2×2 block is always complete)."""
    img = as_rgb(image)
    x0, y0 = math.floor(x), math.floor(y)
    out = []
    for n in (y0, y0 + 1):
        for m in (x0, x0 + 1):
            wgt = float(bilinear_kernel(x - m) * bilinear_kernel(y - n))
            val, inside = _pixel(img, n, m)
            out.append(Read(n=n, m=m, weight=wgt, value=val, inside=inside))
    return out


def nearest_read(image: np.ndarray, x: float, y: float) -> Read:
    """The single pixel (⌊y + ½⌋, ⌊x + ½⌋) the integer kernel reads, with weight 1."""
    img = as_rgb(image)
    n, m = math.floor(y + 0.5), math.floor(x + 0.5)
    val, inside = _pixel(img, n, m)
    return Read(n=n, m=m, weight=1.0, value=val, inside=inside)


def value_from_reads(reads: Sequence[Read]) -> tuple[float, ...]:
    """V = Σ weight · U over the reads (out-of-image reads contribute 0)."""
    c = len(reads[0].value)
    return tuple(float(sum(r.weight * r.value[k] for r in reads if r.inside)) for k in range(c))


@dataclass
class Zoom:
    """The zoom onto output pixel (i, j) and its 3 × 3 neighbourhood.

    patch: input pixels rows n0.., columns m0.. ``(R, R, 3)`` (zeros outside the image);
    sources: pixel coordinates of the source points of the 3 × 3 output pixels ``(3, 3, 2)``
    (NaN outside the output); the selected pixel's reads and values for both kernels.
    """

    i: int
    j: int
    x: float
    y: float
    n0: int
    m0: int
    patch: np.ndarray
    sources: np.ndarray
    bilinear: list[Read]
    nearest: Read
    v_bilinear: tuple[float, ...]
    v_nearest: tuple[float, ...]


def zoom(image: np.ndarray, grid: np.ndarray, i: int, j: int, radius: int = 2) -> Zoom:
    """Input neighbourhood ``(2·radius + 2)²`` around the source point of output pixel (i, j)."""
    img = as_rgb(image)
    hh, ww = grid.shape[:2]
    i = int(min(max(i, 0), hh - 1))
    j = int(min(max(j, 0), ww - 1))
    in_size = img.shape[:2]
    x, y = source_pixel(grid, in_size, i, j)
    n0, m0 = math.floor(y) - radius, math.floor(x) - radius
    size = 2 * radius + 2
    patch = np.zeros((size, size, 3), np.float32)
    for a in range(size):
        for b in range(size):
            patch[a, b] = _pixel(img, n0 + a, m0 + b)[0]
    sources = np.full((3, 3, 2), np.nan)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if 0 <= i + di < hh and 0 <= j + dj < ww:
                sources[di + 1, dj + 1] = source_pixel(grid, in_size, i + di, j + dj)
    reads = bilinear_reads(img, x, y)
    near = nearest_read(img, x, y)
    return Zoom(i=i, j=j, x=x, y=y, n0=n0, m0=m0, patch=patch, sources=sources, bilinear=reads, nearest=near,
                v_bilinear=value_from_reads(reads), v_nearest=value_from_reads([near]))


def largest_difference(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(row, column) where two images ``(H, W, C)`` differ most (max over channels)."""
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max(-1)
    idx = int(np.argmax(d))
    return idx // d.shape[1], idx % d.shape[1]


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a − b| per pixel, max over channels: ``(H, W)``."""
    return np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max(-1)


# --------------------------------------------------------------------------- gradient fields

@dataclass
class GradientFields:
    """∂V̄/∂x^s and ∂V̄/∂y^s per output pixel (V̄ = mean over channels), in intensity per input
    pixel of shift: ``(H', W')`` each, by autograd through ``grid_sample`` (fast) and by the
    paper's formulas (reference). ``max_diff``: max |fast − reference| away from the kinks
    (source points with an exactly integer pixel coordinate, where the paper's sub-gradient
    and ``grid_sample``'s one-sided difference differ by design); ``max_diff_all`` everywhere;
    ``nearest_max``: max |gradient| of the nearest kernel (0)."""

    gx: np.ndarray
    gy: np.ndarray
    gx_ref: np.ndarray
    gy_ref: np.ndarray
    max_diff: float
    max_diff_all: float
    n_kink: int
    n_total: int
    nearest_max: float


def _grid_grad(u: torch.Tensor, grid: torch.Tensor, mode: str, backend: str) -> torch.Tensor:
    g = grid.clone().requires_grad_(True)
    v = sample(u, g, mode=mode, backend=backend)
    v.mean(1).sum().backward()
    return g.grad[0]


def gradient_fields(image: np.ndarray, grid: np.ndarray) -> GradientFields:
    """Gradient fields of the bilinear sampler for ``image (H, W[, 3])`` at ``grid (H', W', 2)``
    (float64 throughout)."""
    with single_thread():
        return _gradient_fields(image, grid)


def _gradient_fields(image: np.ndarray, grid: np.ndarray) -> GradientFields:
    img = as_rgb(image)
    h, w = img.shape[:2]
    u = torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0).double()
    g = torch.from_numpy(np.asarray(grid, dtype=np.float64)).unsqueeze(0)
    fast = _grid_grad(u, g, "bilinear", "fast")
    ref = _grid_grad(u, g, "bilinear", "reference")
    scale = torch.tensor([2.0 / w, 2.0 / h], dtype=torch.float64)  # d x_norm / d x_pixel
    fast, ref = fast * scale, ref * scale
    x, y = to_pixel(g[0], h, w)
    kink = (x == torch.floor(x)) | (y == torch.floor(y))
    diff = (fast - ref).abs().amax(-1)
    off = diff[~kink]
    nearest = max(float(_grid_grad(u, g, "nearest", b).abs().max()) for b in ("fast", "reference"))
    return GradientFields(gx=fast[..., 0].numpy(), gy=fast[..., 1].numpy(), gx_ref=ref[..., 0].numpy(),
                          gy_ref=ref[..., 1].numpy(), max_diff=float(off.max()) if off.numel() else 0.0,
                          max_diff_all=float(diff.max()), n_kink=int(kink.sum()), n_total=int(kink.numel()),
                          nearest_max=nearest)


# --------------------------------------------------------------------------- θ alignment experiment

@dataclass
class AlignRun:
    """One optimisation: loss per step ``(steps + 1,)``, θ per step ``(steps + 1, 6)``, final V."""

    mode: str
    losses: np.ndarray
    thetas: np.ndarray
    final: np.ndarray


@dataclass
class AlignResult:
    """Template T (upright), the moved digit U, the θ that undoes the motion, and one run per kernel."""

    template: np.ndarray
    moved: np.ndarray
    target: np.ndarray
    runs: dict[str, AlignRun]
    seconds: float
    steps: int
    lr: float


def _grey(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(as_rgb(image).mean(-1)).float().view(1, 1, *image.shape[:2])


def align_experiment(digit: np.ndarray, rotation_deg: float = 30.0, shift: tuple[float, float] = (0.2, -0.15),
                     steps: int = 60, lr: float = 0.05, blur: float = 1.0) -> AlignResult:
    """Optimise θ (affine, 6 numbers, from the identity) with Adam so that sample(U, T_θ(G))
    matches the template, once per kernel. U is the template rotated by ``rotation_deg`` and
    moved by ``shift`` (normalised). The loss is the mean squared error between lightly blurred
    images (Gaussian σ = ``blur`` px widens the basin; 0 = none). With the nearest kernel
    every θ gradient is 0, so θ stays at the identity."""
    with single_thread():
        return _align(digit, rotation_deg, shift, steps, lr, blur)


def _align(digit: np.ndarray, rotation_deg: float, shift: tuple[float, float], steps: int, lr: float,
           blur: float) -> AlignResult:
    t0 = time.perf_counter()
    template = _grey(digit)
    size = tuple(template.shape[2:])
    distort = intuitive_to_params(PlaygroundState(rot=rotation_deg, tx=shift[0], ty=shift[1]), size)
    theta_d = torch.tensor(distort, dtype=torch.float32).view(1, 2, 3)
    moved = sample(template, affine_grid(theta_d, size), mode="bilinear")
    target = np.array(invert_affine(distort))
    kernel = _gauss(blur)
    tb = _blur(template, kernel)
    runs = {}
    for mode in MODES:
        theta = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]], requires_grad=True)
        adam = torch.optim.Adam([theta], lr=lr)  # a zero gradient (nearest) gives exactly a zero step
        losses, thetas = [], [theta.detach().clone()[0]]
        for step in range(steps + 1):
            v = sample(moved, affine_grid(theta.view(1, 2, 3), size), mode=mode)
            loss = F.mse_loss(_blur(v, kernel), tb)
            losses.append(float(loss.detach()))
            if step == steps:
                break
            adam.zero_grad(set_to_none=True)
            loss.backward()
            adam.step()
            thetas.append(theta.detach().clone()[0])
        with torch.no_grad():
            final = sample(moved, affine_grid(theta.view(1, 2, 3), size), mode=mode)
        runs[mode] = AlignRun(mode=mode, losses=np.array(losses), thetas=torch.stack(thetas).numpy(),
                              final=final[0, 0].numpy())
    return AlignResult(template=template[0, 0].numpy(), moved=moved[0, 0].numpy(), target=target, runs=runs,
                       seconds=time.perf_counter() - t0, steps=steps, lr=lr)


def _gauss(sigma: float) -> torch.Tensor | None:
    if sigma <= 0:
        return None
    r = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _blur(x: torch.Tensor, kernel: torch.Tensor | None) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, 1, H, W)`` (zero padding)."""
    if kernel is None:
        return x
    r = kernel.numel() // 2
    x = F.conv2d(x, kernel.view(1, 1, 1, -1), padding=(0, r))
    return F.conv2d(x, kernel.view(1, 1, -1, 1), padding=(r, 0))


# --------------------------------------------------------------------------- aliasing

@dataclass
class Downscale:
    """A 4× (``factor``) downscale with one sample per output pixel (nearest, bilinear: the
    attention θ with s = 1 on a smaller grid) and, for reference, the area average (what an
    anti-aliased resize gives). Images ``(H/f, W/f, 3)``."""

    factor: int
    original: np.ndarray
    nearest: np.ndarray
    bilinear: np.ndarray
    area: np.ndarray


def downscale(image: np.ndarray, factor: int = 4) -> Downscale:
    """Downscale ``image (H, W[, 3])`` by ``factor`` three ways (H, W are cropped to multiples of it)."""
    img = as_rgb(image)
    h, w = (img.shape[0] // factor) * factor, (img.shape[1] // factor) * factor
    if h < factor or w < factor:
        raise ValueError(f"the image ({img.shape[0]}×{img.shape[1]}) is too small to downscale {factor}×")
    img = img[:h, :w]
    u = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).unsqueeze(0)
    grid = attention_grid(torch.tensor([[1.0, 0.0, 0.0]]), (h // factor, w // factor))
    out = {}
    with single_thread():
        for mode in MODES:
            out[mode] = sample(u, grid, mode=mode, backend="reference")[0].permute(1, 2, 0).numpy()
        area = F.avg_pool2d(u, factor)[0].permute(1, 2, 0).numpy()
    return Downscale(factor=factor, original=img, nearest=out["nearest"], bilinear=out["bilinear"], area=area)


def zone_plate(size: int = 256) -> np.ndarray:
    """A zone plate (rings whose frequency grows from 0 at the centre to 0.5 cycles per pixel at
    the edge midpoints): float32 ``(size, size, 3)``; the classic test image for aliasing."""
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    r2 = (xx - c) ** 2 + (yy - c) ** 2
    img = 0.5 + 0.5 * np.cos(math.pi * r2 / size)
    return np.repeat(img[:, :, None], 3, axis=2).astype(np.float32)


def read_fraction(factor: int) -> tuple[float, float]:
    """Share of the input pixels that a factor× downscale reads: (nearest, bilinear)
    = (1/f², min(4, f²)/f²)."""
    f2 = factor * factor
    return 1.0 / f2, min(4, f2) / f2
