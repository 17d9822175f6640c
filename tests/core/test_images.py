"""load_image on good and bad inputs, all generated here with PIL."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from stn_core.data.images import ImageError, load_image, load_image_file, to_gray


def _png(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


def _jpeg(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


def _noise(w: int, h: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    ch = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    a = rng.integers(0, 256, (h, w, ch), dtype=np.uint8)
    return Image.fromarray(a[:, :, 0] if ch == 1 else a, mode)


def _png_with_size(w: int, h: int) -> bytes:
    """A tiny valid PNG whose IHDR claims w x h (a decompression-bomb-like header)."""
    data = bytearray(_png(Image.new("L", (4, 4))))
    ihdr = 8 + 8  # signature, then length + b"IHDR"
    data[ihdr : ihdr + 8] = struct.pack(">II", w, h)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def test_rgb_png_round_trip():
    im = _noise(30, 20)
    img, warns = load_image(_png(im))
    assert img.shape == (20, 30, 3) and img.dtype == np.float32 and warns == []
    np.testing.assert_allclose(img, np.asarray(im) / 255.0, atol=1e-6)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "empty"),
        (b"hello, this is just some text and not an image at all" * 3, "not an image"),
        ("str".encode("utf-16"), "not an image"),
    ],
)
def test_not_an_image(data, match):
    with pytest.raises(ImageError, match=match):
        load_image(data)


def test_wrong_type():
    with pytest.raises(TypeError):
        load_image("a string path")  # type: ignore[arg-type]


def test_truncated_png_and_jpeg():
    png = _png(_noise(64, 64))
    with pytest.raises(ImageError, match="truncated|corrupt|not"):
        load_image(png[: len(png) // 2])
    jpg = _jpeg(_noise(64, 64))
    with pytest.raises(ImageError, match="truncated|corrupt"):
        load_image(jpg[: len(jpg) // 2])
    assert issubclass(ImageError, ValueError)


def test_16bit_png_is_scaled_not_clipped():
    a = np.linspace(0, 65535, 40 * 10).reshape(10, 40).astype(np.uint16)
    im = Image.fromarray(a)
    assert im.mode.startswith("I")
    img, warns = load_image(_png(im))
    assert img.shape == (10, 40, 3)
    np.testing.assert_allclose(img[:, :, 0], a / 65535.0, atol=1e-5)
    assert np.all(img[:, :, 0] == img[:, :, 2])
    assert 0.45 < img.mean() < 0.55  # a clipped 16-bit image would be almost all ones
    assert warns == []


def test_16bit_large_is_downscaled():
    a = (np.arange(600 * 300) % 65536).reshape(300, 600).astype(np.uint16)
    img, warns = load_image(_png(Image.fromarray(a)), max_side=128)
    assert img.shape == (64, 128, 3) and 0 <= img.min() and img.max() <= 1
    assert any("128 px" in w for w in warns)


def test_grayscale_and_bilevel():
    g = _noise(16, 12, "L")
    img, warns = load_image(_png(g))
    assert img.shape == (12, 16, 3) and warns == []
    np.testing.assert_allclose(img[:, :, 1], np.asarray(g) / 255.0, atol=1e-6)
    img1, _ = load_image(_png(g.convert("1")))
    assert set(np.unique(img1)) <= {0.0, 1.0}


def test_rgba_composited_over_white():
    a = np.zeros((8, 8, 4), np.uint8)
    a[..., 0] = 255  # red
    a[:4, :, 3] = 255  # top half opaque, bottom half fully transparent
    img, warns = load_image(_png(Image.fromarray(a, "RGBA")))
    assert img.shape == (8, 8, 3)
    np.testing.assert_allclose(img[0, 0], [1, 0, 0])
    np.testing.assert_allclose(img[7, 7], [1, 1, 1])
    assert any("white" in w for w in warns)
    # fully opaque alpha: no warning
    a[..., 3] = 255
    _, warns = load_image(_png(Image.fromarray(a, "RGBA")))
    assert warns == []


def test_la_and_palette_transparency():
    la = Image.fromarray(np.stack([np.zeros((6, 6), np.uint8), np.full((6, 6), 128, np.uint8)], -1), "LA")
    img, warns = load_image(_png(la))
    np.testing.assert_allclose(img[0, 0], [1 - 128 / 255] * 3, atol=1e-5)
    assert any("white" in w for w in warns)
    p = Image.new("P", (6, 6), 0)
    p.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    p.putpixel((0, 0), 1)
    img, warns = load_image(_png(p, transparency=0))
    np.testing.assert_allclose(img[0, 0], [0, 1, 0])
    np.testing.assert_allclose(img[5, 5], [1, 1, 1])
    assert any("white" in w for w in warns)


def test_exif_orientation_applied():
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 8, 8))  # red marker top-left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    img, warns = load_image(_jpeg(im, exif=exif.tobytes(), quality=95))
    assert img.shape == (40, 20, 3)  # portrait after rotation
    assert img[2, -3, 0] > 0.8 and img[2, -3, 2] < 0.3  # marker now top-right
    assert any("EXIF" in w for w in warns)


def test_huge_file_rejected():
    data = _png(_noise(64, 64))
    with pytest.raises(ImageError, match="limit"):
        load_image(data, max_bytes=1000)
    with pytest.raises(ImageError, match="20.0 MB limit"):
        load_image(b"\0" * (20 * 1024 * 1024 + 1))


@pytest.mark.parametrize("w, h", [(10_000, 5_000), (30_000, 30_000)])
def test_decompression_bomb_rejected(w, h):
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(_png_with_size(w, h))


def test_downscale_warning_and_shape():
    img, warns = load_image(_jpeg(_noise(1000, 600)), max_side=512)
    assert img.shape == (307, 512, 3)
    assert any("512 px" in w and "1000x600" in w for w in warns)
    # large JPEG: decoded at reduced size (draft) but the warning states the real size
    img, warns = load_image(_jpeg(_noise(2000, 1200)), max_side=256)
    assert img.shape == (154, 256, 3)
    assert any("2000x1200" in w for w in warns)
    img, warns = load_image(_png(_noise(900, 100, "RGBA")), max_side=300)
    assert img.shape == (33, 300, 3)
    img, warns = load_image(_png(_noise(900, 100)), max_side=None)
    assert img.shape == (100, 900, 3) and warns == []


def test_cmyk_and_animated_gif():
    img, _ = load_image(_jpeg(Image.new("CMYK", (10, 10), (0, 0, 0, 0))))
    assert img.shape == (10, 10, 3) and img.min() > 0.9
    frames = [Image.new("RGB", (12, 12), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    img, warns = load_image(buf.getvalue())
    assert img.shape == (12, 12, 3) and any("frames" in w for w in warns)


def test_load_image_file(tmp_path):
    p = tmp_path / "a.png"
    p.write_bytes(_png(_noise(5, 4)))
    assert load_image_file(p)[0].shape == (4, 5, 3)
    with pytest.raises(ImageError, match="not found"):
        load_image_file(tmp_path / "none.png")


def test_to_gray():
    rgb = np.zeros((2, 3, 3), np.float32)
    rgb[..., 1] = 1.0
    g = to_gray(rgb)
    assert g.shape == (2, 3) and g.dtype == np.float32
    np.testing.assert_allclose(g, 0.587, atol=1e-6)
    np.testing.assert_allclose(to_gray(np.ones((4, 4, 3))), 1.0, atol=1e-6)
    assert to_gray(g) is g
    assert to_gray(g[..., None]).shape == (2, 3)
    with pytest.raises(ValueError, match="shape"):
        to_gray(np.zeros((2, 3, 5)))


def _png16_with_size(w: int, h: int) -> bytes:
    """A tiny valid 16-bit gray PNG whose IHDR claims w x h (made from a 4×4 one)."""
    data = bytearray(_png(Image.fromarray(np.zeros((4, 4), np.uint16))))
    ihdr = 8 + 8
    data[ihdr : ihdr + 8] = struct.pack(">II", w, h)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


@pytest.mark.parametrize("w, h", [(4000, 3500), (6000, 6000)])
def test_high_depth_bomb_rejected_from_its_header(w, h):
    """A 16-bit image is converted to float32 at full size: 6000² took 423 MB before it was refused. Its
    header alone now refuses it (12 MP limit for high-depth images), before any pixel is decoded."""
    data = _png16_with_size(w, h)
    assert len(data) < 200  # nothing to decode: the refusal comes from the header
    with pytest.raises(ImageError, match="high-depth"):
        load_image(data)


def test_float_tiff_nan_and_inf_are_reported():
    a = np.full((8, 8), 0.5, np.float32)
    a[0, 0], a[1, 1], a[2, 2] = np.nan, np.inf, -np.inf
    buf = io.BytesIO()
    Image.fromarray(a, mode="F").save(buf, "TIFF")
    img, warns = load_image(buf.getvalue())
    assert np.isfinite(img).all() and img[0, 0, 0] == 0.0
    assert any("3 pixels are not a finite number" in w for w in warns), warns


@pytest.mark.parametrize("tag", [0, 9, 65535])
def test_invalid_exif_orientation_is_not_called_a_rotation(tag):
    exif = Image.Exif()
    exif[0x0112] = tag
    img, warns = load_image(_jpeg(Image.new("RGB", (40, 20), (0, 0, 255)), exif=exif.tobytes()))
    assert img.shape == (20, 40, 3)  # not rotated
    assert not any("rotated" in w for w in warns), warns
    assert any("invalid EXIF orientation" in w for w in warns), warns
