#!/usr/bin/env python
"""Cut the small real samples shipped in data/samples/ from the offline data copy.

    python scripts/make_samples.py [--shared ../shared/data] [--out data/samples]

- data/samples/mnist_test_500.npz: first 500 digits of the official MNIST test set
  (images uint8 (500,28,28), labels int64 (500,)), np.savez_compressed, no pickles.
- data/samples/cub/*.jpg + metadata.json: the first 5 test-split birds (by image_id) of each
  class in CLASSES, from the 448-px copy of the originals (``cub448``), re-encoded as JPEG (quality 85)
  with the longer side 448 px (the 448-px models' input; the 224-px ones down-sample); boxes and the
  15 parts mapped from original CUB pixel coordinates into the shipped file, per axis.
Deterministic: running it again gives the same pictures and metadata.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stn_core.data.common import DataError, atomic_write_bytes  # noqa: E402
from stn_core.data.cub import load_cub  # noqa: E402
from stn_core.data.mnist import load_mnist  # noqa: E402

N_MNIST = 500
#: colourful, visually different classes among the 50 on hand (1-based official ids)
CLASSES = (1, 12, 14, 17, 36, 42, 47, 50)
PER_CLASS = 5
LONG_SIDE = 448
JPEG_QUALITY = 85


def make_mnist(shared: Path, out: Path) -> None:
    images, labels = load_mnist("test", root=shared / "mnist", verify=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, images=images[:N_MNIST].copy(), labels=labels[:N_MNIST].astype(np.int64))
    atomic_write_bytes(out / "mnist_test_500.npz", buf.getvalue())
    print(f"mnist_test_500.npz: {N_MNIST} digits, label counts {np.bincount(labels[:N_MNIST], minlength=10).tolist()}")


def make_cub(shared: Path, out: Path) -> None:
    recs = load_cub(shared / "cub448", classes=CLASSES, split="test")
    folder = out / "cub"
    folder.mkdir(parents=True, exist_ok=True)
    birds = []
    for cid in CLASSES:
        chosen = [r for r in recs if r.class_id == cid][:PER_CLASS]
        if len(chosen) < PER_CLASS:
            raise DataError(f"class {cid}: only {len(chosen)} test images on hand")
        for r in chosen:
            with Image.open(r.path) as im:
                im = im.convert("RGB")
                fw, fh = im.size
                s = LONG_SIDE / max(fw, fh)
                nw, nh = max(1, round(fw * s)), max(1, round(fh * s))
                small = im.resize((nw, nh), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            small.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True)
            atomic_write_bytes(folder / r.path.name, buf.getvalue())
            # r.bbox / r.parts are in the coordinates of the 448-px file (fw, fh): map per axis.
            sx, sy = nw / fw, nh / fh
            x, y, w, h = r.bbox
            parts = []
            for name, (px, py, vis) in zip(r.part_names, r.parts):
                v = int(vis)
                parts.append(
                    {"name": name, "x": round(px * sx, 2) if v else 0.0, "y": round(py * sy, 2) if v else 0.0, "visible": v}
                )
            birds.append(
                {
                    "image_id": r.image_id,
                    "file": r.path.name,
                    "class_id": r.class_id,
                    "class_name": r.class_name,
                    "is_train": r.is_train,
                    "size": [nw, nh],
                    "orig_size": list(r.orig_size) if r.orig_size else None,
                    "bbox": [round(x * sx, 2), round(y * sy, 2), round(w * sx, 2), round(h * sy, 2)],
                    "parts": parts,
                }
            )
    keep = {b["file"] for b in birds}
    for f in folder.glob("*.jpg"):
        if f.name not in keep:
            f.unlink()
    meta = {
        "description": f"CUB-200-2011 test-split birds, longer side {LONG_SIDE} px; bbox (x, y, w, h) and parts (x, y) "
        "in pixels of the shipped file (visible=0 parts are (0, 0)).",
        "source": "CUB-200-2011, Wah et al., Caltech 2011 (images from Flickr, research use only)",
        "made_by": "python scripts/make_samples.py",
        "part_names": list(recs[0].part_names),
        "birds": birds,
    }
    atomic_write_bytes(folder / "metadata.json", (json.dumps(meta, indent=1) + "\n").encode("utf-8"))
    total = sum((folder / b["file"]).stat().st_size for b in birds)
    print(f"cub/: {len(birds)} birds from classes {list(CLASSES)}, {total / 1024:.0f} KiB of JPEG")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data", help="offline data copy")
    ap.add_argument("--out", type=Path, default=REPO / "data" / "samples", help="output folder")
    a = ap.parse_args(argv)
    try:
        a.out.mkdir(parents=True, exist_ok=True)
        make_mnist(a.shared, a.out)
        make_cub(a.shared, a.out)
    except (DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
