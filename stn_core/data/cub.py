"""CUB-200-2011 (Caltech-UCSD Birds): load records with boxes and parts, import a copy.

Understood layouts (``root`` may be the metadata folder itself or its parent):
- official: ``CUB_200_2011/`` with images.txt, classes.txt, image_class_labels.txt,
  train_test_split.txt, bounding_boxes.txt, parts/parts.txt, parts/part_locs.txt, images/...
- downscaled copy (``<repo>/../shared/data/cub``): the same files plus
  ``available_images.txt`` (ids present on disk) and ``image_sizes.txt``
  (``id orig_w orig_h new_w new_h``); boxes and parts are mapped per axis by new/orig.

All coordinates in the returned records are pixels of the image file on disk.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import tarfile
import tempfile
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Optional, Sequence

import numpy as np

from .common import DataError, Progress, default_data_dir, shared_data_dir

META_FILES = (
    "images.txt",
    "classes.txt",
    "image_class_labels.txt",
    "train_test_split.txt",
    "bounding_boxes.txt",
    "parts/parts.txt",
    "parts/part_locs.txt",
)
OPTIONAL_FILES = ("available_images.txt", "image_sizes.txt", "scales.txt")
N_PARTS = 15
IMPORT_HINT = "python -m stn_core.data cub --from PATH [--classes 1-50]"


@dataclass(frozen=True)
class CubRecord:
    """One bird. Coordinates are in pixels of the file at ``path``.

    bbox: (x, y, w, h); parts: float64 (15, 3) rows (x, y, visible), (0, 0, 0) when not visible;
    size: (w, h) of the file when known (from image_sizes.txt) else None;
    orig_size: (w, h) of the original CUB image when known else None."""

    image_id: int
    path: Path
    class_id: int
    class_name: str
    is_train: bool
    bbox: tuple[float, float, float, float]
    parts: np.ndarray = field(repr=False, compare=False)
    part_names: tuple[str, ...] = field(repr=False, compare=False)
    size: Optional[tuple[int, int]] = None
    orig_size: Optional[tuple[int, int]] = None

    @property
    def rel_path(self) -> str:
        """Path below ``images/`` as in images.txt, e.g. ``001.Black_footed_Albatross/x.jpg``."""
        return f"{self.path.parent.name}/{self.path.name}"


def class_display_name(folder_name: str) -> str:
    """'001.Black_footed_Albatross' -> 'Black footed Albatross'."""
    name = folder_name.split(".", 1)[1] if re.match(r"^\d+\.", folder_name) else folder_name
    return name.replace("_", " ")


def parse_classes(spec: str | Iterable[int] | None) -> Optional[frozenset[int]]:
    """Class subset: None (all), an iterable of 1-based ids, or a string like '1-50' / '1-10,17,20-22'."""
    if spec is None:
        return None
    if isinstance(spec, str):
        ids: set[int] = set()
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not m:
                raise ValueError(f"bad class list {spec!r}: use ids 1-200 like '1-50' or '1,5,17-20'")
            a = int(m.group(1))
            b = int(m.group(2)) if m.group(2) else a
            if a > b:
                raise ValueError(f"bad class range {part!r}: start is after end")
            ids.update(range(a, b + 1))
    else:
        ids = {int(c) for c in spec}
    bad = sorted(c for c in ids if not 1 <= c <= 200)
    if bad:
        raise ValueError(f"class ids must be 1..200, got {bad[:5]}")
    if not ids:
        raise ValueError("the class list is empty")
    return frozenset(ids)


def _table(path: Path, ncols: int, name: str) -> list[list[str]]:
    """Whitespace-separated rows with at least ``ncols`` fields (extra fields joined into the last)."""
    if not path.is_file():
        raise DataError(f"{path}: missing CUB metadata file {name}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(maxsplit=ncols - 1)
            if len(parts) != ncols:
                raise DataError(f"{path}, line {lineno}: expected {ncols} fields, got {len(parts)}")
            rows.append(parts)
    return rows


def _numeric(path: Path, ncols: int) -> np.ndarray:
    """Numeric table -> float64 (rows, ncols); DataError on a malformed file."""
    if not path.is_file():
        raise DataError(f"{path}: missing CUB metadata file")
    try:
        vals = np.array(path.read_text(encoding="utf-8").split(), dtype=np.float64)
    except ValueError:
        raise DataError(f"{path}: non-numeric value in a numeric table") from None
    if vals.size % ncols:
        raise DataError(f"{path}: {vals.size} numbers is not a multiple of {ncols} columns (truncated?)")
    return vals.reshape(-1, ncols)


def find_cub_root(root: Optional[Path] = None) -> Path:
    """The folder holding images.txt & co. ``root`` may be it or its parent (``CUB_200_2011/``
    or ``cub/`` inside). Default search: ``<data dir>/cub``, then ``<repo>/../shared/data/cub``."""
    if root is not None:
        bases = [Path(root).expanduser()]
    else:
        bases = [default_data_dir(), shared_data_dir()]
    tried = []
    for base in bases:
        for cand in (base, base / "CUB_200_2011", base / "cub", base / "cub" / "CUB_200_2011"):
            tried.append(cand)
            if (cand / "images.txt").is_file() and (cand / "classes.txt").is_file():
                return cand
    raise DataError(
        f"CUB-200-2011 not found (looked for images.txt in {', '.join(str(t) for t in tried)}). "
        f"Import it with: {IMPORT_HINT}"
    )


def load_cub(
    root: Optional[Path] = None,
    classes: str | Iterable[int] | None = None,
    split: Optional[str] = None,
    present_only: bool = True,
) -> list[CubRecord]:
    """Load CUB records sorted by image_id.

    classes: subset of 1-based class ids (iterable, or '1-50'); split: 'train', 'test' or
    None (both); present_only: drop ids whose image file is not on disk (partial copies)."""
    if split not in (None, "train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
    wanted = parse_classes(classes)
    d = find_cub_root(root)
    for rel in META_FILES:
        if not (d / rel).is_file():
            raise DataError(f"{d}: missing CUB metadata file {rel}")

    paths = {int(i): p for i, p in _table(d / "images.txt", 2, "images.txt")}
    class_names = {int(i): n for i, n in _table(d / "classes.txt", 2, "classes.txt")}
    labels = {int(i): int(c) for i, c in _table(d / "image_class_labels.txt", 2, "image_class_labels.txt")}
    is_train = {int(i): s == "1" for i, s in _table(d / "train_test_split.txt", 2, "train_test_split.txt")}
    part_names = tuple(n for _, n in sorted((int(i), n) for i, n in _table(d / "parts/parts.txt", 2, "parts.txt")))
    if len(part_names) != N_PARTS:
        raise DataError(f"{d / 'parts/parts.txt'}: {len(part_names)} parts, expected {N_PARTS}")

    bb = _numeric(d / "bounding_boxes.txt", 5)
    boxes = {int(r[0]): tuple(float(v) for v in r[1:]) for r in bb}
    pl = _numeric(d / "parts/part_locs.txt", 5)
    parts_by_id: dict[int, np.ndarray] = {}
    if pl.size:
        order = np.lexsort((pl[:, 1], pl[:, 0]))
        pl = pl[order]
        ids_u, starts, counts = np.unique(pl[:, 0].astype(np.int64), return_index=True, return_counts=True)
        for iid, s, c in zip(ids_u, starts, counts):
            if c != N_PARTS:
                raise DataError(f"{d / 'parts/part_locs.txt'}: image {iid} has {c} part rows, expected {N_PARTS}")
            parts_by_id[int(iid)] = pl[s : s + c, 2:5].copy()

    sizes: dict[int, tuple[int, int, int, int]] = {}
    if (d / "image_sizes.txt").is_file():
        for r in _numeric(d / "image_sizes.txt", 5).astype(np.int64):
            sizes[int(r[0])] = (int(r[1]), int(r[2]), int(r[3]), int(r[4]))
    available: Optional[set[int]] = None
    if (d / "available_images.txt").is_file():
        available = {int(i) for i, _ in _table(d / "available_images.txt", 2, "available_images.txt")}

    img_dir = d / "images"
    records = []
    for iid in sorted(paths):
        cid = labels.get(iid)
        if cid is None:
            raise DataError(f"{d / 'image_class_labels.txt'}: no class for image {iid}")
        if wanted is not None and cid not in wanted:
            continue
        train = is_train.get(iid)
        if train is None:
            raise DataError(f"{d / 'train_test_split.txt'}: no split for image {iid}")
        if split == "train" and not train or split == "test" and train:
            continue
        if available is not None and iid not in available:
            continue
        rel = PurePosixPath(paths[iid])
        if rel.is_absolute() or ".." in rel.parts:
            raise DataError(f"{d / 'images.txt'}: unsafe path {paths[iid]!r} for image {iid}")
        path = img_dir.joinpath(*rel.parts)
        if present_only and not path.is_file():
            continue
        if iid not in boxes or iid not in parts_by_id:
            raise DataError(f"{d}: image {iid} has no bounding box or part rows")
        x, y, w, h = boxes[iid]
        pts = parts_by_id[iid].copy()
        size = orig = None
        if iid in sizes:
            ow, oh, nw, nh = sizes[iid]
            sx, sy = nw / ow, nh / oh
            x, y, w, h = x * sx, y * sy, w * sx, h * sy
            pts[:, 0] *= sx
            pts[:, 1] *= sy
            size, orig = (nw, nh), (ow, oh)
        folder = rel.parts[0] if len(rel.parts) > 1 else class_names.get(cid, str(cid))
        records.append(
            CubRecord(
                image_id=iid,
                path=path,
                class_id=cid,
                class_name=class_display_name(class_names.get(cid, folder)),
                is_train=train,
                bbox=(float(x), float(y), float(w), float(h)),
                parts=pts,
                part_names=part_names,
                size=size,
                orig_size=orig,
            )
        )
    return records


def cub_class_names(root: Optional[Path] = None) -> dict[int, str]:
    """1-based class id -> display name, e.g. {1: 'Black footed Albatross', ...}."""
    d = find_cub_root(root)
    return {int(i): class_display_name(n) for i, n in _table(d / "classes.txt", 2, "classes.txt")}


# --------------------------------------------------------------------------- import


def _safe_member_path(name: str, archive: Path) -> PurePosixPath:
    p = PurePosixPath(name)
    if name.startswith(("/", "\\")) or p.is_absolute() or ".." in p.parts or re.match(r"^[A-Za-z]:", name):
        raise DataError(f"{archive}: unsafe member path {name!r} (path traversal), archive rejected")
    return p


def _class_of_image_rel(rel: PurePosixPath) -> Optional[int]:
    m = re.match(r"^(\d+)\.", rel.parts[0]) if rel.parts else None
    return int(m.group(1)) if m else None


def _extract_tgz(archive: Path, out: Path, wanted: Optional[frozenset[int]], say) -> int:
    """Extract the needed members of the official CUB_200_2011.tgz into ``out`` (the metadata
    folder). Members are read and written by hand: no links, no paths outside ``out``."""
    n_img = 0
    try:
        with tarfile.open(archive, "r:*") as tf:
            for m in tf:
                p = _safe_member_path(m.name, archive)
                if m.issym() or m.islnk() or m.isdev() or m.isfifo():
                    raise DataError(f"{archive}: member {m.name!r} is a link or device, archive rejected")
                parts = p.parts
                # strip the leading CUB_200_2011/ (or ./) if present
                while parts and parts[0] in (".", "CUB_200_2011"):
                    parts = parts[1:]
                if not parts or not m.isfile():
                    continue
                rel = PurePosixPath(*parts)
                if str(rel) in META_FILES or str(rel) in OPTIONAL_FILES:
                    pass
                elif parts[0] == "images" and len(parts) == 3:
                    cid = _class_of_image_rel(PurePosixPath(*parts[1:]))
                    if wanted is not None and cid not in wanted:
                        continue
                    n_img += 1
                    if n_img % 500 == 0:
                        say(f"  {n_img} images extracted")
                else:
                    continue
                target = out.joinpath(*rel.parts)
                if not target.resolve().is_relative_to(out.resolve()):
                    raise DataError(f"{archive}: member {m.name!r} escapes the destination, archive rejected")
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(m)
                if src is None:
                    continue
                with src, open(target, "wb") as f:
                    shutil.copyfileobj(src, f, 1 << 20)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{archive}: truncated or corrupt archive ({e})") from None
    except OSError as e:
        raise DataError(f"{archive}: extraction failed ({e})") from None
    return n_img


def _copy_folder(src: Path, out: Path, wanted: Optional[frozenset[int]], say) -> int:
    for rel in META_FILES + OPTIONAL_FILES:
        if (src / rel).is_file():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, out / rel)
    n = 0
    img_src = src / "images"
    if not img_src.is_dir():
        raise DataError(f"{src}: no images/ folder")
    for cls_dir in sorted(img_src.iterdir()):
        cid = _class_of_image_rel(PurePosixPath(cls_dir.name))
        if not cls_dir.is_dir() or cid is None or (wanted is not None and cid not in wanted):
            continue
        dst = out / "images" / cls_dir.name
        dst.mkdir(parents=True, exist_ok=True)
        for f in sorted(cls_dir.iterdir()):
            if f.is_file() and not f.is_symlink():
                shutil.copyfile(f, dst / f.name)
                n += 1
        say(f"  {cls_dir.name}: copied")
    return n


def import_cub(
    src: str | os.PathLike,
    dest: Optional[Path] = None,
    classes: str | Iterable[int] | None = None,
    progress: Progress = None,
) -> Path:
    """Import CUB-200-2011 into ``<dest>/cub`` (dest default: ``$STN_LAB_DATA`` or ``<repo>/data/cache``).

    ``src``: the official ``CUB_200_2011.tgz``, an official ``CUB_200_2011/`` folder (or its
    parent), or a downscaled copy like ``shared/data/cub``. ``classes`` limits the images copied
    (metadata is always complete). Writes ``available_images.txt`` listing the images present.
    The new folder is built aside and swapped in, so a failed import leaves the old one intact.
    Returns the cub folder."""
    say = progress or (lambda s: None)
    wanted = parse_classes(classes)
    srcp = Path(src).expanduser()
    if not srcp.exists():
        raise DataError(f"{srcp}: not found (pass the CUB_200_2011.tgz file or the CUB_200_2011 folder)")
    base = Path(dest).expanduser() if dest is not None else default_data_dir()
    base.mkdir(parents=True, exist_ok=True)
    final = base / "cub"
    tmp = Path(tempfile.mkdtemp(prefix=".cub.tmp-", dir=base))
    os.chmod(tmp, 0o755)  # mkdtemp creates 0700
    try:
        if srcp.is_file():
            say(f"extracting {srcp}")
            n = _extract_tgz(srcp, tmp, wanted, say)
        else:
            d = find_cub_root(srcp)
            if d.resolve() == final.resolve():
                raise DataError(f"{srcp}: source and destination are the same folder")
            say(f"copying from {d}")
            n = _copy_folder(d, tmp, wanted, say)
        for rel in META_FILES:
            if not (tmp / rel).is_file():
                raise DataError(f"{srcp}: CUB metadata file {rel} is missing from the source")
        # list what is actually present (ids from images.txt whose file exists)
        lines = []
        for iid, rel in _table(tmp / "images.txt", 2, "images.txt"):
            rp = PurePosixPath(rel)
            if rp.is_absolute() or ".." in rp.parts:
                raise DataError(f"{srcp}: unsafe path {rel!r} in images.txt")
            if (tmp / "images").joinpath(*rp.parts).is_file():
                lines.append(f"{iid} {rel}\n")
        (tmp / "available_images.txt").write_text("".join(lines), encoding="utf-8")
        if not lines:
            raise DataError(f"{srcp}: no images of the requested classes were found")
        say(f"{len(lines)} images present ({n} files copied)")
        load_cub(tmp, present_only=True)  # validates the whole metadata set
        old = None
        if final.exists():
            old = base / f".cub.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def records_by_class(records: Sequence[CubRecord]) -> dict[int, list[CubRecord]]:
    """Group records by class id (order kept)."""
    out: dict[int, list[CubRecord]] = {}
    for r in records:
        out.setdefault(r.class_id, []).append(r)
    return out
