"""What a checkpoint may contain, and its limits: the format constants, :class:`CheckpointError`, bounded JSON
parsing and the metadata checks (see :mod:`stn_core.checkpoints` for the trust boundary)."""

from __future__ import annotations

import json
import math
import os
import reprlib
from pathlib import Path
from typing import Any

from stn_core.models import (ALL_MODEL_NAMES, COLOC_MODELS, CUB_MODEL_NAMES, SEQUENCE_TRANSFORMS, ST_TRANSFORMS,
                             VOLUME_MODELS)

#: Model families whose every model has one fixed transform: volume classifiers, digit-string readers and the
#: co-localisation bank.
FIXED_TRANSFORM = {**VOLUME_MODELS, **SEQUENCE_TRANSFORMS, **COLOC_MODELS}

FORMAT = "stn-lab-checkpoint"
FORMAT_VERSION = 1
COMMIT_FORMAT = "stn-lab-commit"
REQUIRED_META = ("task", "model", "transform", "input_size", "num_classes")
#: Keys that may appear besides the required ones (anything else is refused as unknown).
OPTIONAL_META = frozenset({
    "classes", "test_error", "paper_error", "command", "steps", "seed", "data_md5", "torch_version",
    "created", "arch", "train_args", "test_set", "world_size", "device", "threads", "train_seconds",
    "samples_per_s", "history", "final", "notes", "extra", "checkpoint_id", "format", "format_version",
    "params", "weights_sha256", "train_sha256",
})
#: What :func:`load_model` adds to the metadata it returns (never stored).
INTEGRITY_VERIFIED = "sha256 verified"
INTEGRITY_UNVERIFIED = "unverified (no weights_sha256)"

# ---- limits (module attributes, so a caller or test may change them)
MAX_META_BYTES = 4 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_JSON_INT_DIGITS = 40
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_WEIGHTS_BYTES = 1024 ** 3
MAX_TRAIN_BYTES = 2 * 1024 ** 3
MAX_TENSORS = 100_000
MAX_INPUT_SIZE = 1024
MAX_NUM_CLASSES = 10_000
MAX_WIDTH = 1 << 14  # solve_width's range
MAX_TARGET_PARAMS = 10 ** 9
MAX_IN_CHANNELS = 64
MAX_CROP_SIZE = 1024
MAX_LOC_HIDDEN = 4096
_MAX_JOURNAL_BYTES = 64 * 1024
_MAX_HEADER = MAX_HEADER_BYTES  # old name

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
_FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})
_INT_DTYPES = frozenset({"I64", "I32", "I16", "I8", "U8"})

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_short.maxlevel = 3


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupt, foreign, or does not fit its model."""


class _RaceError(CheckpointError):
    """Files of two checkpoint ids seen together (possibly a commit between two reads: retried once)."""


def checkpoint_paths(path: str | os.PathLike) -> dict[str, Path]:
    """``{"weights", "meta", "train"}`` paths for a stem or any of the three file names."""
    p = Path(path)
    name = p.name
    for suffix in (".train.safetensors", ".safetensors", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    stem = p.with_name(name)
    return {"weights": stem.with_name(name + ".safetensors"), "meta": stem.with_name(name + ".json"),
            "train": stem.with_name(name + ".train.safetensors")}


def _stem_name(paths: dict[str, Path]) -> str:
    return paths["meta"].name[: -len(".json")]


def _show(v: Any) -> str:
    return _short.repr(v)


# --------------------------------------------------------------------------- bounded JSON

def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _finite_float(s: str) -> float:
    v = float(s)
    if not math.isfinite(v):
        raise ValueError(f"number {s[:30]} is out of range")
    return v


def _bounded_int(s: str) -> int:
    if len(s) > MAX_JSON_INT_DIGITS:
        raise ValueError(f"integer of {len(s)} digits")
    return int(s)


def _json_depth_ok(obj: Any, limit: int) -> bool:
    """Whether ``obj`` nests at most ``limit`` levels of lists/dicts (iterative: no recursion)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        children = o.values() if isinstance(o, dict) else o if isinstance(o, (list, tuple)) else None
        if children is None:
            continue
        if d > limit:
            return False
        stack.extend((c, d + 1) for c in children if isinstance(c, (dict, list, tuple)))
    return True


def parse_json_bounded(data: bytes | str, where: Any, what: str = "not valid JSON",
                       max_depth: int | None = None) -> Any:
    """``json.loads`` that raises only :class:`CheckpointError`: no NaN/Infinity, no overflowing
    numbers, at most :data:`MAX_JSON_DEPTH` levels of nesting (checked without recursion)."""
    limit = MAX_JSON_DEPTH if max_depth is None else max_depth
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                         parse_int=_bounded_int)
    except RecursionError:
        raise CheckpointError(f"{where}: {what} (nested more than {limit} levels deep)") from None
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{where}: {what} (not UTF-8: {e.reason} at byte {e.start})") from None
    except (ValueError, TypeError, OverflowError, MemoryError) as e:
        raise CheckpointError(f"{where}: {what} ({str(e)[:200]})") from None
    if not _json_depth_ok(obj, limit):
        raise CheckpointError(f"{where}: {what} (nested more than {limit} levels deep)")
    return obj


# --------------------------------------------------------------------------- metadata checks

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and (isinstance(v, int) or math.isfinite(v)))


def _is_hex(v: Any, n: int | None) -> bool:
    return (isinstance(v, str) and (len(v) == n if n else 0 < len(v) <= 64)
            and all(c in "0123456789abcdef" for c in v))


_TYPES = {  # optional key → (test, description); None is always allowed for these
    "test_error": (_is_num, "a number"), "paper_error": (_is_num, "a number"),
    "train_seconds": (_is_num, "a number"), "samples_per_s": (_is_num, "a number"),
    "command": (lambda v: isinstance(v, str), "a string"), "data_md5": (lambda v: isinstance(v, str), "a string"),
    "torch_version": (lambda v: isinstance(v, str), "a string"), "created": (lambda v: isinstance(v, str), "a string"),
    "device": (lambda v: isinstance(v, str), "a string"), "notes": (lambda v: isinstance(v, str), "a string"),
    "steps": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "params": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "world_size": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "threads": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "seed": (_is_int, "an integer"), "final": (lambda v: isinstance(v, bool), "true or false"),
    "arch": (lambda v: isinstance(v, dict), "a JSON object"), "train_args": (lambda v: isinstance(v, dict), "a JSON object"),
    "test_set": (lambda v: isinstance(v, dict), "a JSON object"), "extra": (lambda v: isinstance(v, dict), "a JSON object"),
    "history": (lambda v: isinstance(v, list) and all(isinstance(h, dict) for h in v), "a list of JSON objects"),
    "checkpoint_id": (lambda v: _is_hex(v, None), "a hex string"),
    "weights_sha256": (lambda v: _is_hex(v, 64), "64 lowercase hex digits"),
    "train_sha256": (lambda v: _is_hex(v, 64), "64 lowercase hex digits"),
}


def _bad(where: Any, key: str, what: str, value: Any) -> CheckpointError:
    return CheckpointError(f"{where}: {key} must be {what}, got {_show(value)}")


def _int_in(d: dict, key: str, lo: int, hi: int, where: Any, label: str, allow_none: bool = True) -> None:
    if key not in d or (allow_none and d[key] is None):
        return
    v = d[key]
    if not _is_int(v) or not lo <= v <= hi:
        raise _bad(where, label, f"an integer in {lo}..{hi:,}", v)


def _check_arch(meta: dict, where: Any) -> None:
    """Bounds of everything :func:`stn_core.models.model_from_meta` reads, before building."""
    if meta["model"] in CUB_MODEL_NAMES:
        classes = meta.get("classes")
        if not isinstance(classes, list) or len(classes) != meta["num_classes"]:
            raise CheckpointError(f"{where}: a CUB checkpoint needs 'classes' (list of official class ids) "
                                  f"of length num_classes")
        for c in classes:
            ok = (_is_int(c) and abs(c) < 10 ** 9) or (isinstance(c, str) and c.isdigit() and len(c) < 10)
            if not ok:
                raise _bad(where, "each CUB class id", "an integer", c)
        extra = meta.get("extra") or {}
        arch = extra.get("arch")
        if arch is None:
            return
        if not isinstance(arch, dict):
            raise _bad(where, "extra.arch", "a JSON object", arch)
        _int_in(arch, "crop_size", 1, MAX_CROP_SIZE, where, "extra.arch.crop_size", allow_none=False)
        _int_in(arch, "loc_hidden", 1, MAX_LOC_HIDDEN, where, "extra.arch.loc_hidden")
        if "crop_scale" in arch and not (_is_num(arch["crop_scale"]) and 0.05 <= arch["crop_scale"] <= 1.0):
            raise _bad(where, "extra.arch.crop_scale", "a number in [0.05, 1]", arch["crop_scale"])
        _int_in(arch, "loc_size", 32, MAX_INPUT_SIZE, where, "extra.arch.loc_size")
        if "learn_scale" in arch and not isinstance(arch["learn_scale"], bool):
            raise _bad(where, "extra.arch.learn_scale", "true or false", arch["learn_scale"])
        if arch.get("loc_head") is not None and arch["loc_head"] not in ("mlp", "heatmap"):
            raise _bad(where, "extra.arch.loc_head", "'mlp' or 'heatmap'", arch["loc_head"])
        if arch.get("loc_init") is not None and arch["loc_init"] not in ("tiled", "centre"):
            raise _bad(where, "extra.arch.loc_init", "'tiled' or 'centre'", arch["loc_init"])
        if arch.get("branches") is not None and arch["branches"] not in ("shared", "separate"):
            raise _bad(where, "extra.arch.branches", "'shared' or 'separate'", arch["branches"])
        return
    if meta["model"] in COLOC_MODELS:  # one small net per digit class, on 84×84 canvases
        _int_in(meta, "num_classes", 1, 10, where, "num_classes of a co-localisation bank", allow_none=False)
        _int_in(meta, "input_size", 84, 84, where, "input_size of a co-localisation bank", allow_none=False)
        return
    arch = meta.get("arch")
    if arch is None:
        return
    _int_in(arch, "width", 1, MAX_WIDTH, where, "arch.width")
    _int_in(arch, "target_params", 1, MAX_TARGET_PARAMS, where, "arch.target_params")
    _int_in(arch, "downsample", 1, meta["input_size"], where, "arch.downsample")
    _int_in(arch, "in_channels", 1, MAX_IN_CHANNELS, where, "arch.in_channels", allow_none=False)
    if "modulated" in arch and not (arch["modulated"] is None or isinstance(arch["modulated"], bool)):
        raise _bad(where, "arch.modulated", "true, false or null", arch["modulated"])


def _check_meta(meta: Any, where: Any) -> None:
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: metadata must be a JSON object, got {type(meta).__name__}")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CheckpointError(f"{where}: metadata lacks the required key(s) {', '.join(missing)}")
    unknown = sorted(k for k in meta if k not in REQUIRED_META and k not in OPTIONAL_META)
    if unknown:
        raise CheckpointError(f"{where}: unknown metadata key(s) {_show(', '.join(unknown))} "
                              f"(put free-form data under 'extra')")
    if not isinstance(meta["task"], str):
        raise _bad(where, "task", "a string", meta["task"])
    model, transform = meta["model"], meta["transform"]
    if not isinstance(model, str):
        raise _bad(where, "model", "a string", model)
    if transform is not None and not isinstance(transform, str):
        raise _bad(where, "transform", "a string or null", transform)
    if model in CUB_MODEL_NAMES:  # CUB birds (stn_core.models.cub): attention boxes or none
        if transform not in (None, "attention"):
            raise CheckpointError(f"{where}: CUB model transform must be 'attention' or null, "
                                  f"got {_show(transform)}")
    elif model in FIXED_TRANSFORM:  # stn_core.models.volume and .sequence
        if transform != FIXED_TRANSFORM[model]:
            raise CheckpointError(f"{where}: {model} transform must be {_show(FIXED_TRANSFORM[model])}, "
                                  f"got {_show(transform)}")
    elif model not in ALL_MODEL_NAMES:
        known = ", ".join((*ALL_MODEL_NAMES, *CUB_MODEL_NAMES, *FIXED_TRANSFORM))
        raise CheckpointError(f"{where}: unknown model {_show(model)}; known: {known}")
    elif transform is not None and transform not in ST_TRANSFORMS:
        raise CheckpointError(f"{where}: unknown transform {_show(transform)}; known: "
                              f"{', '.join(ST_TRANSFORMS)} or null")
    for k in ("input_size", "num_classes"):
        if not _is_int(meta[k]) or meta[k] < 1:
            raise CheckpointError(f"{where}: {k} must be a positive integer, got {_show(meta[k])}")
    _int_in(meta, "input_size", 1, MAX_INPUT_SIZE, where, "input_size", allow_none=False)
    _int_in(meta, "num_classes", 1, MAX_NUM_CLASSES, where, "num_classes", allow_none=False)
    for k, (test, what) in _TYPES.items():
        if k in meta and meta[k] is not None and not test(meta[k]):
            raise _bad(where, k, what + " or null", meta[k])
    if "format" in meta and meta["format"] != FORMAT:
        raise CheckpointError(f"{where}: not an STN Lab checkpoint (format {_show(meta['format'])})")
    if "format_version" in meta and not (_is_int(meta["format_version"]) and 1 <= meta["format_version"] <= FORMAT_VERSION):
        raise CheckpointError(f"{where}: format_version {_show(meta['format_version'])} is not one this "
                              f"version reads (1..{FORMAT_VERSION})")
    classes = meta.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or len(classes) != meta["num_classes"]:
            raise _bad(where, "classes", f"a list of num_classes ({meta['num_classes']}) names", classes)
        for c in classes:
            if not (isinstance(c, str) or _is_int(c)):
                raise _bad(where, "each class name", "a string or an integer", c)
    _check_arch(meta, where)
