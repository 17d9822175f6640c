"""Checkpoints: weights in safetensors, metadata in JSON, never pickle.

A checkpoint with stem ``checkpoints/NAME`` is up to three files:

* ``NAME.safetensors`` — the model weights;
* ``NAME.train.safetensors`` — optional training state for ``--resume`` (optimizer buffers,
  RNG states as uint8 tensors, step counter in the header metadata);
* ``NAME.json`` — metadata (task, model, transform, input size, classes, test error, the
  exact command, seeds, ...), from which :func:`load_model` rebuilds the architecture.

Writes are atomic: every file is first written in full to a temporary file in the same
folder; only when all are complete are they moved into place with ``os.replace`` (train
state, weights, JSON last). A failure while writing leaves the previous checkpoint intact.
All three files carry the same random ``checkpoint_id`` so mixed-up files are detected.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import struct
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .fileio import write_tmp_beside
from .models import ALL_MODEL_NAMES, CUB_MODEL_NAMES, ST_TRANSFORMS, model_from_meta

FORMAT = "stn-lab-checkpoint"
FORMAT_VERSION = 1
REQUIRED_META = ("task", "model", "transform", "input_size", "num_classes")
#: Keys that may appear besides the required ones (anything else is refused as unknown).
OPTIONAL_META = frozenset({
    "classes", "test_error", "paper_error", "command", "steps", "seed", "data_md5", "torch_version",
    "created", "arch", "train_args", "test_set", "world_size", "device", "threads", "train_seconds",
    "samples_per_s", "history", "final", "notes", "extra", "checkpoint_id", "format", "format_version",
    "params",
})
_MAX_HEADER = 100 * 1024 * 1024


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupt, foreign, or does not fit its model."""


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


# --------------------------------------------------------------------------- writing

def _jsonable(meta: dict) -> dict:
    try:
        return json.loads(json.dumps(meta, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint metadata must be plain JSON (str, numbers, lists, dicts): {e}") from None


def _cpu_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def save_checkpoint(path_stem: str | os.PathLike, model: torch.nn.Module, meta: dict[str, Any],
                    optimizer_state: dict[str, torch.Tensor] | None = None,
                    train_info: dict[str, str] | None = None) -> Path:
    """Write ``<stem>.safetensors``, ``<stem>.json`` and (given ``optimizer_state``, a flat
    dict of tensors such as :func:`optimizer_tensors` returns, plus RNG states)
    ``<stem>.train.safetensors``, atomically. ``train_info`` (str → str) goes into the
    train file's header. Missing architecture keys of ``meta`` are filled from
    ``model.config``. Returns the JSON path."""
    paths = checkpoint_paths(path_stem)
    paths["weights"].parent.mkdir(parents=True, exist_ok=True)
    meta = dict(meta)
    cfg = getattr(model, "config", {}) or {}
    for key, ckey in (("model", "name"), ("transform", "transform"), ("input_size", "input_size"),
                      ("num_classes", "num_classes")):
        if key not in meta and ckey in cfg:
            meta[key] = cfg[ckey]
    if "arch" not in meta and cfg:
        meta["arch"] = {k: cfg[k] for k in ("width", "downsample", "target_params", "modulated", "in_channels")
                        if k in cfg}
    meta.setdefault("classes", [str(i) for i in range(int(meta.get("num_classes", 10)))])
    meta.setdefault("torch_version", torch.__version__)
    meta.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    meta["params"] = int(sum(p.numel() for p in model.parameters()))
    cid = uuid.uuid4().hex
    meta["checkpoint_id"] = cid
    meta["format"], meta["format_version"] = FORMAT, FORMAT_VERSION
    _check_meta(meta, paths["meta"])
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "checkpoint_id": cid}

    staged: list[tuple[Path, Path]] = []
    try:
        if optimizer_state is not None:
            info = {**header, "kind": "train", **{k: str(v) for k, v in (train_info or {}).items()}}
            data = st_save(_cpu_tensors(optimizer_state), metadata=info)
            staged.append((write_tmp_beside(paths["train"], data), paths["train"]))
        data = st_save(_cpu_tensors(model.state_dict()), metadata={**header, "kind": "weights"})
        staged.append((write_tmp_beside(paths["weights"], data), paths["weights"]))
        text = json.dumps(_jsonable(meta), indent=2, sort_keys=True) + "\n"
        staged.append((write_tmp_beside(paths["meta"], text.encode()), paths["meta"]))
        for tmp, dest in staged:  # commit: JSON last
            os.replace(tmp, dest)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return paths["meta"]


# --------------------------------------------------------------------------- reading

def _check_meta(meta: Any, where: Path) -> None:
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: metadata must be a JSON object, got {type(meta).__name__}")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CheckpointError(f"{where}: metadata lacks the required key(s) {', '.join(missing)}")
    unknown = sorted(k for k in meta if k not in REQUIRED_META and k not in OPTIONAL_META)
    if unknown:
        raise CheckpointError(f"{where}: unknown metadata key(s) {', '.join(unknown)} "
                              f"(put free-form data under 'extra')")
    if meta["model"] in CUB_MODEL_NAMES:  # CUB birds (stn_core.models.cub): attention boxes or none
        if meta["transform"] not in (None, "attention"):
            raise CheckpointError(f"{where}: CUB model transform must be 'attention' or null, "
                                  f"got {meta['transform']!r}")
    elif meta["model"] not in ALL_MODEL_NAMES:
        raise CheckpointError(f"{where}: unknown model {meta['model']!r}; known: {', '.join(ALL_MODEL_NAMES)}")
    elif meta["transform"] is not None and meta["transform"] not in ST_TRANSFORMS:
        raise CheckpointError(f"{where}: unknown transform {meta['transform']!r}; known: "
                              f"{', '.join(ST_TRANSFORMS)} or null")
    for k in ("input_size", "num_classes"):
        if not isinstance(meta[k], int) or isinstance(meta[k], bool) or meta[k] < 1:
            raise CheckpointError(f"{where}: {k} must be a positive integer, got {meta[k]!r}")


def load_meta(path: str | os.PathLike) -> dict:
    """The checked JSON metadata of a checkpoint (stem, .safetensors or .json)."""
    mpath = checkpoint_paths(path)["meta"]
    if not mpath.is_file():
        raise CheckpointError(f"{mpath}: checkpoint metadata not found (a checkpoint is "
                              f"NAME.safetensors + NAME.json)")
    try:
        meta = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{mpath}: not valid JSON ({e})") from None
    _check_meta(meta, mpath)
    return meta


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a safetensors file; CheckpointError if it is missing,
    truncated, corrupt or not a safetensors file at all (e.g. a renamed pickle)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    data = path.read_bytes()
    what = f"{path}: not a safetensors file"
    if len(data) < 8:
        raise CheckpointError(f"{what} (only {len(data)} bytes; truncated?)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or n + 8 > len(data):
        hint = " (it looks like a zip/pickle file, e.g. a renamed .pt)" if data[:2] in (b"PK", b"\x80\x02") else ""
        raise CheckpointError(f"{what}: bad header length {n} for a {len(data)}-byte file "
                              f"(truncated or foreign){hint}")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{what}: its header is not valid JSON (corrupt or foreign file)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{what}: its header is not a JSON object")
    info = header.get("__metadata__") or {}
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError, OSError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({e})") from None
    if info.get("format") != FORMAT:
        raise CheckpointError(f"{path}: a safetensors file, but not an STN Lab checkpoint "
                              f"(header format {info.get('format')!r})")
    return tensors, info


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from ``<stem>.json`` via the registry and load ``<stem>.safetensors``.

    ``path``: the stem, the .safetensors or the .json. Returns ``(model in eval mode, meta)``.
    Raises :class:`CheckpointError` with a readable message on any problem.
    """
    paths = checkpoint_paths(path)
    meta = load_meta(paths["meta"])
    tensors, info = read_safetensors(paths["weights"])
    if info.get("kind", "weights") != "weights":
        raise CheckpointError(f"{paths['weights']}: holds {info.get('kind')!r} state, not model weights")
    if meta.get("checkpoint_id") and info.get("checkpoint_id") and meta["checkpoint_id"] != info["checkpoint_id"]:
        raise CheckpointError(f"{paths['weights']} and {paths['meta']} belong to different checkpoints "
                              f"(an interrupted or mixed-up copy?)")
    try:
        model = model_from_meta(meta)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{paths['meta']}: cannot rebuild the model ({e})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{paths['weights']}: weights do not match the {meta['model']} model "
                              f"(missing: {missing[:5]}, unexpected: {unexpected[:5]})")
    bad = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
           for k, v in expected.items() if tuple(tensors[k].shape) != tuple(v.shape)]
    if bad:
        raise CheckpointError(f"{paths['weights']}: weight shapes do not match the model described by "
                              f"{paths['meta'].name}: " + "; ".join(bad[:5]))
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)
    return model.to(device).eval(), meta


def load_train_state(path: str | os.PathLike, meta: dict | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header info of ``<stem>.train.safetensors``; checks it belongs to ``meta``."""
    p = checkpoint_paths(path)["train"]
    tensors, info = read_safetensors(p)
    if info.get("kind") != "train":
        raise CheckpointError(f"{p}: not a training-state file (kind {info.get('kind')!r})")
    if meta is not None and meta.get("checkpoint_id") != info.get("checkpoint_id"):
        raise CheckpointError(f"{p} does not belong to {checkpoint_paths(path)['meta'].name} "
                              f"(different checkpoint_id): cannot resume from mismatched files")
    return tensors, info


# --------------------------------------------------------------------------- optimizer state

def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str = "optim/") -> dict[str, torch.Tensor]:
    """Flatten an optimizer's per-parameter state to ``{"optim/<i>/<key>": tensor}``
    (None entries skipped, numbers stored as 0-d float64 tensors)."""
    out: dict[str, torch.Tensor] = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            if v is None:
                continue
            out[f"{prefix}{i}/{k}"] = v if isinstance(v, torch.Tensor) else torch.tensor(float(v), dtype=torch.float64)
    return out


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           prefix: str = "optim/") -> None:
    """Inverse of :func:`optimizer_tensors` (hyper-parameters stay as constructed)."""
    sd = opt.state_dict()
    n_params = sum(len(g["params"]) for g in sd["param_groups"])
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        if not name.startswith(prefix):
            continue
        i_str, key = name[len(prefix):].split("/", 1)
        i = int(i_str)
        if i >= n_params:
            raise CheckpointError(f"optimizer state has an entry for parameter {i}, but the optimizer "
                                  f"has only {n_params} parameters")
        state.setdefault(i, {})[key] = t
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, st in state.items():
        for key, t in st.items():
            if t.dim() > 0 and tuple(t.shape) != tuple(params[i].shape):
                raise CheckpointError(f"optimizer state {key!r} of parameter {i} has shape {tuple(t.shape)}, "
                                      f"the parameter has {tuple(params[i].shape)}")
    sd["state"] = state
    opt.load_state_dict(sd)


__all__ = ["CheckpointError", "FORMAT", "checkpoint_paths", "load_meta", "load_model",
           "load_optimizer_tensors", "load_train_state", "optimizer_tensors", "read_safetensors",
           "save_checkpoint"]
