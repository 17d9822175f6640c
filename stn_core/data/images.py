"""Robust loading of user-supplied images (uploads): bytes -> float32 RGB array in [0, 1].

Everything that changes the picture (EXIF rotation, transparency, downscaling, first frame
only, clipped values) is reported in the returned list of warning strings."""

from __future__ import annotations

import io
import warnings as _warnings
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_BYTES = 20 * 1024 * 1024  # 20 MB
MAX_PIXELS = 40_000_000  # 40 MP
#: High-depth gray images (16-bit, 32-bit int, float) are turned into float32 before downscaling:
#: their pixel limit keeps that conversion under ~200 MB (a 77 KB 16-bit PNG bomb took 423 MB before).
MAX_PIXELS_HIGH_DEPTH = 12_000_000  # 12 MP
#: Decoded-buffer limit, from the header's size and mode, checked before anything is decoded.
MAX_DECODED_BYTES = 160 * 1024 * 1024
MAX_SIDE = 512
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2,
                    "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I": 4, "F": 4}


class ImageError(ValueError):
    """The bytes are not a usable image; the message says why in one sentence."""


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"image rejected as a possible decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise ImageError("not an image: the data is not in a format Pillow can read (PNG, JPEG, BMP, GIF, TIFF, WebP...)") from None
    except Exception as e:  # noqa: BLE001 - Pillow raises KeyError, TypeError, struct.error… on corrupt files
        raise ImageError(f"not a readable image ({type(e).__name__}: {e})") from None
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageError(f"image has an empty size {w}x{h}")
    high = im.mode in _HIGH_DEPTH
    limit = min(max_pixels, MAX_PIXELS_HIGH_DEPTH) if high else max_pixels
    if w * h > limit:
        kind = "a high-depth (16-bit or float) image" if high else "an image"
        raise ImageError(
            f"{kind} of {w}x{h} = {w * h / 1e6:.1f} MP, above the {limit / 1e6:.0f} MP limit for it "
            "(possible decompression bomb); resize it first"
        )
    decoded = w * h * _BYTES_PER_PIXEL.get(im.mode, 4)
    if decoded > MAX_DECODED_BYTES:
        raise ImageError(f"decoding this {w}x{h} {im.mode} image would take {_mb(decoded)}, above the "
                         f"{_mb(MAX_DECODED_BYTES)} limit; resize it first")
    return im


_HIGH_DEPTH = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Bring any PIL mode to RGB, RGBA, L, LA (8-bit) or a high-depth gray mode (I;16*, I, F)."""
    mode = im.mode
    if mode in ("RGB", "RGBA", "L", "LA") or mode in _HIGH_DEPTH:
        return im
    if mode == "P":
        return im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if mode in ("PA", "RGBa"):
        return im.convert("RGBA")
    if mode == "La":
        return im.convert("LA")
    if mode == "1":
        return im.convert("L")
    return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...


def _gray_float(im: Image.Image, warns: list[str]) -> np.ndarray:
    """High-depth gray image (I;16*, I, F) -> float32 (H, W) in [0, 1]; 16-bit scaled by 1/65535."""
    arr = np.asarray(im).astype(np.float32)
    if im.mode == "F":
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            warns.append(f"{bad:,} pixel{'s are' if bad != 1 else ' is'} not a finite number (NaN or infinity) "
                         "and became 0")
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        hi = float(arr.max()) if arr.size else 0.0
        if hi > 1.0:  # float data stored on an 8- or 16-bit scale
            arr = arr / (255.0 if hi <= 255.0 else 65535.0)
    else:
        arr = arr / 65535.0
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        warns.append("pixel values outside the 16-bit range were clipped")
        arr = np.clip(arr, 0.0, 1.0)
    return arr


def _to_float(im: Image.Image, warns: list[str]) -> np.ndarray:
    """RGB / RGBA / L / LA PIL image -> float32 (H, W, 3) in [0, 1]; alpha composited over white."""
    arr = np.asarray(im).astype(np.float32) / 255.0
    if im.mode in ("RGBA", "LA"):
        alpha = arr[:, :, -1:]
        color = arr[:, :, :-1]
        if (alpha < 1.0).any():
            warns.append("the image has transparent pixels: they were composited over a white background")
        arr = color * alpha + (1.0 - alpha)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(np.clip(arr, 0.0, 1.0), dtype=np.float32)


def load_image(
    data: bytes | bytearray | memoryview,
    max_bytes: int = MAX_BYTES,
    max_side: Optional[int] = MAX_SIDE,
    max_pixels: int = MAX_PIXELS,
) -> tuple[np.ndarray, list[str]]:
    """Decode image bytes -> (float32 (H, W, 3) in [0, 1], warnings).

    Applies the EXIF orientation, converts gray / 16-bit / palette / CMYK to RGB (16-bit scaled
    by 1/65535), composites transparency over white, keeps only the first frame and downscales
    so that the longer side is at most ``max_side`` (None: no limit). Raises ImageError for
    empty, oversized (``max_bytes``), non-image, truncated or too-many-pixel inputs."""
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f"load_image expects bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageError("the file is empty")
    if len(data) > max_bytes:
        raise ImageError(f"the file is {_mb(len(data))}, above the {_mb(max_bytes)} limit")
    warns: list[str] = []
    im = _open(data, max_pixels)
    fmt = im.format or "image"
    try:  # counting frames walks a TIFF/GIF's frame list: corrupt entries raise anything
        n_frames = int(getattr(im, "n_frames", 1))
        im.seek(0)
    except Exception as e:  # noqa: BLE001
        raise ImageError(f"the {fmt} file is corrupt ({type(e).__name__}: {e})") from None
    if n_frames > 1:
        warns.append(f"the {fmt} has {n_frames} frames: only the first one is used")

    declared_w, declared_h = im.size  # before any JPEG draft reduction
    # JPEG: let the decoder downscale by a power of two when the image is much larger.
    if max_side and fmt == "JPEG" and im.mode in ("RGB", "L") and max(im.size) > 2 * max_side:
        try:
            im.draft(im.mode, (max_side, max_side))
        except Exception:  # draft is an optimisation only
            pass

    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"image rejected as a possible decompression bomb ({e})") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure on a corrupt file is the file's fault
        raise ImageError(f"the {fmt} file is truncated or corrupt ({type(e).__name__}: {e})") from None

    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:
        orientation = 1
    if orientation not in (None, 1) and orientation not in range(2, 9):
        warns.append(f"ignored an invalid EXIF orientation tag ({orientation}; valid tags are 1–8)")
        orientation = 1
    if orientation not in (None, 1):
        try:
            im = ImageOps.exif_transpose(im)
            warns.append(f"rotated/flipped upright according to the EXIF orientation tag ({orientation})")
        except Exception as e:
            warns.append(f"the EXIF orientation tag could not be applied ({e})")

    if orientation in (5, 6, 7, 8):  # transposed: width and height swap
        declared_w, declared_h = declared_h, declared_w
    orig_w, orig_h = im.size
    if max_side and max(orig_w, orig_h) > max_side:
        s = max_side / max(orig_w, orig_h)
        new = (max(1, round(orig_w * s)), max(1, round(orig_h * s)))
    else:
        new = None

    im = _normalise_mode(im)
    if im.mode in _HIGH_DEPTH:
        gray = _gray_float(im, warns)
        if new is not None:
            gray = np.asarray(Image.fromarray(gray, mode="F").resize(new, Image.Resampling.LANCZOS))
            gray = np.clip(gray, 0.0, 1.0)
        img = np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2), dtype=np.float32)
    else:
        if new is not None:  # 8-bit: resize natively (RGBA/LA are resized premultiplied by PIL)
            im = im.resize(new, Image.Resampling.LANCZOS, reducing_gap=3.0)
        img = _to_float(im, warns)
    if new is not None:
        warns.append(
            f"downscaled from {declared_w}x{declared_h} to {new[0]}x{new[1]} (the longer side is limited to {max_side} px)"
        )
    return img, warns


def load_image_file(path: str | Path, **kw) -> tuple[np.ndarray, list[str]]:
    """``load_image`` on the bytes of a file (ImageError if missing)."""
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{p}: file not found")
    size = p.stat().st_size
    limit = kw.get("max_bytes", MAX_BYTES)
    if size > limit:
        raise ImageError(f"{p}: the file is {_mb(size)}, above the {_mb(limit)} limit")
    return load_image(p.read_bytes(), **kw)


def to_gray(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) or (H, W, 1) or (H, W) float image -> (H, W) float32 luma (ITU-R BT.601 weights)."""
    a = np.asarray(img)
    if a.ndim == 2:
        return a.astype(np.float32, copy=False)
    if a.ndim == 3 and a.shape[2] == 1:
        return a[:, :, 0].astype(np.float32, copy=False)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        rgb = a[:, :, :3].astype(np.float32, copy=False)
        return (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
    raise ValueError(f"to_gray expects (H, W), (H, W, 1) or (H, W, 3) arrays, got shape {a.shape}")
