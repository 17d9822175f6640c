"""A seeded generator of hostile image uploads (shared by tests/core/test_upload_fuzz.py and
scripts/hardening_report.py): valid images in every odd mode and size, truncations, bit flips, random
bytes, renamed files, and headers that claim huge sizes (decompression bombs)."""

from __future__ import annotations

import io
import random
import struct
import zlib

import numpy as np
from PIL import Image


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _claim_size(png: bytes, w: int, h: int) -> bytes:
    """A PNG whose IHDR claims ``w × h`` (the CRC fixed), pixels unchanged: a bomb-like header."""
    data = bytearray(png)
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _image(rng: random.Random) -> Image.Image:
    mode = rng.choice(["RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I", "F", "CMYK"])
    w, h = rng.choice([(1, 1), (1, 40), (40, 1), (600, 2), (7, 5), (64, 48), (700, 300)])
    a = np.random.default_rng(rng.randrange(1 << 30)).random((h, w, 4))
    if mode == "F":
        arr = (a[..., 0] * rng.choice([1.0, 255.0, 1e6, -5.0])).astype(np.float32)
        if rng.random() < 0.5:
            arr.flat[0] = rng.choice([np.nan, np.inf, -np.inf])
        return Image.fromarray(arr, "F")
    if mode == "I;16":
        return Image.fromarray((a[..., 0] * 65535).astype(np.uint16))
    if mode == "I":
        return Image.fromarray((a[..., 0] * 1e6 - 5e5).astype(np.int32), "I")
    rgba = Image.fromarray((a * 255).astype(np.uint8), "RGBA")
    return rgba.convert(mode) if mode != "RGBA" else rgba


def bad_uploads(seed: int, n: int) -> list[tuple[str, bytes]]:
    """``n`` (name, bytes) uploads, deterministic for ``seed``."""
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    for i in range(n):
        kind = rng.choice(["valid", "truncated", "bitflip", "noise", "bomb", "renamed", "empty", "exif", "gif"])
        if kind == "bomb":
            w, h = rng.choice([(30_000, 30_000), (10_000, 5_000), (6000, 6000), (4000, 3500), (1, 10**6)])
            base = _save(Image.fromarray(np.zeros((4, 4), np.uint16)) if rng.random() < 0.5 else Image.new("L", (4, 4)), "PNG")
            data = _claim_size(base, w, h)
        elif kind == "noise":
            data = bytes(rng.randrange(256) for _ in range(rng.choice([1, 8, 100, 4096])))
        elif kind == "empty":
            data = b""
        elif kind == "renamed":
            data = rng.choice([b"PK\x03\x04" + b"\0" * 60, b"\x80\x02}q\x00.", b"%PDF-1.4\n" + b"x" * 50,
                               b"<svg xmlns='http://www.w3.org/2000/svg'/>"])
        elif kind == "exif":
            exif = Image.Exif()
            exif[0x0112] = rng.choice([0, 1, 3, 6, 8, 9, 65535])
            data = _save(Image.new("RGB", (30, 20), (10, 200, 30)), "JPEG", exif=exif.tobytes())
        elif kind == "gif":
            frames = [Image.new("P", (16, 16), c) for c in range(rng.randint(1, 4))]
            data = _save(frames[0], "GIF", save_all=True, append_images=frames[1:])
        else:
            im = _image(rng)
            fmt = rng.choice({"F": ["TIFF"], "I": ["TIFF"], "I;16": ["TIFF", "PNG"],
                              "CMYK": ["TIFF", "JPEG"], "LA": ["PNG", "TIFF"]}.get(im.mode, ["PNG", "TIFF", "BMP", "WEBP"]))
            if fmt in ("BMP", "WEBP") and im.mode not in ("RGB", "RGBA", "L", "P", "1"):
                fmt = "PNG"
            data = _save(im, fmt)
            if kind == "truncated":
                data = data[: rng.randrange(1, max(2, len(data)))]
            elif kind == "bitflip":
                b = bytearray(data)
                for _ in range(rng.randint(1, 8)):
                    j = rng.randrange(len(b))
                    b[j] ^= 1 << rng.randrange(8)
                data = bytes(b)
        out.append((f"{i:03d}-{kind}", data))
    return out
