"""Home page of STN Lab: what a spatial transformer is, as a picture with real thumbnails."""

from __future__ import annotations

import streamlit as st

from pages.lab import common
from pages.lab import figures as viz
from pages.lab import playground as pg
from pages.lab.navigation import require_app

require_app()  # first: a run that bypassed app.py reruns through it



@st.cache_data(show_spinner=False)
def _schematic() -> tuple[str, bytes, str]:
    """The pipeline picture as SVG and as PNG (the same layout), and a caption naming the digit used."""
    labels = common.catalog().digit_labels
    index = labels.index(4) if 4 in labels else 0
    ex = pg.pipeline_example(common.sample_image("mnist", index))
    scene = viz.pipeline_scene(ex.u, ex.grid, ex.v, ex.outline)
    what = f"MNIST test digit #{index}" if labels[index] >= 0 else "a generated stand-in digit"
    return viz.scene_svg(scene), viz.scene_png(scene), what


st.title("STN Lab")
st.markdown(
    "A lab to **see how spatial transformers work** "
    "(M. Jaderberg, K. Simonyan, A. Zisserman, K. Kavukcuoglu, *Spatial Transformer Networks*, NIPS 2015).\n\n"
    "A spatial transformer is a small module you can drop into a neural network. For every input it "
    "**predicts a geometric transformation θ** (zoom, rotation, crop, perspective…) and **resamples the "
    "image with it**, so the layers after it see a straightened, centred, cropped view. Everything in it "
    "is differentiable, so it learns where to look from the task's loss alone, without being told."
)

svg, png, what = _schematic()
st.html(viz.svg_img_tag(svg, alt="The spatial transformer: input U, localisation net, grid generator "
                                        "with the sampling grid drawn over U, sampler, output V"))
downloads = st.container(horizontal=True)
common.png_download(png, "stn-pipeline.png", where=downloads, key="home_png")
downloads.download_button("Download SVG", data=svg.encode("utf-8"), file_name="stn-pipeline.svg",
                          mime="image/svg+xml", icon=":material/download:", key="home_svg")
st.caption(f"Real thumbnails, computed live from {what}: U is the digit rotated, shrunk and moved; θ is the affine "
           "map that undoes this (what a trained localisation net would predict). Cyan: the sampling grid "
           "$T_\\theta(G)$ drawn over U; red: the border of the output window. The sampler reads U at the grid points, "
           "which gives the straightened V.")

st.subheader("The three parts")
c1, c2, c3 = st.columns([1.0, 1.1, 1.3], gap="large")
with c1:
    st.markdown("**1 · Localisation net** — any small network (fully connected or convolutional) that looks "
                "at the input U and regresses the parameters θ. It starts at the identity.")
    st.latex(r"\theta = f_{\mathrm{loc}}(U)")
with c2:
    st.markdown("**2 · Grid generator** — takes the regular grid G of output pixels and maps every point "
                "$(x^t, y^t)$ to the source point $(x^s, y^s)$ in U where it should be read (affine case shown).")
    st.latex(r"\begin{pmatrix} x_i^s \\ y_i^s \end{pmatrix} = A_\theta "
             r"\begin{pmatrix} x_i^t \\ y_i^t \\ 1 \end{pmatrix}")
with c3:
    st.markdown("**3 · Sampler** — reads U at the (generally fractional) source points with a kernel k, "
                "e.g. bilinear $k(d) = \\max(0, 1 - |d|)$; the result is the output V.")
    st.latex(r"\begin{aligned} V_i = \sum_{n}\sum_{m} U_{nm}\, & k(x_i^s - m) \\ \cdot\, & k(y_i^s - n) \end{aligned}")

st.divider()
st.subheader("Try it")
st.page_link("pages/playground.py", label="Open the Transform playground", icon=":material/arrow_forward:")
links = st.columns(3)
links[0].page_link("pages/playground.py", label="… zoom on the top of a digit", icon=":material/zoom_in:",
                   query_params={"image": "mnist-0", "kind": "attention", "sx": "0.5", "ty": "-0.35"})
links[1].page_link("pages/playground.py", label="… rotate a bird by 45°", icon=":material/rotate_right:",
                   query_params={"image": "bird-0", "kind": "affine", "rot": "45"})
links[2].page_link("pages/playground.py", label="… tilt the view (projective)", icon=":material/view_in_ar:",
                   query_params={"image": "bird-0", "kind": "projective", "sx": "0.9", "sy": "0.9", "py": "0.5"})
links2 = st.columns(3)
links2[0].page_link("pages/tour.py", label="Guided tour (for a lecture)", icon=":material/school:")
common.copy_link()
