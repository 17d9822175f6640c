"""Streamlit UI helpers shared by the STN Lab pages: sample images, the image picker,
query-parameter sync and message display. No maths here (see stn_core)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping

import numpy as np
import streamlit as st
import torch

from pages.lab import explorer as ex
from pages.lab import playground as pg
from pages.shell.widgets import copy_link, png_download, query_dict, view_url  # noqa: F401 (re-exported)
from stn_core import registry as reg
from stn_core.checkpoints import CheckpointError, load_model
from stn_core.data import test_digits as td
from stn_core.data.samples import load_cub_sample, load_mnist_sample

SOURCE_LABELS = {"mnist": "MNIST digit", "bird": "Bird photo (CUB)", "upload": "Your upload"}


# --------------------------------------------------------------------------- samples

@dataclass(frozen=True)
class Catalog:
    """What the shipped samples offer: digit labels, bird names, and whether they are generated stand-ins."""
    digit_labels: tuple[int, ...]
    bird_names: tuple[str, ...]
    note: str  # non-empty when shipped samples were missing and stand-ins are used


@st.cache_data(show_spinner=False)
def _mnist() -> tuple[np.ndarray, np.ndarray] | None:
    try:
        images, labels = load_mnist_sample()
        return images, labels
    except Exception:  # samples not shipped / unreadable: the page uses a stand-in
        return None


@st.cache_data(show_spinner=False)
def _birds() -> list[tuple[str, np.ndarray]] | None:
    try:
        recs = load_cub_sample(load_images=True)
        return [(str(r["class_name"]).replace("_", " "), pg.as_rgb(r["image"])) for r in recs] or None
    except Exception:
        return None


@st.cache_data(show_spinner=False)
def catalog() -> Catalog:
    """Digit labels and bird names of the shipped samples (stand-ins when missing)."""
    mn, birds = _mnist(), _birds()
    missing = [name for name, v in (("MNIST digits", mn), ("CUB birds", birds)) if v is None]
    note = ""
    if missing:
        note = (f"Shipped samples not found ({', '.join(missing)} in data/samples/): "
                "showing generated test images instead.")
    labels = tuple(int(v) for v in mn[1]) if mn is not None else (-1,)
    names = tuple(n for n, _ in birds) if birds is not None else ("generated test picture",)
    return Catalog(labels, names, note)


@st.cache_data(show_spinner=False, max_entries=64)
def sample_image(source: str, index: int) -> np.ndarray:
    """A shipped sample as float32 (H, W, 3) in [0, 1] (a generated stand-in if missing)."""
    if source == "mnist":
        mn = _mnist()
        if mn is None:
            return pg.fallback_digit()
        return pg.as_rgb(mn[0][int(index) % len(mn[0])])
    birds = _birds()
    if birds is None:
        return pg.fallback_photo()
    return birds[int(index) % len(birds)][1]


# --------------------------------------------------------------------------- widget values across modes

def restore_widget_values(defaults: dict[str, object]) -> None:
    """Before drawing widgets that some modes hide: put back each key's last kept value (Streamlit drops
    a widget's key from ``st.session_state`` on a run that does not draw it, e.g. the species box while
    a photo is uploaded), so code that reads ``st.session_state[key]`` never hits a missing key."""
    for key, default in defaults.items():
        if key not in st.session_state:
            st.session_state[key] = st.session_state.get(key + "__kept", default)


def keep_widget_values(keys: Iterable[str]) -> None:
    """After drawing: remember each key's value under ``key + "__kept"`` (see :func:`restore_widget_values`)."""
    for key in keys:
        if key in st.session_state:
            st.session_state[key + "__kept"] = st.session_state[key]


# --------------------------------------------------------------------------- checkpoints, test digits

@st.cache_resource(show_spinner="Loading the model …", max_entries=32)
def load_checkpoint(stem: str, version: tuple[int, int]) -> tuple[torch.nn.Module, dict]:
    """(model in eval mode, meta) of a checkpoint, shared by every session and page; ``version``
    (:func:`stn_core.registry.version`: mtime, size) reloads a checkpoint that training rewrote."""
    return load_model(stem)


def load_keyed_models(entries: Mapping[str, reg.KeyedEntry], labels: Mapping[str, str]) -> dict[str, torch.nn.Module]:
    """The models of a page's fixed set of checkpoints (:func:`stn_core.registry.find_volume`, ``find_sequences``
    …), by key; an unreadable one is an ``st.error`` naming it (``labels[key]``) and is left out."""
    models: dict[str, torch.nn.Module] = {}
    for key, e in entries.items():
        if e.meta is None:
            st.error(f"{labels[key]}: {e.error}")
            continue
        try:
            models[key], _ = load_checkpoint(str(e.stem), e.version)
        except CheckpointError as err:
            st.error(f"{labels[key]}: {err}")
    return models


@st.cache_resource(show_spinner="Distorting the test digits …", max_entries=8)
def test_digits(task: str) -> td.TestDigits:
    """The fixed test set of ``task`` (or the shipped-sample stand-in), built once per server."""
    return td.test_digits(task)


def _folder_versions(folder: Path) -> str:
    """A digest of (name, mtime_ns, size) of every checkpoint file in the folder and its long/ and live/
    sub-folders (one directory listing each, no file read): any new, removed or rewritten checkpoint
    changes it, so it keys the cached discovery below (a short string: cheap for Streamlit to hash)."""
    out = []
    for f in (folder, folder / reg.LONG_SUBDIR, folder / reg.LIVE_SUBDIR):
        try:
            with os.scandir(f) as it:
                for e in it:
                    if e.name.endswith((".json", ".safetensors")):
                        s = e.stat()
                        out.append((f.name, e.name, s.st_mtime_ns, s.st_size))
        except OSError:
            continue
    return hashlib.blake2b(repr(sorted(out)).encode(), digest_size=16).hexdigest()


@st.cache_resource(show_spinner=False, max_entries=8)
def _discover_all(folder: str, versions: str) -> Mapping[tuple[str, str], reg.Entry]:
    """Discovery keyed by the folder and :func:`_folder_versions` (the key, unused in the body); one
    read-only mapping shared by every rerun and session (no copy per call)."""
    f = Path(folder)
    return MappingProxyType({**reg.discover(f), **reg.discover_long(f), **reg.discover_live(f)})


def discovery_key(folder: Path | None = None) -> tuple[str, str]:
    """``(folder, digest of its listings)``: changes exactly when :func:`discover_checkpoints` would read
    anew, so a cache of anything derived from the discovered checkpoints can be keyed by it."""
    folder = reg.checkpoint_dir() if folder is None else Path(folder)
    return str(folder), _folder_versions(folder)


def discover_checkpoints(folder: Path | None = None, key: tuple[str, str] | None = None
                         ) -> Mapping[tuple[str, str], reg.Entry]:
    """Every distorted-MNIST checkpoint (Table 1, longer schedule, live runs) of ``folder`` (default
    :func:`stn_core.registry.checkpoint_dir`), read once per change of the folders, not on every rerun;
    read-only (copy it with ``dict(...)`` to change it). ``key``: a :func:`discovery_key` the caller already
    has (the folders are then not listed again)."""
    return _discover_all(*(discovery_key(folder) if key is None else key))


# --------------------------------------------------------------------------- messages, query params

def show_messages(messages: Iterable[pg.Message], where=st) -> None:
    """Show messages with st.error / st.warning / st.info (never raises)."""
    for m in messages:
        fn = {"error": where.error, "warning": where.warning}.get(m.level, where.info)
        fn(m.text)


def sync_query_params(params: dict[str, str]) -> None:
    """Make the URL query string equal ``params`` (only writes when something changed)."""
    if query_dict() != params:
        st.query_params.from_dict(params)


# --------------------------------------------------------------------------- upload

def handle_upload(uploaded, session_key: str = "upload") -> tuple[np.ndarray | None, str, list[pg.Message]]:
    """Decode an ``st.file_uploader`` file once per file id and remember the last good one.

    Returns (image or None, its name, messages). A bad file gives an error message and the
    previously uploaded good image (if any) stays in use.
    """
    store = st.session_state.setdefault(session_key, {"id": None, "name": "", "image": None, "warnings": [],
                                                       "error": None})
    msgs: list[pg.Message] = []
    if uploaded is not None and uploaded.file_id != store["id"]:
        res = pg.decode_upload(uploaded.getvalue(), uploaded.name)
        store["id"] = uploaded.file_id
        if res.error is None:
            store.update(name=uploaded.name, image=res.image, warnings=res.warnings, error=None)
        else:
            store["error"] = res.error
    if uploaded is not None and store["error"]:
        keep = f" Still showing {store['name']!r}." if store["image"] is not None else ""
        msgs.append(pg.Message("error", store["error"] + keep))
    msgs += [pg.Message("info", f"{store['name']}: {w}.") for w in store["warnings"]]
    return store["image"], store["name"], msgs


# --------------------------------------------------------------------------- digit picker (trained-model pages)

DIGIT_SOURCES = {"test": "Test digit", "draw": "Draw one", "upload": "Upload"}
UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"]


@dataclass(frozen=True)
class PickedDigit:
    """The digit a sidebar picker chose: ``base (S, S)`` float32 in [0, 1] on the model's canvas,
    its label (test digits only), a phrase naming it, the source and the test index."""

    base: np.ndarray
    label: int | None
    what: str
    src: str
    index: int


def _shift_digit(key: str, delta: int, n: int) -> None:
    st.session_state[key] = int(min(max(0, int(st.session_state.get(key, 0)) + delta), n - 1))


def digit_picker(prefix: str, x_test, y_test, dist_short: str, size: int, sources: Iterable[str],
                 msgs: list[pg.Message], draw_hint: str) -> PickedDigit:
    """Sidebar "2 · Digit": a test digit by index (◀/▶), a drawing, or an upload (``sources`` ⊆
    :data:`DIGIT_SOURCES`). Session keys ``<prefix>src`` / ``index`` / ``drawing`` (the page's
    pad stores its drawing there) / ``upload``. ``x_test (N, 1, S, S)``, ``y_test (N,)``; info
    and error texts go to ``msgs``. Call inside ``with st.sidebar``."""

    ss = st.session_state
    n = int(x_test.shape[0])
    ss.setdefault(prefix + "src", "test")
    ss.setdefault(prefix + "index", 0)
    if int(ss[prefix + "index"]) > n - 1:
        ss[prefix + "index"] = n - 1
    options = [s for s in DIGIT_SOURCES if s in set(sources)]
    st.header("2 · Digit")
    src = st.radio("Digit", options, format_func=DIGIT_SOURCES.get, key=prefix + "src", horizontal=True,
                   label_visibility="collapsed")
    index = int(ss[prefix + "index"])
    if src == "test":
        index = int(st.number_input(f"Test digit (0–{n - 1})", min_value=0, max_value=n - 1, step=1,
                                    key=prefix + "index"))
        c1, c2 = st.columns(2)
        c1.button("◀ Previous", key=prefix + "prev", on_click=_shift_digit, args=(prefix + "index", -1, n),
                  width="stretch")
        c2.button("Next ▶", key=prefix + "next", on_click=_shift_digit, args=(prefix + "index", 1, n),
                  width="stretch")
        label = int(y_test[index])
        return PickedDigit(x_test[index, 0].numpy(), label,
                           f"test digit #{index} (a {label}), already {dist_short}-distorted", src, index)
    if src == "upload":
        uploaded = st.file_uploader("A picture of one digit (PNG, JPEG, …)", type=UPLOAD_TYPES, key=prefix + "upload")
        image, name, up_msgs = handle_upload(uploaded, prefix + "upload_store")
        msgs += up_msgs
        if image is None:
            msgs.append(pg.Message("info", "Upload a picture of a digit in the sidebar; until then test digit #0 "
                                           "is shown (undistorted)."))
            image, name = sample_image("mnist", 0), "test digit #0"
        digit, notes = ex.prepare_digit(image)
        msgs += [pg.Message("info", f"{name}: {note}.") for note in notes]
        return PickedDigit(ex.to_canvas(digit, size), None, f"your upload {name!r}, centred like an MNIST digit",
                           src, index)
    drawing = ss.get(prefix + "drawing")
    if drawing is None or float(np.max(drawing)) <= 0.0:
        msgs.append(pg.Message("info", draw_hint))
        return PickedDigit(np.zeros((size, size), np.float32), None, "your drawing (empty so far)", src, index)
    digit, _notes = ex.prepare_digit(drawing)
    return PickedDigit(ex.to_canvas(digit, size), None, "your drawing, centred like an MNIST digit", src, index)


# --------------------------------------------------------------------------- image picker

def clamp_image_key(key: str) -> tuple[str, list[pg.Message]]:
    """Check an image key against the shipped samples; out-of-range indices fall back with a warning."""
    parsed = pg.parse_image_key(key)
    if parsed is None:
        return "mnist-0", [pg.Message("warning", f"Unknown image {key!r}; showing the default digit.")]
    source, index = parsed
    cat = catalog()
    n = len(cat.digit_labels) if source == "mnist" else len(cat.bird_names) if source == "bird" else 1
    if index >= n:
        return pg.image_key(source, 0), [pg.Message("warning", f"Image {key!r} does not exist (there are {n}); "
                                                               f"showing {pg.image_key(source, 0)!r}.")]
    return key, []


def seed_picker(prefix: str, key: str) -> None:
    """Put an image key into the picker's widget keys (only those not set yet)."""
    source, index = pg.parse_image_key(key) or ("mnist", 0)
    st.session_state.setdefault(f"{prefix}src", source)
    if source == "mnist":
        st.session_state.setdefault(f"{prefix}digit", index)
    elif source == "bird":
        st.session_state.setdefault(f"{prefix}bird", index)


def image_picker(prefix: str, where=None) -> tuple[str, np.ndarray, str, list[pg.Message]]:
    """Sidebar image picker: shipped MNIST digit by index, shipped bird, or an upload.

    Returns (image key, image float32 (H, W, 3), caption, messages). Widget keys start with ``prefix``.
    """
    where = st.sidebar if where is None else where
    cat = catalog()
    msgs: list[pg.Message] = []
    if cat.note:
        msgs.append(pg.Message("info", cat.note))
    source = where.radio("Image", options=list(SOURCE_LABELS), format_func=SOURCE_LABELS.get,
                         key=f"{prefix}src", horizontal=True)
    if source == "mnist":
        n = len(cat.digit_labels)
        index = int(where.number_input(f"Digit index (0–{n - 1})", min_value=0, max_value=n - 1, step=1,
                                       key=f"{prefix}digit"))
        label = cat.digit_labels[index]
        caption = f"MNIST test digit #{index}" + (f" (a {label})" if label >= 0 else " (generated stand-in)")
        return pg.image_key("mnist", index), sample_image("mnist", index), caption, msgs
    if source == "bird":
        names = cat.bird_names
        index = int(where.selectbox("Bird", options=list(range(len(names))),
                                    format_func=lambda i: f"{i}: {names[i]}", key=f"{prefix}bird"))
        return pg.image_key("bird", index), sample_image("bird", index), f"CUB-200-2011: {names[index]}", msgs
    uploaded = where.file_uploader("Upload an image (PNG, JPEG, WebP, …; larger than 512 px is downscaled)",
                                   type=["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"],
                                   key=f"{prefix}upload")
    image, name, up_msgs = handle_upload(uploaded, f"{prefix}upload_store")
    msgs += up_msgs
    if image is None:
        msgs.append(pg.Message("info", "Upload a picture in the sidebar; until then the default digit is shown."))
        return "upload", sample_image("mnist", 0), "default digit (no upload yet)", msgs
    return "upload", image, f"your upload: {name}", msgs


# --------------------------------------------------------------------------- export and links

#: plotly config for every figure: the modebar's camera button (shown on hover, so it never
#: hides a title) downloads the figure as a PNG at 2× resolution (rendered in the browser).
PLOT_CONFIG = {"displaylogo": False, "scrollZoom": False, "displayModeBar": "hover",
               "toImageButtonOptions": {"format": "png", "scale": 2}}


def _reset_distortion(prefix: str) -> None:

    for name, v in ex.controls_identity().items():
        st.session_state[prefix + name] = v


def distortion_controls(prefix: str, primary: bool = False) -> dict[str, float]:
    """The "3 · Distort it" sidebar section of the explorer-style pages: one slider per
    ``pages.lab.explorer.CONTROL_NAMES`` (session keys ``prefix + name``, already initialised by the
    page) and a reset button; returns the current controls {name: value}."""

    st.header("3 · Distort it")
    st.caption("The playground's controls: they place the sampling window on the digit.")
    for name in ex.CONTROL_NAMES:
        spec = pg.SLIDERS[name]
        st.slider(spec.label, min_value=spec.lo, max_value=spec.hi, step=spec.step, key=prefix + name, help=spec.help)
    st.button("Reset the distortion", key=prefix + "reset", on_click=_reset_distortion, args=(prefix,),
              width="stretch", type="primary" if primary else "secondary")
    return {name: float(st.session_state[prefix + name]) for name in ex.CONTROL_NAMES}


def plot_config(filename: str) -> dict:
    """``PLOT_CONFIG`` with the PNG download named ``filename`` (no extension)."""
    return {**PLOT_CONFIG, "toImageButtonOptions": {"format": "png", "scale": 2, "filename": filename}}


