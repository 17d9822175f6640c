"""The crash-safe commit of a checkpoint's files and the recovery of an interrupted one (see the protocol in
:mod:`stn_core.checkpoints`)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import struct
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save

from stn_core.checkpoints.bounds import (_MAX_JOURNAL_BYTES, COMMIT_FORMAT, FORMAT, FORMAT_VERSION, MAX_HEADER_BYTES,
                                         MAX_JSON_DEPTH, MAX_META_BYTES, MAX_NUM_CLASSES, MAX_TRAIN_BYTES,
                                         MAX_WEIGHTS_BYTES, CheckpointError, _check_meta, _is_int, _json_depth_ok,
                                         _stem_name, checkpoint_paths, parse_json_bounded)
from stn_core.checkpoints.files import _header_size
from stn_core.fileio import atomic_write_bytes, fsync_dir, parse_tmp_name, remove_stale_tmps, write_tmp_beside

# --------------------------------------------------------------------------- writing

def _crash_point(point: str) -> None:
    """Called at each step of a commit (a hook for the fault-injection tests; does nothing)."""


def _jsonable(meta: dict) -> dict:
    try:
        return json.loads(json.dumps(meta, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as e:
        raise ValueError(f"checkpoint metadata must be plain JSON (str, numbers, lists, dicts): {e}") from None


def _cpu_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def _journal_path(paths: dict[str, Path], cid: str) -> Path:
    return paths["meta"].with_name(f".{_stem_name(paths)}.commit-{cid}.json")


def save_checkpoint(path_stem: str | os.PathLike, model: torch.nn.Module, meta: dict[str, Any],
                    optimizer_state: dict[str, torch.Tensor] | None = None,
                    train_info: dict[str, str] | None = None) -> Path:
    """Write ``<stem>.safetensors``, ``<stem>.json`` and (given ``optimizer_state``, a flat
    dict of tensors such as :func:`optimizer_tensors` returns, plus RNG states)
    ``<stem>.train.safetensors`` as one crash-safe commit (see the module docstring).
    ``train_info`` (str → str) goes into the train file's header. Missing architecture keys of
    ``meta`` are filled from ``model.config``; ``checkpoint_id``, ``params``, ``weights_sha256``
    (and ``train_sha256``) are set here. Returns the JSON path."""
    paths = checkpoint_paths(path_stem)
    paths["weights"].parent.mkdir(parents=True, exist_ok=True)
    recover(paths["meta"])  # finish an interrupted commit of this stem before starting a new one
    meta = dict(meta)
    for k in ("integrity", "weights_sha256", "train_sha256"):  # computed here / never stored
        meta.pop(k, None)
    cfg = getattr(model, "config", {}) or {}
    for key, ckey in (("model", "name"), ("transform", "transform"), ("input_size", "input_size"),
                      ("num_classes", "num_classes")):
        if key not in meta and ckey in cfg:
            meta[key] = cfg[ckey]
    if "arch" not in meta and cfg:
        meta["arch"] = {k: cfg[k] for k in ("width", "downsample", "target_params", "modulated", "in_channels")
                        if k in cfg}
    n_cls = meta.get("num_classes", 10)
    if _is_int(n_cls) and 1 <= n_cls <= MAX_NUM_CLASSES:
        meta.setdefault("classes", [str(i) for i in range(n_cls)])
    meta.setdefault("torch_version", torch.__version__)
    meta.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    meta["params"] = int(sum(p.numel() for p in model.parameters()))
    cid = uuid.uuid4().hex
    meta["checkpoint_id"] = cid
    meta["format"], meta["format_version"] = FORMAT, FORMAT_VERSION
    if not _json_depth_ok(meta, MAX_JSON_DEPTH):
        raise CheckpointError(f"{paths['meta']}: metadata nested more than {MAX_JSON_DEPTH} levels deep")
    meta = _jsonable(meta)
    _check_meta(meta, paths["meta"])
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "checkpoint_id": cid}

    files: list[tuple[Path, bytes]] = []
    if optimizer_state is not None:
        info = {**header, "kind": "train", **{k: str(v) for k, v in (train_info or {}).items()}}
        data = st_save(_cpu_tensors(optimizer_state), metadata=info)
        if len(data) > MAX_TRAIN_BYTES:
            raise CheckpointError(f"{paths['train']}: {len(data):,} bytes of training state is more than the "
                                  f"{MAX_TRAIN_BYTES:,}-byte limit it could be read back with")
        meta["train_sha256"] = hashlib.sha256(data).hexdigest()
        files.append((paths["train"], data))
    data = st_save(_cpu_tensors(model.state_dict()), metadata={**header, "kind": "weights"})
    if len(data) > MAX_WEIGHTS_BYTES:
        raise CheckpointError(f"{paths['weights']}: {len(data):,} bytes of weights is more than the "
                              f"{MAX_WEIGHTS_BYTES:,}-byte limit they could be read back with")
    meta["weights_sha256"] = hashlib.sha256(data).hexdigest()
    files.append((paths["weights"], data))
    text = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode("utf-8")
    if len(text) > MAX_META_BYTES:
        raise CheckpointError(f"{paths['meta']}: {len(text):,} bytes of metadata is more than the "
                              f"{MAX_META_BYTES:,}-byte limit it could be read back with")
    files.append((paths["meta"], text))  # JSON last
    _commit(paths, cid, files)
    return paths["meta"]


def _commit(paths: dict[str, Path], cid: str, files: list[tuple[Path, bytes]]) -> None:
    """Stage ``files`` as temporaries, write the journal (the commit point), roll it forward."""
    journal = _journal_path(paths, cid)
    staged: list[tuple[Path, Path]] = []
    committed = False
    try:
        for dest, data in files:
            staged.append((write_tmp_beside(dest, data), dest))
        _crash_point("staged")
        record = {"format": COMMIT_FORMAT, "format_version": 1, "checkpoint_id": cid,
                  "replace": [[tmp.name, dest.name] for tmp, dest in staged]}
        atomic_write_bytes(journal, json.dumps(record).encode("utf-8"), durable=True)
        committed = True
        _crash_point("journal")
        _roll_forward(journal, paths, record, hook=True)
    finally:
        if not committed and not journal.exists():
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)


def _read_journal(journal: Path, paths: dict[str, Path]) -> dict | None:
    """A journal's checked record, or None if it is unreadable or not ours (then it is junk)."""
    try:
        if os.stat(journal).st_size > _MAX_JOURNAL_BYTES:
            return None
        record = parse_json_bounded(journal.read_bytes(), journal, max_depth=4)
    except (OSError, CheckpointError):
        return None
    dests = {paths[k].name for k in ("train", "weights", "meta")}
    if not (isinstance(record, dict) and record.get("format") == COMMIT_FORMAT
            and isinstance(record.get("replace"), list)):
        return None
    for step in record["replace"]:
        if not (isinstance(step, list) and len(step) == 2 and all(isinstance(s, str) for s in step)):
            return None
        tmp, dest = step
        parsed = parse_tmp_name(tmp)
        if dest not in dests or parsed is None or parsed[0] != dest or "/" in tmp or os.sep in tmp:
            return None
    return record


def _roll_forward(journal: Path, paths: dict[str, Path], record: dict, hook: bool = False) -> bool:
    """Move a committed checkpoint's temporaries into place (in the journal's order); idempotent,
    and safe while another process or thread does the same. Returns True once complete."""
    folder = journal.parent
    for tmp_name, dest_name in record["replace"]:
        tmp = folder / tmp_name
        try:
            os.replace(tmp, folder / dest_name)
        except FileNotFoundError:
            if tmp.exists():  # the destination folder is gone?
                raise
            # already moved (by the writer or another recoverer)
        if hook:
            _crash_point(f"replaced {dest_name}")
    fsync_dir(folder)
    if hook:
        _crash_point("committed")
    journal.unlink(missing_ok=True)
    return True


def _journals(paths: dict[str, Path]) -> list[Path]:
    folder, prefix = paths["meta"].parent, f".{_stem_name(paths)}.commit-"
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(prefix) and e.name.endswith(".json")]
    except OSError:
        return []
    out = []
    for e in entries:
        mid = e.name[len(prefix):-len(".json")]
        if len(mid) == 32 and all(c in "0123456789abcdef" for c in mid):
            try:
                out.append((e.stat().st_mtime, e.name))
            except OSError:
                pass
    return [folder / name for _, name in sorted(out)]


def recover(path: str | os.PathLike) -> list[str]:
    """Finish an interrupted commit of the checkpoint ``path`` (stem or any of its files) and
    delete its stale temporaries; returns what it did (for logs). Safe at any time, also while a
    writer is busy with the same stem (see the module docstring). OSError if the folder cannot
    be written (:func:`load_meta` and friends then go on with what is there)."""
    paths = checkpoint_paths(path)
    folder = paths["meta"].parent
    if not folder.is_dir():
        return []
    done: list[str] = []
    keep: set[str] = set()
    for journal in _journals(paths):
        record = _read_journal(journal, paths)
        if record is None:
            journal.unlink(missing_ok=True)
            done.append(f"removed the unreadable journal {journal.name}")
            continue
        try:
            _roll_forward(journal, paths, record)
            done.append(f"finished the interrupted commit {record.get('checkpoint_id')}")
        except OSError:
            keep.update(t for t, _ in record["replace"])
            raise
    if not done:
        done += _salvage_legacy(paths)
    name = _stem_name(paths)
    dests = {paths[k].name for k in ("train", "weights", "meta")}
    gone = remove_stale_tmps(folder, lambda d: d in dests or (d.startswith(f".{name}.commit-") and d.endswith(".json")),
                             keep)
    done += [f"removed the stale temporary {p.name}" for p in gone]
    return done


def _recover_quietly(paths: dict[str, Path]) -> None:
    try:
        recover(paths["meta"])
    except OSError:
        pass  # e.g. a read-only folder: read what is there (mismatches are still detected)


def _header_cid(path: Path) -> str | None:
    """checkpoint_id in the header of a safetensors file of the right size (reads only the header)."""
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return None
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or n + 8 > size:
                return None
            header = parse_json_bounded(f.read(n), path)
        if not isinstance(header, dict) or _header_size(header, n, path) != size:
            return None
        info = header.get("__metadata__") or {}
        cid = info.get("checkpoint_id") if isinstance(info, dict) else None
        return cid if isinstance(cid, str) else None
    except (OSError, CheckpointError):
        return None


def _salvage_legacy(paths: dict[str, Path]) -> list[str]:
    """Complete a commit interrupted under the old protocol (no journal; order train state,
    weights, JSON): the new JSON still in an old-style temporary, the new train state (and maybe
    the weights) already in place. Only done when a file in place already carries the new id,
    so an old leftover temporary never rolls a checkpoint back."""
    folder = paths["meta"].parent
    legacy = {k: _legacy_tmps(folder, paths[k].name) for k in ("train", "weights", "meta")}
    if not legacy["meta"]:
        return []
    try:
        cur = parse_json_bounded(paths["meta"].read_bytes(), paths["meta"]).get("checkpoint_id")
    except (OSError, CheckpointError, AttributeError):
        cur = None
    placed = {k: _header_cid(paths[k]) for k in ("train", "weights")}
    for jtmp in legacy["meta"]:
        try:
            if jtmp.stat().st_size > MAX_META_BYTES:
                continue
            new = parse_json_bounded(jtmp.read_bytes(), jtmp)
            _check_meta(new, jtmp)
        except (OSError, CheckpointError):
            continue
        cid = new.get("checkpoint_id")
        if not cid or cid == cur or cid not in placed.values():
            continue
        moves = []
        if placed["weights"] != cid:
            match = [t for t in legacy["weights"] if _header_cid(t) == cid]
            if not match:
                continue
            moves.append((match[0], paths["weights"]))
        for tmp, dest in moves + [(jtmp, paths["meta"])]:
            os.replace(tmp, dest)
        fsync_dir(folder)
        return [f"finished the interrupted (old-style) commit {cid}"]
    return []


def _legacy_tmps(folder: Path, dest_name: str) -> list[Path]:
    out = []
    try:
        for e in os.scandir(folder):
            if e.name.startswith(f".{dest_name}.") and e.name.endswith(".tmp"):
                parsed = parse_tmp_name(e.name)
                if parsed is not None and parsed[0] == dest_name and parsed[1] is None:
                    out.append(folder / e.name)
    except OSError:
        pass
    return out
