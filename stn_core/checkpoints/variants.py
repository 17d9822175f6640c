"""Variants of a published run: runs of one model at one budget that differ in one recipe setting (a start
scale, a learning rate).

The one with the lowest test error ships; every variant's settings, result and command go into its JSON
(under ``extra.variants``, or another key the promote script names), so a results script can show them all.
Where there is no validation split the choice is made on the test set, and the published JSON says so in
``extra.chosen_by``. Written by the promote scripts, read by the results scripts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Mapping


def run_name(stem: str | Path, meta: dict) -> str:
    """A run's name: the folder name of its command's ``--out`` (a published copy keeps its run's name)."""
    found = re.search(r"--out\s+(\S+)", meta.get("command") or "")
    return Path(found.group(1)).name if found else Path(stem).name


def variant(stem: str | Path, meta: dict, settings: Mapping[str, object] = {}) -> dict:
    """One run as a published JSON lists it: run name, steps, test error, command, and its ``train_args``
    values of ``settings`` (name → the value when the run's arguments do not record it)."""
    args = meta.get("train_args") or {}
    out = {"run": run_name(stem, meta), "steps": meta.get("steps"), "test_error": meta.get("test_error"),
           "command": meta.get("command")}
    out.update({k: args.get(k, default) for k, default in settings.items()})
    return out


def merged(earlier: list[dict], new: list[dict], key: str = "run") -> list[dict]:
    """``earlier`` variants not redone in ``new`` (same ``key``), then ``new``."""
    names = {r.get(key) for r in new}
    return [r for r in earlier if r.get(key) not in names] + new


def listed_variants(meta: dict | None, key: str, as_variant: Callable[[dict], dict]) -> list[dict]:
    """The variants a published JSON lists under ``extra[key]``; itself (``as_variant(meta)``) when it lists
    none; [] without a JSON."""
    if meta is None:
        return []
    return list((meta.get("extra") or {}).get(key) or [as_variant(meta)])
