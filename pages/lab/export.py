"""Export a warp as an animated GIF (Pillow) or MP4 (OpenCV), and replay a sequence of images.

**Warp animations** (:func:`warp_frames` → :func:`gif_bytes` / :func:`mp4_bytes`): θ goes from
the identity (frame 0) to a target θ (last frame). Every frame shows, side by side, the input
U with the region the sampler reads (the output border mapped into U: the quadrilateral of the
paper's Figure 1 (b), red; the sampling grid, cyan) and the output V, rendered with the same
sampler as the app (:func:`pages.lab.playground.warp`, bilinear by default, zero padding).

How θ is interpolated (:func:`param_path`):

* ``controls`` given (the playground's intuitive controls: rotation, scale, shear,
  translation, perspective): the *controls* go linearly from their identity values to the
  target and θ is composed from them at every frame. A rotation then turns at constant speed
  and stays rigid.
* otherwise (raw θ, a learned θ of the explorer, projective, TPS): the raw parameters go
  linearly, ``p(t) = (1 − t)·p_identity + t·p_target``. For a rotation this passes through a
  shrunken (non-rigid) matrix half-way (linear θ interpolation is not a rotation); for TPS the
  control points move along straight lines.

**Training replay** (:func:`training_replay_gif`): any list of images of the same kind (the
live page's snapshots of the transformer output, the CUB box history, …) → one GIF, with an
optional caption per frame. Images are ``(H, W)`` / ``(H, W, 3)``, uint8 or float in [0, 1];
frames are padded to a common size.

Limits (checked, :class:`ExportError` otherwise): at most :data:`MAX_FRAMES` frames, panels at
most :data:`MAX_SIDE` px on their longer side.

Example::

    frames = warp_frames(image, "affine", target_params, n_frames=30, side=256)
    open("warp.gif", "wb").write(gif_bytes(frames, fps=15))
    open("warp.mp4", "wb").write(mp4_bytes(frames, fps=15))  # ExportError if no codec works
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Mapping, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pages.lab import playground as pg
from pages.lab.figures import grid_polylines, to_uint8
from stn_core.regions import region_outline
from stn_core.transforms import identity_params

MAX_FRAMES = 60
MAX_SIDE = 512
MIN_SIDE = 32
#: Largest frame side accepted by the encoders (two panels with margins and a gap).
MAX_FRAME_SIDE = 3 * MAX_SIDE
#: MP4 codecs (FourCC) tried in this order: H.264 first (plays everywhere), then MPEG-4 part 2.
MP4_CODECS = ("avc1", "mp4v")
KINDS = ("affine", "attention", "projective", "tps")

GAP = 8  # px between the two panels
OUTLINE_RGB = (255, 75, 43)
GRID_RGB = (0, 216, 255)
BACKGROUND_RGB = (255, 255, 255)
MARGIN_RGB = (225, 225, 225)


class ExportError(ValueError):
    """An export request that cannot be fulfilled (limits, bad input, no working video codec)."""


# --------------------------------------------------------------------------- θ paths

def identity(kind: str, n_params: int | None = None) -> np.ndarray:
    """Identity parameters of a kind (TPS: the √K×√K lattice for K = n_params / 2)."""
    if kind not in KINDS:
        raise ExportError(f"unknown transform kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "tps":
        k = 16 if n_params is None else int(n_params) // 2
        return identity_params("tps", k=k).double().numpy()
    return identity_params(kind).double().numpy()


def interpolate_params(kind: str, target: Sequence[float], t: float) -> np.ndarray:
    """Raw parameters at fraction ``t`` ∈ [0, 1] of the straight line from the identity
    (t = 0) to ``target`` (t = 1)."""
    tgt = np.asarray(target, dtype=np.float64).reshape(-1)
    ident = identity(kind, tgt.size)
    if ident.size != tgt.size:
        raise ExportError(f"{kind} needs {ident.size} parameters, got {tgt.size}")
    t = float(min(max(t, 0.0), 1.0))
    return (1.0 - t) * ident + t * tgt


def interpolate_controls(controls: Mapping[str, float], t: float) -> dict[str, float]:
    """The playground's intuitive controls at fraction ``t`` from their identity values."""
    t = float(min(max(t, 0.0), 1.0))
    out = {}
    for name, spec in pg.SLIDERS.items():
        target = float(controls.get(name, spec.default))
        out[name] = (1.0 - t) * spec.default + t * target
    return out


def param_path(kind: str, target: Sequence[float], n_frames: int, controls: Mapping[str, float] | None = None,
               in_size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """``n_frames`` raw parameter vectors from the identity to ``target`` (both included).
    With ``controls`` (affine, attention, projective), the intuitive controls are interpolated
    and θ composed from them (``in_size`` (H, W) as in the playground); the last frame is then
    exactly ``target`` when the controls describe it."""
    n = _check_frames(n_frames)
    ts = [i / (n - 1) if n > 1 else 1.0 for i in range(n)]
    if controls is None or kind == "tps":
        return [interpolate_params(kind, target, t) for t in ts]
    out = []
    for t in ts:
        state = pg.PlaygroundState(kind=kind, **interpolate_controls(controls, t))
        out.append(np.asarray(pg.intuitive_to_params(state, in_size), dtype=np.float64))
    out[-1] = np.asarray(target, dtype=np.float64).reshape(-1)
    return out


# --------------------------------------------------------------------------- frames

def _check_frames(n: int) -> int:
    n = int(n)
    if not 1 <= n <= MAX_FRAMES:
        raise ExportError(f"an animation has 1 to {MAX_FRAMES} frames, not {n}")
    return n


def _check_side(side: int) -> int:
    side = int(side)
    if not MIN_SIDE <= side <= MAX_SIDE:
        raise ExportError(f"the panel size must be {MIN_SIDE} to {MAX_SIDE} px, not {side}")
    return side


def panel_size(h: int, w: int, side: int) -> tuple[int, int]:
    """(height, width) of a panel whose longer side is ``side`` px (aspect kept)."""
    s = side / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """uint8 (h, w, 3) → a PIL image of ``size`` (H, W): nearest when enlarging (crisp pixels),
    area-like when shrinking."""

    img = Image.fromarray(to_uint8(rgb))
    resample = Image.Resampling.NEAREST if size[0] >= rgb.shape[0] else Image.Resampling.BOX
    return img.resize((size[1], size[0]), resample=resample)


def _polylines(points: np.ndarray) -> list[list[tuple[float, float]]]:
    """Split points (M, 2) at NaN rows into runs of ≥ 2 finite points."""
    runs, cur = [], []
    for x, y in np.asarray(points, dtype=np.float64):
        if np.isfinite(x) and np.isfinite(y):
            cur.append((float(x), float(y)))
        else:
            if len(cur) > 1:
                runs.append(cur)
            cur = []
    if len(cur) > 1:
        runs.append(cur)
    return runs


def _to_panel(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Normalised (x, y) → panel pixel coordinates (continuous: −1 is the left edge, +1 the right)."""
    h, w = size
    p = np.asarray(points, dtype=np.float64)
    return np.stack([(p[:, 0] + 1.0) * w / 2.0, (p[:, 1] + 1.0) * h / 2.0], 1)


def outline_points(kind: str, params: Sequence[float]) -> np.ndarray:
    """Border of the output window mapped into the input ``(M, 2)`` normalised (NaN breaks)."""
    if kind == "tps":

        return region_outline("tps", np.asarray(params, dtype=np.float64).reshape(-1, 2))
    return pg.outline(kind, [float(v) for v in params])


def render_frame(image: np.ndarray, kind: str, params: Sequence[float], side: int = 256,
                 out_size: tuple[int, int] | None = None, sampling: str = "bilinear", n_lines: int = 7,
                 caption: str | None = None, margin: float = 0.2) -> np.ndarray:
    """One frame: U (inside a grey ``margin``, a fraction of its size) with the sampled region
    (red) and sampling grid (cyan) | V. ``image (H, W[, 3])``; ``out_size`` (H', W') of V
    (default: the input's); the input panel's image and V are ``side`` px on their longer side.
    Returns uint8 ``(H_frame, W_frame, 3)``."""

    side = _check_side(side)
    img = pg.as_rgb(image)
    h, w = img.shape[:2]
    out_size = (h, w) if out_size is None else (int(out_size[0]), int(out_size[1]))
    res = pg.warp(img, kind, [float(v) for v in params], out_size, sampling)
    v = np.where(res.valid[:, :, None], res.output, 0.0)
    in_sz = panel_size(h, w, side)
    out_sz = panel_size(out_size[0], out_size[1], side)
    # the input sits in a margin (light grey) so a window reaching beyond it stays visible
    my, mx = round(in_sz[0] * margin), round(in_sz[1] * margin)
    left = Image.new("RGB", (in_sz[1] + 2 * mx, in_sz[0] + 2 * my), MARGIN_RGB)
    left.paste(_resize(img, in_sz), (mx, my))
    draw = ImageDraw.Draw(left)
    lw = max(1, side // 170)
    offset = np.array([mx, my], dtype=np.float64)
    for run in _polylines(_to_panel(grid_polylines(res.grid, res.valid, n_lines), in_sz) + offset):
        draw.line(run, fill=GRID_RGB, width=lw)
    for run in _polylines(_to_panel(outline_points(kind, params), in_sz) + offset):
        draw.line(run, fill=OUTLINE_RGB, width=max(2, side // 90), joint="curve")
    in_sz = (left.height, left.width)
    right = _resize(v, out_sz)
    text_h = 0 if not caption else max(14, side // 14) + 6
    height = max(in_sz[0], out_sz[0]) + text_h
    canvas = Image.new("RGB", (in_sz[1] + GAP + out_sz[1], height), BACKGROUND_RGB)
    canvas.paste(left, (0, 0))
    canvas.paste(right, (in_sz[1] + GAP, 0))
    if caption:
        _caption(canvas, caption, max(in_sz[0], out_sz[0]) + 3, max(14, side // 14))
    return np.asarray(canvas)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _caption(canvas: Image.Image, text: str, y: int, size: int) -> None:
    ImageDraw.Draw(canvas).text((4, y), text, fill=(20, 20, 20), font=_font(size))


def warp_frames(image: np.ndarray, kind: str, target: Sequence[float], n_frames: int = 30, side: int = 256,
                controls: Mapping[str, float] | None = None, out_size: tuple[int, int] | None = None,
                sampling: str = "bilinear", captions: bool = True) -> list[np.ndarray]:
    """Frames of the warp going from the identity to ``target`` (see :func:`param_path`):
    a list of ``n_frames`` uint8 ``(H, W, 3)`` images of equal size."""
    if kind not in KINDS:
        raise ExportError(f"unknown transform kind {kind!r}; choose one of {', '.join(KINDS)}")
    img = pg.as_rgb(image)
    path = param_path(kind, target, n_frames, controls, (img.shape[0], img.shape[1]))
    n = len(path)
    frames = []
    for i, p in enumerate(path):
        problems = pg.check_params(kind, p) if kind != "tps" else []
        if problems:  # a singular θ on the way (e.g. a mirror passes through scale 0): skip its picture
            p = path[i - 1] if i > 0 else identity(kind, len(p))
        cap = f"t = {i / (n - 1) if n > 1 else 1.0:.2f}" if captions else None
        frames.append(render_frame(img, kind, p, side, out_size, sampling, caption=cap))
    return frames


# --------------------------------------------------------------------------- encoders

def _as_frames(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Check the count, convert to uint8 RGB and pad every frame to the largest size (white)."""
    if len(frames) == 0:
        raise ExportError("no frames to export")
    _check_frames(len(frames))
    rgb = [to_uint8(f) for f in frames]
    h = max(f.shape[0] for f in rgb)
    w = max(f.shape[1] for f in rgb)
    if max(h, w) > MAX_FRAME_SIDE:
        raise ExportError(f"frames of {w}×{h} px are too large (at most {MAX_FRAME_SIDE} px on a side)")
    out = []
    for f in rgb:
        if f.shape[:2] != (h, w):
            pad = np.full((h, w, 3), 255, np.uint8)
            pad[:f.shape[0], :f.shape[1]] = f
            f = pad
        out.append(np.ascontiguousarray(f))
    return out


def gif_bytes(frames: Sequence[np.ndarray], fps: float = 12.0, loop: int = 0, hold_last: float = 1.0) -> bytes:
    """Animated GIF (Pillow) of ``frames``; ``loop`` 0 = forever; the last frame is held
    ``hold_last`` s longer."""
    fr = _as_frames(frames)
    if not 0.5 <= fps <= 50:
        raise ExportError(f"fps must be between 0.5 and 50, not {fps}")
    ms = int(round(1000.0 / fps))
    durations = [ms] * len(fr)
    durations[-1] = ms + int(round(1000 * max(0.0, hold_last)))
    pics = [Image.fromarray(f) for f in fr]
    buf = io.BytesIO()
    pics[0].save(buf, format="GIF", save_all=True, append_images=pics[1:], duration=durations, loop=loop,
                 optimize=False, disposal=1)
    return buf.getvalue()


def _even(fr: list[np.ndarray]) -> list[np.ndarray]:
    """Pad to even width and height (H.264 needs them)."""
    h, w = fr[0].shape[:2]
    eh, ew = h + h % 2, w + w % 2
    if (eh, ew) == (h, w):
        return fr
    out = []
    for f in fr:
        pad = np.full((eh, ew, 3), 255, np.uint8)
        pad[:h, :w] = f
        out.append(pad)
    return out


def read_video(path: str | os.PathLike) -> tuple[int, tuple[int, int]]:
    """(frames decoded, (height, width)) of a video file read back with ``cv2.VideoCapture``."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return 0, (0, 0)
        n, size = 0, (0, 0)
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            n += 1
            size = frame.shape[:2]
        return n, size
    finally:
        cap.release()


def _write_mp4(fr: list[np.ndarray], fps: float, codec: str, path: str) -> bool:

    h, w = fr[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*codec), float(fps), (w, h))
    try:
        if not writer.isOpened():
            return False
        for f in fr:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return False
    n, _size = read_video(path)
    return n > 0


_CODEC_CACHE: dict[str, str | None] = {}


def mp4_bytes(frames: Sequence[np.ndarray], fps: float = 12.0, codecs: Sequence[str] = MP4_CODECS
              ) -> tuple[bytes, str]:
    """MP4 of ``frames`` written with ``cv2.VideoWriter``: tries each codec in turn (H.264
    "avc1", then MPEG-4 "mp4v") and keeps the first whose file is non-empty and can be read
    back with ``cv2.VideoCapture``. Returns (bytes, codec used); :class:`ExportError` naming
    the codecs tried when none works (or OpenCV is missing)."""
    fr = _even(_as_frames(frames))
    if not 0.5 <= fps <= 60:
        raise ExportError(f"fps must be between 0.5 and 60, not {fps}")
    with tempfile.TemporaryDirectory(prefix="stn-export-") as tmp:
        for codec in codecs:
            if _CODEC_CACHE.get(codec, codec) is None:
                continue  # known not to work in this process
            path = os.path.join(tmp, f"warp-{codec}.mp4")
            ok = False
            try:
                ok = _write_mp4(fr, fps, codec, path)
            except Exception:  # a broken codec must not take the export down: try the next one
                ok = False
            if ok:
                _CODEC_CACHE[codec] = codec
                with open(path, "rb") as fh:
                    return fh.read(), codec
            _CODEC_CACHE[codec] = None
    raise ExportError(f"no MP4 codec works in this OpenCV build (tried {', '.join(codecs)}): the file came out "
                      "empty or unreadable. Export a GIF instead, or install an OpenCV build with FFmpeg.")


def mp4_codec() -> str | None:
    """The first working MP4 codec (a 2-frame probe), or None."""
    try:
        return mp4_bytes([np.zeros((16, 16, 3), np.uint8)] * 2, fps=2)[1]
    except ExportError:
        return None


# --------------------------------------------------------------------------- training replay

def training_replay_frames(images: Sequence[np.ndarray], captions: Sequence[str] | None = None,
                           side: int = 256) -> list[np.ndarray]:
    """Images of a training run (e.g. the transformer's output after each evaluation) → frames:
    each scaled so its longer side is ``side`` px, with an optional caption underneath."""
    side = _check_side(side)
    if len(images) == 0:
        raise ExportError("no images to replay")
    _check_frames(len(images))
    if captions is not None and len(captions) != len(images):
        raise ExportError(f"{len(captions)} captions for {len(images)} images")
    out = []
    for i, im in enumerate(images):
        a = np.asarray(im)
        size = panel_size(a.shape[0], a.shape[1], side)
        pic = _resize(a, size)
        cap = captions[i] if captions is not None else None
        text_h = max(14, side // 14) + 6 if cap else 0
        canvas = Image.new("RGB", (size[1], size[0] + text_h), BACKGROUND_RGB)
        canvas.paste(pic, (0, 0))
        if cap:
            _caption(canvas, cap, size[0] + 3, max(14, side // 14))
        out.append(np.asarray(canvas))
    return out


def training_replay_gif(frames: Sequence[np.ndarray], fps: float = 4.0, captions: Sequence[str] | None = None,
                        side: int = 256) -> bytes:
    """A GIF replaying a sequence of images (training progress), ``captions`` under each
    (e.g. "step 500"). At most :data:`MAX_FRAMES` images: subsample longer runs with
    :func:`subsample`."""
    return gif_bytes(training_replay_frames(frames, captions, side), fps=fps)


def subsample(n: int, limit: int = MAX_FRAMES) -> list[int]:
    """Up to ``limit`` evenly spread indices into a sequence of length n, first and last included."""
    if n <= limit:
        return list(range(n))
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


__all__ = [
    "ExportError", "MAX_FRAMES", "MAX_SIDE", "MP4_CODECS", "gif_bytes", "identity", "interpolate_controls",
    "params_from_theta",
    "interpolate_params", "mp4_bytes", "mp4_codec", "outline_points", "panel_size", "param_path", "read_video",
    "render_frame", "subsample", "training_replay_frames", "training_replay_gif", "warp_frames",
]


def params_from_theta(kind: str, theta: np.ndarray) -> np.ndarray:
    """A transformer's θ in its natural form (``SpatialTransformer.warp(u).theta`` of one image:
    affine ``(2, 3)``, projective ``(3, 3)``, TPS control points ``(K, 2)``, attention ``(3,)``)
    → the flat raw parameters :func:`warp_frames` takes (projective: normalised to h33 = 1)."""
    th = np.asarray(theta, dtype=np.float64)
    if kind == "affine":
        return th.reshape(-1)[:6].copy()
    if kind == "attention":
        return th.reshape(-1)[:3].copy()
    if kind == "projective":
        h = th.reshape(3, 3)
        if abs(h[2, 2]) < 1e-12:
            raise ExportError("this projective θ has h33 = 0 and cannot be normalised")
        return (h / h[2, 2]).reshape(-1)[:8].copy()
    if kind == "tps":
        return th.reshape(-1).copy()
    raise ExportError(f"unknown transform kind {kind!r}; choose one of {', '.join(KINDS)}")
