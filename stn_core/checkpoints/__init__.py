"""Checkpoints: weights in safetensors, metadata in JSON, never pickle.

A checkpoint with stem ``checkpoints/NAME`` is up to three files:

* ``NAME.safetensors`` — the model weights;
* ``NAME.train.safetensors`` — optional training state for ``--resume`` (optimizer buffers,
  RNG states as uint8 tensors, step counter in the header metadata);
* ``NAME.json`` — metadata (task, model, transform, input size, classes, test error, the
  exact command, seeds, ...), from which :func:`load_model` rebuilds the architecture.

All three files carry the same random ``checkpoint_id``; the JSON also records the SHA-256 of
the weights file (``weights_sha256``) and of the train-state file (``train_sha256``).

Commit protocol (crash-safe at every point)
-------------------------------------------
:func:`save_checkpoint` first finishes any interrupted commit of the stem (:func:`recover`), then

1. writes every new file in full (fsync'd) to a temporary ``.NAME.<file>.<random>.p<pid>h<host>.tmp``
   beside its destination;
2. writes the *journal* ``.NAME.commit-<checkpoint_id>.json`` (atomically, folder fsync'd), listing
   the ``(temporary, destination)`` pairs in commit order: train state, weights, JSON last.
   This is the commit point: before it the old checkpoint is untouched, after it the new one wins;
3. moves each temporary into place with ``os.replace``, fsyncs the folder, deletes the journal.

:func:`recover` (run by :func:`load_meta`, :func:`load_model`, :func:`load_train_state`,
:func:`save_checkpoint`; safe to run while another process or thread writes the same stem)
rolls every journal forward (a replace whose temporary is gone was already done — replaces are
idempotent, so concurrent recoverers and the writer cannot get in each other's way), then deletes
the temporaries of the stem whose writer process is dead (never a live writer's; see
:func:`stn_core.fileio.tmp_is_stale`). Checkpoints left half-committed by the previous
writer (no journal: new train state/weights beside the old JSON, the new JSON still in a
temporary) are salvaged the same way when the new JSON's temporary and matching weights are there.
So weights, JSON and train state always belong to one ``checkpoint_id``: the complete old
checkpoint or the complete new one.

Trust boundary
--------------
Every problem with a checkpoint's files raises :class:`CheckpointError` (a ValueError), never
another exception type, and nothing large is allocated before the inputs are bounded:

* the JSON is at most :data:`MAX_META_BYTES` (4 MiB) and :data:`MAX_JSON_DEPTH` (64) levels deep
  (``NaN``/``Infinity``/overflowing numbers and integers of more than 40 digits are refused);
* every field is type-checked; the ones that shape the model are range-checked: ``input_size``
  1..1024, ``num_classes`` 1..10,000, ``arch`` a dict with ``width`` 1..16,384,
  ``target_params`` 1..10⁹, ``downsample`` 1..input_size, ``in_channels`` 1..64, ``modulated``
  a bool; CUB models: ``classes`` (int ids), ``extra.arch.crop_size`` 1..1024, ``crop_scale``
  0.05..1, ``loc_hidden`` 1..4096;
* a weights file over :data:`MAX_WEIGHTS_BYTES` (1 GiB; train state :data:`MAX_TRAIN_BYTES`, 2 GiB)
  is refused from ``os.stat`` before it is read; its header (at most 16 MiB, depth-bounded) must
  describe exactly the file's size;
* the model is first built on PyTorch's ``meta`` device (no memory) and its parameter names,
  shapes and dtype kinds compared with the file's header; only a match is built for real;
* weights with NaN or ±inf (also after the cast to the model's dtype) are refused.

Layout: :mod:`.bounds` (format constants, limits, bounded JSON, metadata checks), :mod:`.files`
(bounded safetensors reading), :mod:`.commit` (crash-safe writing and recovery); this module reads.

Integrity policy
----------------
A checkpoint with ``weights_sha256`` loads only if the weights file's bytes (hashed as read,
no second read) match it: any bit flip, truncation or noise is refused, and
``load_model`` returns ``meta["integrity"] == "sha256 verified"``. A legacy checkpoint without
the hash (written before it existed; ``scripts/hash_checkpoints.py`` adds it) still loads when
its structure checks and the NaN/inf check pass, with
``meta["integrity"] == "unverified (no weights_sha256)"`` so the app can say so; a flipped bit
that leaves a finite number cannot be detected there. ``integrity`` is never written to a file.
"""

from __future__ import annotations

import json
import os
import stat as _stat
from pathlib import Path
from typing import Any

import torch

from stn_core.checkpoints import commit
from stn_core.checkpoints.bounds import (_FLOAT_DTYPES, _INT_DTYPES, FORMAT, FORMAT_VERSION, INTEGRITY_UNVERIFIED,
                                         INTEGRITY_VERIFIED, MAX_JSON_DEPTH, MAX_META_BYTES, MAX_TRAIN_BYTES,
                                         MAX_WEIGHTS_BYTES, OPTIONAL_META, REQUIRED_META, CheckpointError, _check_meta,
                                         _RaceError, _show, checkpoint_paths, parse_json_bounded)
from stn_core.checkpoints.commit import _recover_quietly, recover, save_checkpoint
from stn_core.checkpoints.files import _check_format, _non_finite, _read_st, _STFile, _tensors, read_safetensors
from stn_core.fileio import atomic_write_bytes
from stn_core.models import model_from_meta

# --------------------------------------------------------------------------- reading

def load_meta(path: str | os.PathLike) -> dict:
    """The checked JSON metadata of a checkpoint (stem, .safetensors or .json); finishes an
    interrupted commit first (:func:`recover`)."""
    paths = checkpoint_paths(path)
    _recover_quietly(paths)
    mpath = paths["meta"]
    try:
        st = os.stat(mpath)
        if not _stat.S_ISREG(st.st_mode):
            raise FileNotFoundError
    except OSError:
        raise CheckpointError(f"{mpath}: checkpoint metadata not found (a checkpoint is "
                              f"NAME.safetensors + NAME.json)") from None
    if st.st_size > MAX_META_BYTES:
        raise CheckpointError(f"{mpath}: {st.st_size:,} bytes of metadata is more than the "
                              f"{MAX_META_BYTES:,}-byte limit")
    try:
        with open(mpath, "rb") as f:
            raw = f.read(MAX_META_BYTES + 1)
    except OSError as e:
        raise CheckpointError(f"{mpath}: cannot read ({e.strerror or e})") from None
    if len(raw) > MAX_META_BYTES:
        raise CheckpointError(f"{mpath}: more than {MAX_META_BYTES:,} bytes of metadata")
    meta = parse_json_bounded(raw, mpath)
    _check_meta(meta, mpath)
    return meta


def _check_weights_file(f: _STFile, meta: dict, paths: dict[str, Path]) -> str:
    """Kind, id and hash of a weights file against its metadata; returns the integrity note."""
    _check_format(f)
    if f.info.get("kind", "weights") != "weights":
        raise CheckpointError(f"{f.path}: holds {_show(f.info.get('kind'))} state, not model weights")
    if meta.get("checkpoint_id") and f.info.get("checkpoint_id") and meta["checkpoint_id"] != f.info["checkpoint_id"]:
        raise _RaceError(f"{f.path} and {paths['meta']} belong to different checkpoints "
                         f"(an interrupted or mixed-up copy?)")
    want = meta.get("weights_sha256")
    if want is None:
        return INTEGRITY_UNVERIFIED
    if f.sha256 != want:
        raise CheckpointError(f"{f.path}: the weights are corrupt: their SHA-256 is {f.sha256[:16]}…, "
                              f"{paths['meta'].name} records {want[:16]}… (a damaged or altered file)")
    return INTEGRITY_VERIFIED


def load_weights(path: str | os.PathLike, meta: dict | None = None) -> dict[str, torch.Tensor]:
    """The checked weight tensors of a checkpoint (for ``--resume``): size-bounded, of this
    checkpoint (``checkpoint_id``), SHA-256 verified when ``meta`` has ``weights_sha256``, finite."""
    paths = checkpoint_paths(path)
    if meta is None:
        meta = load_meta(paths["meta"])
    f = _read_st(paths["weights"], MAX_WEIGHTS_BYTES)
    _check_weights_file(f, meta, paths)
    tensors = _tensors(f)
    bad = _non_finite(tensors)
    if bad:
        raise CheckpointError(f"{f.path}: weights contain NaN or infinite values ({', '.join(bad[:5])})")
    return tensors


def _load_once(paths: dict[str, Path], device: str | torch.device) -> tuple[torch.nn.Module, dict]:
    meta = load_meta(paths["meta"])
    f = _read_st(paths["weights"], MAX_WEIGHTS_BYTES)
    integrity = _check_weights_file(f, meta, paths)
    # 1. the architecture on the meta device (allocates nothing) against the file's header
    try:
        with torch.device("meta"):
            skeleton = model_from_meta(meta)
        expected = {k: (tuple(v.shape), v.dtype) for k, v in skeleton.state_dict().items()}
    except Exception as e:  # noqa: BLE001 - the trust boundary: only CheckpointError leaves
        raise CheckpointError(f"{paths['meta']}: cannot rebuild the model ({type(e).__name__}: {str(e)[:300]})") from None
    stored = {k: e for k, e in f.header.items() if k != "__metadata__"}
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{paths['weights']}: weights do not match the {meta['model']} model "
                              f"(missing: {missing[:5]}, unexpected: {_show(unexpected[:5])})")
    bad = [f"{k}: file {tuple(stored[k]['shape'])} vs model {shape}"
           for k, (shape, _) in expected.items() if tuple(stored[k]["shape"]) != shape]
    if bad:
        raise CheckpointError(f"{paths['weights']}: weight shapes do not match the model described by "
                              f"{paths['meta'].name}: " + "; ".join(bad[:5]))
    wrong = [f"{k}: {stored[k]['dtype']} for a {str(dt).replace('torch.', '')} tensor"
             for k, (_, dt) in expected.items()
             if stored[k]["dtype"] not in (_FLOAT_DTYPES if dt.is_floating_point else _INT_DTYPES)]
    if wrong:
        raise CheckpointError(f"{paths['weights']}: weight dtypes do not fit the model: " + "; ".join(wrong[:5]))
    # 2. the tensors: cast to the model's dtypes, all finite
    tensors = _tensors(f)
    try:
        cast = {k: t.to(expected[k][1]) for k, t in tensors.items()}
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{paths['weights']}: cannot convert the weights ({type(e).__name__}: {e})") from None
    nonfinite = _non_finite(cast)
    if nonfinite:
        raise CheckpointError(f"{paths['weights']}: weights contain NaN or infinite values "
                              f"({', '.join(nonfinite[:5])}); the model would output NaN")
    # 3. the real model
    try:
        model = model_from_meta(meta)
        model.load_state_dict(cast, strict=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{paths['meta']}: cannot rebuild the model ({type(e).__name__}: {str(e)[:300]})") from None
    meta["integrity"] = integrity
    return model, meta


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from ``<stem>.json`` via the registry and load ``<stem>.safetensors``.

    ``path``: the stem, the .safetensors or the .json. Returns ``(model in eval mode, meta)``,
    ``meta["integrity"]`` being ``"sha256 verified"`` or ``"unverified (no weights_sha256)"``
    (see the module docstring). Raises :class:`CheckpointError` with a readable message on any
    problem with the files (and nothing else for them).
    """
    paths = checkpoint_paths(path)
    try:
        model, meta = _load_once(paths, device)
    except _RaceError:  # a commit may have landed between reading the JSON and the weights
        model, meta = _load_once(paths, device)
    return model.to(device).eval(), meta


#: How a run's JSON marks a ``test_set`` that is a validation split carved from the training data.
VALIDATION_MARK = "VALIDATION"


def validation_split(what: str) -> str:
    """``test_set.split`` of a run evaluated on a validation split: ``what`` says which training images."""
    return f"{VALIDATION_MARK}: {what}; test_error is the validation error"


def evaluated_on_validation(meta: dict) -> bool:
    """Whether a run's ``test_error`` is a validation error (trained with ``--val-digits`` / ``--val-fraction``:
    its JSON's ``test_set.split`` is a :func:`validation_split`): a run for choosing settings, never to publish."""
    test_set = meta.get("test_set")
    split = test_set.get("split") if isinstance(test_set, dict) else None
    return isinstance(split, str) and split.startswith(VALIDATION_MARK)


def validation_refusal(meta_path: str | os.PathLike) -> str:
    """Why a run evaluated on a validation split (:func:`evaluated_on_validation`) is neither published nor shown:
    the one message of the promote scripts and the app's registry."""
    return (f"{meta_path}: trained with a validation split (--val-digits / --val-fraction), so its error is a "
            "validation error, not a test error; train the chosen settings on all training data and publish that run")


def copy_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, meta: dict | None = None) -> dict:
    """Publish a finished checkpoint: copy its weights and JSON (never its train state) from stem ``src`` to
    stem ``dst``, the JSON replaced by ``meta`` when given (e.g. with numbers of other runs added under
    ``extra``). Written atomically, the JSON last; the copy is checked by loading it (CheckpointError if it
    does not load). A run evaluated on a validation split (:func:`evaluated_on_validation`) is refused: its
    ``test_error`` is not a test error. Returns the copy's metadata."""
    s, d = checkpoint_paths(src), checkpoint_paths(dst)
    meta = load_meta(s["meta"]) if meta is None else meta
    if evaluated_on_validation(meta):
        raise CheckpointError(validation_refusal(s["meta"]))
    meta = {k: v for k, v in meta.items() if k != "integrity"}  # added by load_model, never stored
    d["meta"].parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(d["weights"], s["weights"].read_bytes())
    atomic_write_bytes(d["meta"], (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return load_model(dst)[1]


def load_train_state(path: str | os.PathLike, meta: dict | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header info of ``<stem>.train.safetensors``; checks it belongs to ``meta``
    (same ``checkpoint_id``, SHA-256 ``train_sha256`` if recorded) and holds finite numbers."""
    paths = checkpoint_paths(path)
    _recover_quietly(paths)
    p = paths["train"]
    f = _read_st(p, MAX_TRAIN_BYTES)
    _check_format(f)
    if f.info.get("kind") != "train":
        raise CheckpointError(f"{p}: not a training-state file (kind {_show(f.info.get('kind'))})")
    if meta is not None and meta.get("checkpoint_id") != f.info.get("checkpoint_id"):
        raise CheckpointError(f"{p} does not belong to {paths['meta'].name} "
                              f"(different checkpoint_id): cannot resume from mismatched files")
    if meta is not None and meta.get("train_sha256") and meta["train_sha256"] != f.sha256:
        raise CheckpointError(f"{p}: the training state is corrupt: its SHA-256 does not match "
                              f"{paths['meta'].name}'s train_sha256")
    tensors = _tensors(f)
    bad = _non_finite(tensors)
    if bad:
        raise CheckpointError(f"{p}: training state contains NaN or infinite values ({', '.join(bad[:5])})")
    return tensors, f.info


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
        i_str, sep, key = name[len(prefix):].partition("/")
        if not sep or not i_str.isdigit() or len(i_str) > 9:
            raise CheckpointError(f"optimizer state has a malformed entry {_show(name)}")
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


__all__ = ["CheckpointError", "FORMAT", "FORMAT_VERSION", "OPTIONAL_META", "REQUIRED_META", "commit",
           "INTEGRITY_UNVERIFIED", "INTEGRITY_VERIFIED", "MAX_JSON_DEPTH",
           "MAX_META_BYTES", "MAX_TRAIN_BYTES", "MAX_WEIGHTS_BYTES", "checkpoint_paths", "copy_checkpoint",
           "VALIDATION_MARK", "evaluated_on_validation", "load_meta", "validation_refusal", "validation_split",
           "load_model", "load_optimizer_tensors", "load_train_state", "load_weights", "optimizer_tensors",
           "parse_json_bounded", "read_safetensors", "recover", "save_checkpoint"]
