"""Home page of STN Lab: what a spatial transformer is, as a picture with real thumbnails."""

from __future__ import annotations

import streamlit as st

from pages.shell import home
from pages.shell.navigation import require_app
from pages.shell.widgets import copy_link, png_download, svg_img_tag

require_app()  # first: a run that bypassed app.py reruns through it

st.title("STN Lab")
st.markdown(
    "A lab to **see how spatial transformers work** "
    "(M. Jaderberg, K. Simonyan, A. Zisserman, K. Kavukcuoglu, *Spatial Transformer Networks*, NIPS 2015).\n\n"
    "A spatial transformer is a small module you can drop into a neural network. For every input it "
    "**predicts a geometric transformation θ** (zoom, rotation, crop, perspective…) and **resamples the "
    "image with it**, so the layers after it see a straightened, centred, cropped view. Everything in it "
    "is differentiable, so it learns where to look from the task's loss alone, without being told."
)

fig = home.load()
if fig is None:
    st.error("The pipeline picture (pages/shell/assets/pipeline.*) is missing or unreadable; "
             "`python scripts/make_home_figure.py` renders it again.")
else:
    st.html(svg_img_tag(fig.svg, alt="The spatial transformer: input U, localisation net, grid generator "
                                     "with the sampling grid drawn over U, sampler, output V"))
    # in a popover: its buttons mount only when it is opened, so their bundle does not delay the first paint
    with st.popover(":material/download: Download the picture"):
        png_download(fig.png, "stn-pipeline.png", key="home_png")
        st.download_button("Download SVG", data=fig.svg.encode("utf-8"), file_name="stn-pipeline.svg",
                           mime="image/svg+xml", icon=":material/download:", key="home_svg")
    st.caption(f"Real thumbnails, computed by the library from {fig.what} (`python scripts/make_home_figure.py`; "
               "a test renders them again and compares): U is the digit rotated, shrunk and moved; θ is the affine "
               "map that undoes this (what a trained localisation net would predict). Cyan: the sampling grid "
               "$T_\\theta(G)$ drawn over U; red: the border of the output window. The sampler reads U at the grid "
               "points, which gives the straightened V. Try it live in the Transform playground.")

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
copy_link()
