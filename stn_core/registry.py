"""The catalogue of STN Lab's checkpoints: where each lives, what it is called, which command made it and
the paper's number beside it. Every page, script and report finds checkpoints through here.

* Folder: ``checkpoints/`` (or ``$STN_LAB_CHECKPOINTS``), :func:`checkpoint_dir`; a checkpoint is
  ``<stem>.safetensors`` + ``<stem>.json`` (:mod:`stn_core.checkpoints`).
* Table 1: ``mnist_{r,rts,p,e,tc}_{fcn,cnn,st-fcn-aff,…,st-cnn-tps}`` (:func:`discover`), their
  longer-schedule runs in ``long/`` and the Live page's runs in ``live/``; the DCNs ``mnist_<dist>_dcn``.
* MNIST addition: ``mnist_addition_{fcn,cnn,st-fcn,2st-fcn}`` (:func:`find_addition`).
* CUB birds: ``cub50_{baseline,2st,4st}`` (:func:`cub_stem`); the tour's upright CNN: :data:`UPRIGHT_CNN`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from stn_core.checkpoints import (CheckpointError, checkpoint_paths, evaluated_on_validation, load_meta,
                                  validation_refusal)
from stn_core.data.common import repo_root
from stn_core import paper
from stn_core.paper import PAPER_ADDITION

#: Distortions of Table 1 as they appear in checkpoint names, in table order: the paper's four, then TC
#: (translated + cluttered, 60×60), whose errors the paper gives in its text.
DISTORTIONS = ("r", "rts", "p", "e", "tc")
#: The paper's Table 1 proper (the deformable-conv contrast covers these).
TABLE1_DISTORTIONS = ("r", "rts", "p", "e")
DIST_TASK = {d: f"mnist-{d}" for d in DISTORTIONS}
DIST_SHORT = {"r": "R", "rts": "RTS", "p": "P", "e": "E", "tc": "TC"}
DIST_LABELS = {"r": "R: rotation", "rts": "RTS: rotation, translation, scale", "p": "P: projective",
               "e": "E: elastic", "tc": "TC: translated, cluttered (60×60)"}
#: Models of Table 1 as they appear in checkpoint names, in table order.
MODEL_KEYS = ("fcn", "cnn", "st-fcn-aff", "st-fcn-proj", "st-fcn-tps", "st-cnn-aff", "st-cnn-proj", "st-cnn-tps")
MODEL_LABELS = {"fcn": "FCN", "cnn": "CNN", "st-fcn-aff": "ST-FCN Aff", "st-fcn-proj": "ST-FCN Proj",
                "st-fcn-tps": "ST-FCN TPS", "st-cnn-aff": "ST-CNN Aff", "st-cnn-proj": "ST-CNN Proj",
                "st-cnn-tps": "ST-CNN TPS", "dcn": "DCN"}
#: The deformable-conv CNN of each distortion (``mnist_<dist>_dcn``): not a Table 1 row, the STN-vs-DCN contrast.
DCN_KEY = "dcn"
TRANSFORM_SHORT = {"affine": "aff", "projective": "proj", "tps": "tps"}
_SHORT_TRANSFORM = {v: k for k, v in TRANSFORM_SHORT.items()}
#: Which model the page opens first, best first.
PREFERRED = ("st-cnn-aff", "st-cnn-tps", "st-cnn-proj", "st-fcn-aff", "st-fcn-tps", "st-fcn-proj", "cnn", "fcn")
#: Environment variable naming the checkpoint folder (default ``<repo>/checkpoints``).
ENV_CHECKPOINTS = "STN_LAB_CHECKPOINTS"

_STEM_RE = re.compile(rf"^mnist_({'|'.join(DISTORTIONS)})_({'|'.join(MODEL_KEYS)})$")
#: Runs saved by the Live training page live in ``<checkpoint folder>/live/NAME``; their model
#: keys are ``"live:NAME"`` (:func:`discover_live`). They are not part of Table 1.
LIVE_SUBDIR, LIVE_PREFIX = "live", "live:"
#: Table 1 models trained on a longer schedule than the table's live in ``<checkpoint folder>/long/`` under
#: the table's names; their keys are ``"long:<table key>"`` (:func:`discover_long`). Not Table 1 cells.
LONG_SUBDIR, LONG_PREFIX = "long", "long:"


def is_live(key: str) -> bool:
    """True for the key of a checkpoint saved by the Live training page (``"live:NAME"``)."""
    return str(key).startswith(LIVE_PREFIX)


def is_long(key: str) -> bool:
    """True for the key of a longer-schedule run (``"long:st-cnn-aff"``)."""
    return str(key).startswith(LONG_PREFIX)


def base_key(key: str) -> str:
    """The Table 1 model key of ``key``: ``"long:st-cnn-aff"`` → ``"st-cnn-aff"``; others unchanged."""
    return key[len(LONG_PREFIX):] if is_long(key) else key


def model_spec(key: str) -> tuple[str, str | None]:
    """``"st-cnn-aff"`` → ``("st-cnn", "affine")``; ``"cnn"`` → ``("cnn", None)``."""
    if key not in MODEL_KEYS and key != DCN_KEY:
        raise ValueError(f"unknown model key {key!r}; choose one of {', '.join(MODEL_KEYS + (DCN_KEY,))}")
    if key in ("fcn", "cnn", DCN_KEY):
        return key, None
    base, short = key.rsplit("-", 1)
    return base, _SHORT_TRANSFORM[short]


def model_key(model: str, transform: str | None) -> str:
    """Inverse of :func:`model_spec`."""
    return model if transform is None else f"{model}-{TRANSFORM_SHORT[transform]}"


def stem_name(dist: str, key: str) -> str:
    """Checkpoint stem of a distortion and a model: ``mnist_rts_st-cnn-aff``."""
    if dist not in DISTORTIONS:
        raise ValueError(f"unknown distortion {dist!r}; choose one of {', '.join(DISTORTIONS)}")
    model_spec(key)
    return f"mnist_{dist}_{key}"


def parse_stem(name: str) -> tuple[str, str] | None:
    """``"mnist_rts_st-cnn-aff"`` → ``("rts", "st-cnn-aff")``; None for other names."""
    m = _STEM_RE.match(name)
    return (m.group(1), m.group(2)) if m else None


def checkpoint_dir() -> Path:
    """``$STN_LAB_CHECKPOINTS`` if set, else ``<repo>/checkpoints``."""
    env = os.environ.get(ENV_CHECKPOINTS, "").strip()
    return Path(env).expanduser() if env else repo_root() / "checkpoints"


def display_dir(directory: str | os.PathLike) -> str:
    """``directory`` relative to the repository when it lies inside it (for reports), else as given."""
    try:
        return str(Path(directory).resolve().relative_to(repo_root()))
    except ValueError:
        return str(directory)


def paper_error(dist: str, key: str) -> float | None:
    """The paper's Table 1 test error (%) of a model on a distortion (None for live runs:
    a small model trained for minutes is not the paper's setup)."""
    if is_live(key):
        return None
    return paper.paper_error(*model_spec(base_key(key)), DIST_TASK[dist])


def train_command(dist: str, key: str, folder: str = "checkpoints") -> str:
    """The command that trains a checkpoint with the paper's schedule (the CLI's defaults)."""
    if is_live(key):
        return f"python -m stn_core.train.live --steps 1500 --out {folder}/{LIVE_SUBDIR}/{key[len(LIVE_PREFIX):]} --overwrite"
    if is_long(key):
        return train_command(dist, base_key(key), f"{folder}/{LONG_SUBDIR}")
    model, transform = model_spec(key)
    tr = f" --transform {transform}" if transform else ""
    return (f"python -m stn_core.train --task {DIST_TASK[dist]} --model {model}{tr} "
            f"--out {folder}/{stem_name(dist, key)}")


# --------------------------------------------------------------------------- discovery

@dataclass(frozen=True)
class Entry:
    """One checkpoint found on disk (possibly broken: then ``error`` says why)."""

    dist: str
    key: str
    stem: Path
    meta: dict | None
    error: str | None
    has_weights: bool
    version: tuple[int, int]  # (mtime_ns, size) of the weights: changes when training writes a new one

    @property
    def usable(self) -> bool:
        return self.meta is not None and self.error is None and self.has_weights

    @property
    def label(self) -> str:
        if is_live(self.key):
            m = self.meta or {}
            t = m.get("transform")
            base = MODEL_LABELS.get(model_key(str(m.get("model")), t)) if t is None or t in TRANSFORM_SHORT else None
            return f"Live run {self.key[len(LIVE_PREFIX):]!r}" + (f" ({base})" if base else "")
        if is_long(self.key):
            steps = ((self.meta or {}).get("train_args") or {}).get("steps")
            return f"{MODEL_LABELS[base_key(self.key)]}, " + (f"{steps:,} steps" if isinstance(steps, int)
                                                              else "longer schedule")
        return MODEL_LABELS[self.key]

    @property
    def task(self) -> str:
        return DIST_TASK[self.dist]


def read_entry(directory: str | os.PathLike, dist: str, key: str) -> Entry | None:
    """The checkpoint ``mnist_<dist>_<key>`` in ``directory``: None if neither file exists."""
    stem = Path(directory) / stem_name(dist, key)
    paths = checkpoint_paths(stem)
    has_w, has_m = paths["weights"].is_file(), paths["meta"].is_file()
    if not (has_w or has_m):
        return None
    meta, error = None, None
    if has_m:
        try:
            meta = load_meta(paths["meta"])
        except CheckpointError as e:
            error = str(e)
    else:
        error = f"{paths['meta']}: metadata missing (a checkpoint is NAME.safetensors + NAME.json)"
    if meta is not None:
        want = model_spec(key)
        got = (meta.get("model"), meta.get("transform"))
        if meta.get("task") != DIST_TASK[dist] or got != want:
            error = (f"{paths['meta']}: the file name says {DIST_TASK[dist]} / {MODEL_LABELS[key]}, but its metadata "
                     f"says {meta.get('task')} / {got[0]} {got[1] or ''}".rstrip())
        elif not has_w:
            error = f"{paths['weights']}: weights missing (only the JSON is there)"
        elif evaluated_on_validation(meta):
            error = validation_refusal(paths["meta"])
    return Entry(dist, key, stem, meta, error, has_w, version(stem))


def discover(directory: str | os.PathLike | None = None) -> dict[tuple[str, str], Entry]:
    """Every checkpoint of the naming scheme in ``directory`` (default :func:`checkpoint_dir`),
    keyed by ``(dist, key)`` in table order. Other files are ignored; never raises."""
    directory = checkpoint_dir() if directory is None else Path(directory)
    found: dict[tuple[str, str], Entry] = {}
    if not directory.is_dir():
        return found
    for dist in DISTORTIONS:
        for key in MODEL_KEYS:
            e = read_entry(directory, dist, key)
            if e is not None:
                found[(dist, key)] = e
    return found


def discover_live(directory: str | os.PathLike | None = None) -> dict[tuple[str, str], Entry]:
    """Checkpoints saved by the Live training page in ``<directory>/live/`` (default
    :func:`checkpoint_dir`), keyed by ``(dist, "live:NAME")``, sorted by name; never raises."""
    folder = (checkpoint_dir() if directory is None else Path(directory)) / LIVE_SUBDIR
    found: dict[tuple[str, str], Entry] = {}
    if not folder.is_dir():
        return found
    names = sorted({p.name[:-len(".json")] for p in folder.glob("*.json")} |
                   {p.name[:-len(".safetensors")] for p in folder.glob("*.safetensors")
                    if not p.name.endswith(".train.safetensors")})
    for name in names:
        if name.startswith("."):
            continue  # a temporary file of an atomic write
        paths = checkpoint_paths(folder / name)
        meta, error, dist = None, None, "rts"
        try:
            meta = load_meta(paths["meta"])
        except CheckpointError as e:
            error = str(e)
        if meta is not None:
            task = meta.get("task")
            dists = [d for d, t in DIST_TASK.items() if t == task]
            if not dists:
                error = f"{paths['meta']}: task {task!r} is not one of the distorted-MNIST tasks"
            else:
                dist = dists[0]
            if not paths["weights"].is_file():
                error = f"{paths['weights']}: weights missing (only the JSON is there)"
        found[(dist, LIVE_PREFIX + name)] = Entry(dist, LIVE_PREFIX + name, folder / name, meta, error,
                                                  paths["weights"].is_file(), version(folder / name))
    return found


def long_runs(found: Mapping[tuple[str, str], Entry]) -> dict[tuple[str, str], Entry]:
    """The longer-schedule entries of ``found`` (as :func:`discover_long` keys them), keyed by
    ``(dist, table key)`` as :func:`discover` of ``<checkpoints>/long`` would."""
    return {(d, base_key(k)): e for (d, k), e in found.items() if is_long(k)}


def discover_long(directory: str | os.PathLike | None = None) -> dict[tuple[str, str], Entry]:
    """The longer-schedule runs in ``<directory>/long/`` (default :func:`checkpoint_dir`), keyed by
    ``(dist, "long:<table key>")`` in table order; never raises."""
    folder = (checkpoint_dir() if directory is None else Path(directory)) / LONG_SUBDIR
    return {(d, LONG_PREFIX + k): Entry(d, LONG_PREFIX + k, e.stem, e.meta, e.error, e.has_weights, e.version)
            for (d, k), e in discover(folder).items()}


def eval_step(meta: Mapping, err: float) -> int | None:
    """The step of the last evaluation in ``history`` that gave ``err`` (None if not recorded)."""
    for h in reversed(meta.get("history") or []):
        if isinstance(h, Mapping) and isinstance(h.get("step"), int) and isinstance(h.get("test_error"), (int, float)) \
                and abs(float(h["test_error"]) - err) < 1e-6:
            return int(h["step"])
    return None


def training_samples(meta: Mapping | None) -> int | None:
    """Training samples a checkpoint's run is planned for: steps × batch from its JSON's ``train_args``
    (None when not recorded)."""
    args = (meta or {}).get("train_args") or {}
    steps, batch = args.get("steps"), args.get("batch")
    return steps * batch if isinstance(steps, int) and isinstance(batch, int) else None


def training_status(meta: Mapping) -> tuple[float | None, str]:
    """(test error % or None, a note) from a checkpoint's JSON: a final run gives its test error
    and ""; a run still in progress its last evaluated test error (if any) and where it stands."""
    err = meta.get("test_error")
    err = float(err) if isinstance(err, (int, float)) and not isinstance(err, bool) else None
    if meta.get("final", err is not None):
        return err, ""
    planned = (meta.get("train_args") or {}).get("steps")
    of = f" of {planned:,}" if isinstance(planned, int) else ""
    step = meta.get("steps")
    where = f"step {step:,}{of}" if isinstance(step, int) else "unknown step"
    if err is None:
        return None, f"training, {where}, no test error yet"
    at = eval_step(meta, err)
    return err, (f"measured at step {at:,}; " if at is not None else "") + f"still training, {where}"


# --------------------------------------------------------------------------- test digits


# --------------------------------------------------------------------------- any checkpoint by name

def stem(name: str, directory: str | os.PathLike | None = None) -> Path:
    """``<checkpoint folder>/<name>`` (no suffix)."""
    return (checkpoint_dir() if directory is None else Path(directory)) / name


def version(stem_path: str | os.PathLike) -> tuple[int, int]:
    """(mtime_ns, size) of a checkpoint's weights, (0, 0) when missing: a cache key that changes when
    training rewrites the file."""
    try:
        s = checkpoint_paths(stem_path)["weights"].stat()
        return (s.st_mtime_ns, s.st_size)
    except OSError:
        return (0, 0)


def ready(stem_path: str | os.PathLike) -> bool:
    """True when both files of the checkpoint exist."""
    paths = checkpoint_paths(stem_path)
    return paths["weights"].is_file() and paths["meta"].is_file()


# --------------------------------------------------------------------------- the Live page's runs

_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_name(name: str) -> str:
    """A user's checkpoint name → a safe file stem (letters, digits, ``.``, ``_``, ``-``; at
    most 60 characters; no leading dot). ValueError with a human message when nothing is left."""
    s = _NAME_OK.sub("-", str(name).strip()).strip("-.")
    s = re.sub(r"-{2,}", "-", s)[:60].strip("-.")
    if not s:
        raise ValueError("Give the checkpoint a name with letters or digits, e.g. my-live-run.")
    return s


def live_dir() -> Path:
    """Folder of the Live page's saved runs: ``<checkpoint folder>/live`` (:func:`discover_live`)."""
    return checkpoint_dir() / LIVE_SUBDIR


def live_stem(name: str, directory: str | os.PathLike | None = None) -> Path:
    """``<live_dir()>/<sanitized name>`` (no suffix)."""
    return (live_dir() if directory is None else Path(directory)) / sanitize_name(name)


def checkpoint_exists(stem_path: str | os.PathLike) -> bool:
    """True when either file of the checkpoint exists (saving would overwrite something)."""
    paths = checkpoint_paths(stem_path)
    return paths["meta"].exists() or paths["weights"].exists()


# --------------------------------------------------------------------------- the tour's upright CNN

#: The CNN trained on upright (undistorted) MNIST digits: the tour's step 1 shows the problem with it.
UPRIGHT_CNN = "mnist_upright_cnn"
#: How to train it: Table 1's v2 recipe (4 M digits), as the shipped one was (its JSON holds its own command).
UPRIGHT_COMMAND = ("python -m stn_core.train --task mnist --model cnn --optimizer sgd --momentum 0.9 --lr 0.05 "
                   "--schedule cosine --steps 15625 --eval-every 1562 --seed 0 --threads 1 "
                   f"--out checkpoints/{UPRIGHT_CNN}")


def upright_cnn(size: int, directory: str | os.PathLike | None = None) -> Path | None:
    """Stem of the finished upright-MNIST CNN if it takes ``size × size`` digits, else None (missing,
    unfinished, unreadable JSON or another input size)."""
    path = stem(UPRIGHT_CNN, directory)
    if not ready(path):
        return None
    try:
        meta = load_meta(path)
    except (CheckpointError, OSError):
        return None
    ok = (meta.get("final") is True and meta.get("task") == "mnist"
          and meta.get("model") == "cnn" and meta.get("input_size") == int(size))
    return path if ok else None


# --------------------------------------------------------------------------- MNIST addition

ADDITION_TASK = "mnist-addition"
ADDITION_KEYS = ("fcn", "cnn", "st-fcn", "2st-fcn")
ADDITION_LABELS = {"fcn": "FCN", "cnn": "CNN", "st-fcn": "ST-FCN (1 transformer)", "2st-fcn": "2×ST-FCN"}
#: model key → (``--model``, ``--transform``) of the training CLI.
ADDITION_SPECS = {"fcn": ("fcn", None), "cnn": ("cnn", None), "st-fcn": ("st-fcn", "affine"),
                  "2st-fcn": ("2st-fcn", "affine")}


def addition_paper_error(key: str) -> float | None:
    """The paper's test error (%) of an addition model key (appendix)."""
    return PAPER_ADDITION.get(ADDITION_SPECS[key]) if key in ADDITION_SPECS else None


def addition_stem_name(key: str) -> str:
    """``"2st-fcn"`` → ``"mnist_addition_2st-fcn"``."""
    if key not in ADDITION_KEYS:
        raise ValueError(f"unknown model {key!r}; choose one of {', '.join(ADDITION_KEYS)}")
    return f"mnist_addition_{key}"


def addition_train_command(key: str) -> str:
    """The command that trains (or resumes) one addition model's checkpoint."""
    addition_stem_name(key)
    return f"python scripts/train_addition.py --models {key} --threads 1"


@dataclass
class KeyedEntry:
    """One checkpoint of a page's fixed set of models (MNIST addition, the volume models): its model
    ``key``, ``stem`` path, ``meta`` (None when unreadable, then ``error`` says why) and ``final`` flag."""

    key: str
    stem: Path
    meta: dict | None
    error: str = ""

    @property
    def final(self) -> bool:
        return bool(self.meta and self.meta.get("final"))

    @property
    def version(self) -> tuple[int, int]:
        """(mtime_ns, size) of the weights: changes when training rewrites the checkpoint."""
        return version(self.stem)


#: The addition page's name for it.
AdditionEntry = KeyedEntry


def _find_keyed(keys: tuple[str, ...], name_of, folder: str | os.PathLike | None) -> dict[str, KeyedEntry]:
    """The checkpoints ``name_of(key)`` present in ``folder`` (both files needed), by key."""
    out: dict[str, KeyedEntry] = {}
    for key in keys:
        path = stem(name_of(key), folder)
        if not ready(path):
            continue
        try:
            meta = load_meta(path)
        except CheckpointError as e:
            out[key] = KeyedEntry(key, path, None, str(e))
            continue
        out[key] = KeyedEntry(key, path, meta) if not evaluated_on_validation(meta) else KeyedEntry(
            key, path, None, validation_refusal(f"{path}.json"))
    return out


def find_addition(folder: str | os.PathLike | None = None) -> dict[str, KeyedEntry]:
    """The MNIST-addition checkpoints present in ``folder`` (both files needed), by model key."""
    return _find_keyed(ADDITION_KEYS, addition_stem_name, folder)


# --------------------------------------------------------------------------- volumes (3-D transformer)

VOLUME_KEYS = ("vol-st-cnn", "vol-cnn")
VOLUME_LABELS = {"vol-st-cnn": "3-D ST-CNN", "vol-cnn": "CNN on the raw projection"}
#: Training steps of the shipped volume models (batch 32), and the shipped 3-D ST-CNN's starting zoom
#: (results/3d.md compares it with the identity start).
VOLUME_STEPS = 8000
VOLUME_START_SCALE = 0.6


def volume_stem_name(key: str) -> str:
    """``volume_st-cnn`` / ``volume_cnn``."""
    if key not in VOLUME_KEYS:
        raise ValueError(f"unknown model {key!r}; choose one of {', '.join(VOLUME_KEYS)}")
    return f"volume_{key[len('vol-'):]}"


def volume_train_command(key: str, folder: str = "checkpoints") -> str:
    """The command that trains (or, with ``--resume``, continues) one volume model."""
    start = f" --start-scale {VOLUME_START_SCALE:g}" if key == "vol-st-cnn" else ""
    return (f"python -m stn_core.train.volume --model {key}{start} --steps {VOLUME_STEPS} "
            f"--out {folder}/{volume_stem_name(key)}")


def find_volume(folder: str | os.PathLike | None = None) -> dict[str, KeyedEntry]:
    """The volume models' checkpoints present in ``folder``, by key."""
    return _find_keyed(VOLUME_KEYS, volume_stem_name, folder)


# --------------------------------------------------------------------------- digit strings (Table 2's analogue)

SEQUENCE_KEYS = ("seq-st-multi", "seq-st-single", "seq-cnn")
SEQUENCE_LABELS = {"seq-st-multi": "ST-CNN Multi", "seq-st-single": "ST-CNN Single", "seq-cnn": "CNN"}
#: Training steps (batch 64) of the shipped readers per crop ('tight' 64 px, 'loose' 128 px).
SEQUENCE_STEPS = {"tight": 6000, "loose": 6000}
#: The paper's SVHN sequence error (%) per crop (its Table 2; a different dataset from ours).
SEQUENCE_PAPER = {"tight": {"seq-cnn": 4.0, "seq-st-single": 3.7, "seq-st-multi": 3.6},
                  "loose": {"seq-cnn": 5.6, "seq-st-single": 3.9, "seq-st-multi": 3.9}}


def sequence_stem_name(key: str, crop: str) -> str:
    """``seq64_st-multi``, ``seq128_cnn``, …"""
    if key not in SEQUENCE_KEYS:
        raise ValueError(f"unknown model {key!r}; choose one of {', '.join(SEQUENCE_KEYS)}")
    if crop not in SEQUENCE_STEPS:
        raise ValueError(f"crop must be one of {', '.join(SEQUENCE_STEPS)}, got {crop!r}")
    return f"seq{64 if crop == 'tight' else 128}_{key[len('seq-'):]}"


def sequence_train_command(key: str, crop: str, folder: str = "checkpoints") -> str:
    """The command that trains (or, with ``--resume``, continues) one digit-string reader."""
    return (f"python -m stn_core.train.sequence --model {key} --crop {crop} --steps {SEQUENCE_STEPS[crop]} "
            f"--out {folder}/{sequence_stem_name(key, crop)}")


def find_sequences(crop: str, folder: str | os.PathLike | None = None) -> dict[str, KeyedEntry]:
    """The digit-string readers' checkpoints for ``crop`` present in ``folder``, by key."""
    return _find_keyed(SEQUENCE_KEYS, lambda k: sequence_stem_name(k, crop), folder)


# --------------------------------------------------------------------------- CUB birds

CUB_KEYS = ("baseline", "2st", "4st")
CUB_LABELS = {"baseline": "CNN baseline", "2st": "2×ST-CNN", "4st": "4×ST-CNN"}
#: input sizes of the shipped CUB models (the paper's two rows); 224 has no suffix in the stem
CUB_SIZES = (224, 448)


@dataclass(frozen=True)
class CubVariant:
    """A 448-px variant of a CUB model: its app label, its longer results/cub.md label, the flags that
    ``scripts/train_cub.py --variants <key>`` adds to the 448-px protocol, and whether it is trained (reported)."""

    label: str
    report_label: str
    train_flags: tuple[str, ...]
    trained: bool = True


#: 448-px variants, shown beside the three models when present (stem ``cub50_<2st|4st>_448_<variant>``), in
#: the order of the app and of results/cub.md. Why each has its flags: ``scripts/train_cub.py``.
CUB_VARIANTS: dict[str, CubVariant] = {
    "2st-scale": CubVariant("2×ST-CNN, learned scale", "2×ST-CNN, learned scale", ("--learn-scale",)),
    "2st-heatmap": CubVariant("2×ST-CNN, heatmap head", "2×ST-CNN, heatmap localisation head",
                              ("--loc-head", "heatmap", "--loc-lr-mult", "0.1")),
    "2st-branches": CubVariant("2×ST-CNN, a backbone per transformer", "2×ST-CNN, a backbone per transformer",
                               ("--branches", "separate"), trained=False),
    "2st-spsa": CubVariant("2×ST-CNN, SPSA box signal (ours)", "2×ST-CNN, boxes trained on the SPSA slope (ours)",
                           ("--box-grad", "spsa", "--spsa-delta", "0.1", "--loc-lr-mult", "10")),
    "4st-spsa": CubVariant("4×ST-CNN, SPSA box signal (ours)", "4×ST-CNN, boxes trained on the SPSA slope (ours)",
                           ("--box-grad", "spsa", "--spsa-delta", "0.1", "--loc-lr-mult", "3")),
    "2st-spsa-s035": CubVariant("2×ST-CNN, SPSA, boxes at scale 0.35 (ours)",
                                "2×ST-CNN, SPSA slope, boxes at scale 0.35 (ours)",
                                ("--box-grad", "spsa", "--spsa-delta", "0.1", "--loc-lr-mult", "3",
                                 "--crop-scale", "0.35")),
}
CUB_VARIANT_KEYS = tuple(CUB_VARIANTS)
CUB_LABELS.update({k: v.label for k, v in CUB_VARIANTS.items()})


def cub_stem_name(key: str, size: int = 224) -> str:
    """``cub50_<key>`` (224 px) or ``cub50_<key>_<size>``; a variant ``2st-x`` → ``cub50_2st_<size>_x``."""
    if size not in CUB_SIZES:
        raise ValueError(f"CUB input size must be one of {CUB_SIZES}, got {size!r}")
    base, _, variant = key.partition("-")
    return (f"cub50_{base}" if size == 224 else f"cub50_{base}_{size}") + (f"_{variant}" if variant else "")


def cub_st_keys(size: int = 224) -> tuple[str, ...]:
    """The models with attention boxes at ``size``: the 2× and 4×ST-CNN, and at 448 px the variants."""
    return ("2st", "4st", *(CUB_VARIANT_KEYS if size == 448 else ()))


def cub_key(key: str, size: int = 224) -> str:
    """The model's key in ``results/cub.json``: its stem name without ``cub50_`` (``2st``, ``2st_448``, …)."""
    return cub_stem_name(key, size).removeprefix("cub50_")


def cub_stem(key: str, folder: str | os.PathLike | None = None, size: int = 224) -> Path:
    """``checkpoints/cub50_<key>[_448]`` for key in baseline | 2st | 4st."""
    return stem(cub_stem_name(key, size), folder)


def cub_status(key: str, folder: str | os.PathLike | None = None, size: int = 224) -> dict:
    """{"exists", "final", "steps", "total", "version"} of a CUB checkpoint (no weights loaded)."""
    path = cub_stem(key, folder, size)
    none = {"exists": False, "final": False, "steps": None, "total": None, "version": None}
    if not ready(path):
        return none
    try:
        meta = load_meta(path)
    except (CheckpointError, OSError):
        return none
    return {"exists": True, "final": bool(meta.get("final")), "steps": meta.get("steps"),
            "total": (meta.get("train_args") or {}).get("steps"), "version": version(path)}
