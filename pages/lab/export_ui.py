"""Streamlit panel shared by the pages that export a warp as an animated GIF or MP4
(:mod:`pages.lab.export` does the work). Not a page of its own."""

from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

import numpy as np
import streamlit as st

from pages.lab import export as E

SIDES = (128, 192, 256, 384, 512)
FORMATS = ("GIF", "MP4")


def _request(prefix: str) -> None:
    st.session_state[prefix + "exp_request"] = True


def _signature(*parts) -> str:
    h = hashlib.blake2b(digest_size=12)
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p).tobytes())
            h.update(repr(p.shape).encode())
        else:
            h.update(repr(p).encode())
    return h.hexdigest()


def warp_export(prefix: str, image: np.ndarray, kind: str, params: Sequence[float], filename: str,
                controls: Mapping[str, float] | None = None, out_size: tuple[int, int] | None = None,
                sampling: str = "bilinear", label: str = "identity → this θ", expanded: bool = False) -> None:
    """An "Export GIF / MP4" expander: frames, size, speed, format, a button that renders the
    animation (θ from the identity to ``params``; ``controls``: interpolate the playground's
    intuitive controls instead of θ) and a download button for the result."""
    ss = st.session_state
    with st.expander(f":material/movie: Export GIF / MP4 ({label})", expanded=expanded):
        c1, c2, c3, c4 = st.columns([1.2, 1.2, 1, 1], vertical_alignment="bottom")
        n = int(c1.slider("Frames", 2, E.MAX_FRAMES, 24, key=prefix + "exp_frames",
                          help=f"At most {E.MAX_FRAMES}."))
        side = int(c2.select_slider("Panel size (px)", SIDES, value=256, key=prefix + "exp_side",
                                    help=f"Longer side of each panel, at most {E.MAX_SIDE} px."))
        fps = int(c3.slider("Frames per second", 2, 30, 12, key=prefix + "exp_fps"))
        fmt = c4.radio("Format", FORMATS, key=prefix + "exp_fmt", horizontal=True)
        how = ("the intuitive controls go linearly from the identity to their values" if controls is not None
               else "the raw parameters go linearly from the identity to this θ")
        st.caption(f"Left: the input with the region the sampler reads (red) and the sampling grid; right: the "
                   f"output. Interpolation: {how}.")
        sig = _signature(np.asarray(image, dtype=np.float32), kind, tuple(round(float(v), 6) for v in params),
                         sorted((controls or {}).items()), out_size, sampling, n, side, fps, fmt)
        st.button("Make the animation", key=prefix + "exp_make", on_click=_request, args=(prefix,),
                  icon=":material/movie:")
        if ss.pop(prefix + "exp_request", False):
            try:
                with st.spinner("Rendering the frames …"):
                    frames = E.warp_frames(image, kind, params, n_frames=n, side=side, controls=controls,
                                           out_size=out_size, sampling=sampling)
                    if fmt == "GIF":
                        data, mime, ext, note = E.gif_bytes(frames, fps=fps), "image/gif", "gif", ""
                    else:
                        data, codec = E.mp4_bytes(frames, fps=fps)
                        mime, ext, note = "video/mp4", "mp4", f" (codec {codec})"
                ss[prefix + "exp_result"] = (sig, data, mime, f"{filename}.{ext}", note)
            except E.ExportError as e:
                ss.pop(prefix + "exp_result", None)
                st.error(f"The animation could not be made: {e}")
        res = ss.get(prefix + "exp_result")
        if res is not None and res[0] == sig:
            _sig, data, mime, name, note = res
            st.download_button(f"Download {name} ({len(data) / 1e6:.1f} MB){note}", data=data, file_name=name,
                               mime=mime, icon=":material/download:", key=prefix + "exp_download", type="primary")
        elif res is not None:
            st.caption("The settings or θ changed since the last animation: make it again.")
