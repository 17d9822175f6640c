"""A tiny CUB-layout folder built from the shipped birds (data/samples/cub), for CLI tests.

Official file layout (images.txt, classes.txt, …, parts/part_locs.txt, images/<class>/<file>);
the shipped birds are all test birds, so every second bird of a class is marked as training.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples" / "cub"


def make_tiny_cub(dest: Path, classes: tuple[int, ...] = (1, 12, 14)) -> Path:
    """Write a CUB-layout folder with the shipped birds of ``classes``; returns it."""
    meta = json.loads((SAMPLES / "metadata.json").read_text())
    birds = [b for b in meta["birds"] if b["class_id"] in classes]
    names = {b["class_id"]: b["class_name"].replace(" ", "_") for b in birds}
    folders = {c: f"{c:03d}.{names[c]}" for c in names}
    (dest / "parts").mkdir(parents=True, exist_ok=True)
    lines = {k: [] for k in ("images", "labels", "split", "boxes", "parts")}
    count: dict[int, int] = {}
    for iid, b in enumerate(sorted(birds, key=lambda b: b["image_id"]), 1):
        c = b["class_id"]
        count[c] = count.get(c, 0) + 1
        rel = f"{folders[c]}/{b['file']}"
        (dest / "images" / folders[c]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLES / b["file"], dest / "images" / rel)
        lines["images"].append(f"{iid} {rel}")
        lines["labels"].append(f"{iid} {c}")
        lines["split"].append(f"{iid} {int(count[c] % 2 == 1)}")
        x, y, w, h = b["bbox"]
        lines["boxes"].append(f"{iid} {x} {y} {w} {h}")
        for pid, p in enumerate(b["parts"], 1):
            lines["parts"].append(f"{iid} {pid} {p['x']} {p['y']} {p['visible']}")
    (dest / "images.txt").write_text("\n".join(lines["images"]) + "\n")
    (dest / "image_class_labels.txt").write_text("\n".join(lines["labels"]) + "\n")
    (dest / "train_test_split.txt").write_text("\n".join(lines["split"]) + "\n")
    (dest / "bounding_boxes.txt").write_text("\n".join(lines["boxes"]) + "\n")
    (dest / "parts" / "part_locs.txt").write_text("\n".join(lines["parts"]) + "\n")
    (dest / "classes.txt").write_text("\n".join(f"{c} {folders.get(c, f'{c:03d}.Class_{c}')}"
                                                for c in range(1, 201)) + "\n")
    (dest / "parts" / "parts.txt").write_text("\n".join(f"{i} {n}" for i, n in enumerate(meta["part_names"], 1)) + "\n")
    return dest
