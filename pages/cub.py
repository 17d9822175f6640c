"""CUB attention: where do the attention transformers of a bird classifier look? (paper Table 3, Fig. 4)

URL path: ``/cub``; query parameters ``src`` (sample | dataset | upload), ``cls`` (class id, 0 =
all), ``i`` (bird index within the class filter), ``parts`` / ``bbox`` (0/1 overlays), ``st``
(2st | 4st | a 448-px variant of ``registry.CUB_VARIANT_KEYS``: model of the gallery and replay tabs), ``res``
(224 | 448: the models' input size).
Checkpoints: ``checkpoints/cub50_{baseline,2st,4st}`` (224 px) and ``…_448`` (or
``$STN_LAB_CHECKPOINTS``). Logic in :mod:`pages.lab.cub`.

Widget keys (for AppTest): ``cub_res``, ``cub_src``, ``cub_cls``, ``cub_i``, ``cub_parts``, ``cub_bbox``, ``cub_st``,
``cub_step``, ``cub_gif_bird``; button ``cub_random``; upload ``cub_upload``; download ``cub_gif``
(box replay GIF).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from pages.lab import cached, common
from pages.lab import cub as ca
from pages.lab import figures as viz
from pages.lab.export import MAX_FRAMES
from pages.shell.navigation import require_app
from stn_core import registry as reg
from stn_core.checkpoints import CheckpointError

require_app()  # first: a run that bypassed app.py reruns through it


P = "cub_"
ss = st.session_state
TRAIN_CMD = "python scripts/train_cub.py --jobs 2"
PROMOTE_CMD = "python scripts/train_cub.py --promote"


def _random_bird() -> None:
    n = ss.get(P + "n_filtered", 1)
    ss[P + "i"] = int(np.random.default_rng().integers(0, max(1, n)))


# --------------------------------------------------------------------------- state and models

if P + "init" not in ss:
    q0 = common.query_dict()
    s0, warns = ca.parse_state(q0, True)  # the bird source is checked again below, once the dataset is known
    if "res" not in q0 and not any(reg.cub_status(k, size=448)["exists"] for k in reg.CUB_KEYS):
        s0.res = 224  # no 448-px models here: open on the 224-px ones
    ss[P + "src"], ss[P + "cls"], ss[P + "i"] = s0.src, s0.cls, s0.i
    ss[P + "parts"], ss[P + "bbox"], ss[P + "st"], ss[P + "res"] = s0.parts, s0.bbox, s0.st_model, s0.res
    ss[P + "warns"] = warns
    ss[P + "init"] = True

sb = st.sidebar
sb.subheader("The models")
sb.radio("Input size", list(reg.CUB_SIZES), key=P + "res", horizontal=True,
         format_func=lambda r: f"{r} px", help="The paper's two settings: 224 px (crops of 112 px), or 448 px "
         "(the localisation net sees 224 px; each crop is sampled at 224 px from the 448-px photo, so it carries "
         "more detail than the whole photo at 224 px).")
res = int(ss[P + "res"])
status = {k: reg.cub_status(k, size=res) for k in reg.CUB_KEYS}
if res == 448:  # the variants, when present, beside the three models
    status.update({k: v for k in reg.CUB_VARIANT_KEYS if (v := reg.cub_status(k, size=res))["exists"]})
models: dict[str, tuple] = {}
load_errors: dict[str, str] = {}
for k, s in status.items():
    if s["exists"]:
        try:
            models[k] = common.load_checkpoint(str(reg.cub_stem(k, size=res)), s["version"])
        except CheckpointError as e:
            load_errors[k] = str(e)
any_meta = next((m for _, m in models.values()), None)
classes = tuple(int(c) for c in any_meta["classes"]) if any_meta else tuple(range(1, 51))
dataset = cached.cub_dataset_birds(classes)
if ss[P + "src"] == "dataset" and dataset is None:
    ss[P + "warns"] = ss.get(P + "warns", []) + ["The full CUB copy is not available here; showing the shipped birds."]
    ss[P + "src"] = "sample"

st.title("CUB birds: where do the attention transformers look?")
st.markdown(
    "A bird classifier with **N attention transformers in parallel** (paper, Table 3): a localisation net looks "
    "at the whole photo and places N fixed-size boxes; each box is cropped and classified by the same ImageNet "
    "backbone, and the crops' features together decide the species. Nobody tells the boxes where the head or the "
    "body is — in the paper, one box of the 2×ST-CNN ends up on the **head** (red) and one on the **body** (green). "
    "Here: *reduced scale* (50 species, MobileNetV2, a few epochs on a CPU), at the paper's two input sizes; "
    "the numbers are in `results/cub.md`.")
for w in ss.get(P + "warns", []):
    st.warning(w)

common.restore_widget_values({P + "cls": 0, P + "i": 0})
sb.subheader("The bird")
src_opts = [s for s in ca.SOURCES if s != "dataset" or dataset is not None]
if ss[P + "src"] not in src_opts:
    ss[P + "src"] = "sample"
sb.radio("Birds", src_opts, format_func=ca.SOURCE_LABELS.get, key=P + "src")
src = ss[P + "src"]
image = None
bird: dict | None = None
caption = ""
if src == "upload":
    up = sb.file_uploader("Upload a bird photo (JPEG, PNG, WebP, …)", type=["png", "jpg", "jpeg", "bmp", "webp", "tif",
                                                                          "tiff", "gif"], key=P + "upload")
    image, name, msgs = common.handle_upload(up, P + "upload_store")
    common.show_messages(msgs)
    if image is None:
        st.info("Upload a bird photo in the sidebar; until then the first shipped bird is shown.")
    else:
        caption = f"your photo: {name}"
birds = dataset if src == "dataset" else cached.cub_sample_birds()
if src != "upload" or image is None:
    present = sorted({b["class_id"]: b["class_name"] for b in birds}.items())
    cls_ids = [0] + [c for c, _ in present]
    if ss[P + "cls"] not in cls_ids:
        ss[P + "warns"] = ss.get(P + "warns", []) + [f"Class {ss[P + 'cls']} has no birds here; showing all."]
        ss[P + "cls"] = 0
    names = dict(present)
    if src != "upload":
        sb.selectbox("Species", cls_ids, key=P + "cls",
                     format_func=lambda c: "all species" if c == 0 else f"{c:03d} {names.get(c, '')}")
    filtered = ca.filter_birds(birds, int(ss[P + "cls"]) if src != "upload" else 0)
    ss[P + "n_filtered"] = len(filtered)
    if ss[P + "i"] >= len(filtered):
        ss[P + "i"] = 0
    if src != "upload":
        sb.number_input(f"Bird (0–{len(filtered) - 1})", 0, len(filtered) - 1, step=1, key=P + "i")
        sb.button("Random bird", key=P + "random", on_click=_random_bird, icon=":material/casino:")
    bird = filtered[int(ss[P + "i"]) if src != "upload" else 0]
    image = ca.load_bird_image(bird)
    caption = f"{bird['class_name']} (CUB image {bird['image_id']}, {bird['source']})"
sb.subheader("Overlays")
sb.toggle("Annotated parts (head white, body yellow)", key=P + "parts", disabled=src == "upload")
sb.toggle("Annotated bird box (dashed)", key=P + "bbox", disabled=src == "upload")
common.keep_widget_values([P + "cls", P + "i"])
state = ca.PageState(src, int(ss[P + "cls"]), int(ss[P + "i"]), bool(ss[P + "parts"]), bool(ss[P + "bbox"]),
                     ss[P + "st"], res)
common.sync_query_params(state.query())
common.copy_link(sb, state.query())

if not models:
    st.info(f"No {res}-px CUB checkpoints yet. Train the baseline, 2×ST-CNN and 4×ST-CNN (one protocol per input "
            f"size; under an hour on two CPU cores) with\n\n`{TRAIN_CMD} --sizes {res}` and then "
            f"`{PROMOTE_CMD} --sizes {res}`\n\nThe birds below are shown without boxes until then.")
for k, e in load_errors.items():
    st.warning(f"{reg.CUB_LABELS[k]}: the checkpoint could not be loaded ({e}).")
missing = [reg.CUB_LABELS[k] for k in reg.CUB_KEYS if k not in models and k not in load_errors]
if models and missing:
    st.info(f"Not trained yet at {res} px: {', '.join(missing)}. Train with `{TRAIN_CMD} --sizes {res}`.")
for k, (_, meta) in models.items():
    if not meta.get("final"):
        st.warning(f"{reg.CUB_LABELS[k]}: training in progress (step {meta.get('steps')} of "
                   f"{(meta.get('train_args') or {}).get('steps')}); boxes and predictions are provisional.")

# --------------------------------------------------------------------------- bird tab

tab_bird, tab_gallery, tab_parts, tab_replay = st.tabs(["This bird", "Gallery", "Part analysis", "Box replay"])
overlay_parts = bird["parts"] if bird is not None and state.parts else None
overlay_bbox = bird["bbox"] if bird is not None and state.bbox else None
part_names = bird["part_names"] if bird is not None else None

with tab_bird:
    st.caption(caption + (f" — true species: **{bird['class_name']}**" if bird is not None else ""))
    panels = []
    shown_keys = [k for k in status if k in reg.CUB_KEYS or k in models]
    n_rows, per_row = ca.column_grid(len(shown_keys))  # one column per model, equal widths, ≤ 3 a row
    cols = [c for _ in range(n_rows) for c in st.columns(per_row, gap="medium")]
    if not models:
        drawn = ca.draw_boxes(image, np.zeros((0, 4)), overlay_parts, overlay_bbox, part_names)
        cols[0].image(drawn, caption="the bird", width="stretch")
        panels.append(drawn)
    for col, k in zip(cols, shown_keys):
        if k not in models:
            if models:
                col.markdown(f"**{reg.CUB_LABELS[k]}**")
                col.caption("not trained yet")
            continue
        model, meta = models[k]
        pred = ca.predict_bird(model, meta, image)
        drawn = ca.draw_boxes(image, pred.boxes, overlay_parts, overlay_bbox, part_names)
        panels.append(drawn)
        with col:
            st.markdown(f"**{reg.CUB_LABELS[k]}**")
            st.image(drawn, width="stretch",
                     caption="whole image" if not len(pred.boxes) else
                     ", ".join(f"box {j + 1} {ca.COLOUR_NAMES[j]}" for j in range(len(pred.boxes))))
            if pred.crops:  # two crops a row: four in one row of a narrow column would be thumbnails
                for row in range(0, len(pred.crops), 2):
                    ccols = st.columns(2)
                    for j, (cc, crop) in enumerate(zip(ccols, pred.crops[row:row + 2]), start=row):
                        cc.image(crop, caption=ca.COLOUR_NAMES[j], width="stretch")
            truth = bird["class_id"] if bird is not None else None
            rows = [{"species": f"{cid:03d} {name}" + (" ✓" if cid == truth else ""), "probability": round(p, 3)}
                    for cid, name, p in pred.top5]
            st.dataframe(rows, hide_index=True, width="stretch", column_config={  # both columns fit a narrow one
                "species": st.column_config.TextColumn(width="medium"),
                "probability": st.column_config.NumberColumn(width="small", format="%.3f")})
    common.png_download(lambda panels=panels: viz.png_bytes(ca.side_by_side(panels, 320)),
                        f"cub-bird-{bird['image_id'] if bird else 'upload'}.png",
                        label="Download these boxes (PNG)", key=P + "png_main")

# --------------------------------------------------------------------------- gallery

st_models = [k for k in reg.cub_st_keys(res) if k in models]
with tab_gallery:
    if not st_models:
        st.info(f"The gallery needs a trained 2×ST-CNN or 4×ST-CNN: `{TRAIN_CMD}`")
    else:
        if ss[P + "st"] not in st_models:
            ss[P + "st"] = st_models[0]
        st.radio("Model", st_models, format_func=reg.CUB_LABELS.get, key=P + "st", horizontal=True)
        k = ss[P + "st"]
        gal_src = "dataset" if src == "dataset" else "sample"
        pool = ca.filter_birds(birds if src != "upload" else cached.cub_sample_birds(), 0)
        # one bird per species first, then the rest, at most 16
        seen, ids = set(), []
        for b in pool:
            if b["class_id"] not in seen:
                seen.add(b["class_id"])
                ids.append(b["image_id"])
        ids += [b["image_id"] for b in pool if b["image_id"] not in ids]
        ids = tuple(ids[:16])
        tiles = cached.cub_gallery(str(reg.cub_stem(k, size=res)), status[k]["version"], gal_src, ids)
        by_id = {b["image_id"]: b for b in pool}
        gcols = st.columns(4)
        for n, (iid, tile) in enumerate(zip(ids, tiles)):
            gcols[n % 4].image(tile, caption=by_id[iid]["class_name"], width="stretch")
        common.png_download(lambda tiles=tiles: viz.png_bytes(ca.side_by_side(tiles[:8], 200)), f"cub-gallery-{k}.png",
                            label="Download the first 8 (PNG)", key=P + "png_gallery")

# --------------------------------------------------------------------------- part analysis

with tab_parts:
    data = ca.read_part_table()
    rows = ca.part_table_rows(data, res) if data else []
    if not rows:
        st.info(f"No part analysis of the {res}-px models yet. After training, run "
                "`python scripts/make_cub_results.py` (writes results/cub.md and results/cub.json).")
    else:
        st.markdown("Fraction of test birds whose box contains at least half of the visible **head** parts (beak, "
                    "crown, forehead, eyes, nape, throat) or **body** parts (back, breast, belly, wings). The *start "
                    "boxes* columns are the boxes before training: a head detector must beat them. The *mean box* column gives "
                    "every bird the transformer's average box: if the learned boxes do no better, the transformer "
                    "found where heads usually are, not each bird's head.")
        st.dataframe(rows, hide_index=True, width="stretch")
        for k in reg.cub_st_keys(res):
            m = (data.get("models") or {}).get(reg.cub_key(k, res)) or {}
            v = m.get("head_detector")
            if v:
                st.markdown(f"**{reg.CUB_LABELS[k]}: one transformer becomes a head detector: "
                            f"{'yes' if v['holds'] else 'no'}** (head-hit difference {100 * v['diff']:.1f} points, "
                            f"95% CI [{100 * v['ci'][0]:.1f}, {100 * v['ci'][1]:.1f}]; mean union IoU with the bird "
                            f"box {m.get('mean_union_iou', float('nan')):.3f})."
                            + (f" Per bird, its best head box beats its own mean box by "
                               f"{100 * pb['diff']:+.1f} points (95% CI [{100 * pb['ci'][0]:.1f}, "
                               f"{100 * pb['ci'][1]:.1f}])." if (pb := m.get("per_bird_vs_mean_box")) else ""))
        st.caption(f"Source: results/cub.json, made by `{data.get('command')}`.")

# --------------------------------------------------------------------------- replay

with tab_replay:
    if not st_models:
        st.info(f"The replay needs a trained 2×ST-CNN or 4×ST-CNN: `{TRAIN_CMD}`")
    else:
        k = ss[P + "st"] if ss[P + "st"] in st_models else st_models[0]
        steps, hist, hbirds = ca.history_frames(models[k][1])
        sample_by_id = {b["image_id"]: b for b in cached.cub_sample_birds()}
        if dataset is not None:
            sample_by_id.update({b["image_id"]: b for b in dataset if b["image_id"] not in sample_by_id})
        if not steps:
            st.info("This checkpoint has no box history.")
        else:
            st.markdown(f"Boxes of the {reg.CUB_LABELS[k]} on {len(hbirds)} fixed test birds, recorded during training "
                        "(the model for the gallery/replay is chosen in the Gallery tab).")
            if not isinstance(ss.get(P + "step"), int) or not 0 <= ss[P + "step"] < len(steps):
                ss[P + "step"] = len(steps) - 1
            t = st.select_slider("Training step", options=list(range(len(steps))), key=P + "step",
                                 format_func=lambda j: str(steps[j]))
            rcols = st.columns(3)
            for n, hb in enumerate(hbirds):
                b = sample_by_id.get(hb["image_id"])
                if b is None:
                    rcols[n % 3].caption(f"{hb['class_name']} (image {hb['image_id']}): image not available here")
                    continue
                im = ca.load_bird_image(b)
                rcols[n % 3].image(ca.draw_boxes(im, ca.norm_to_pixels(hist[t, n], im.shape[1], im.shape[0])),
                                   caption=f"{hb['class_name']} — step {steps[t]}", width="stretch")
            # the replay of one bird as an animated GIF (the bird shown in the sidebar when it is one of these)
            gif_ids = [hb["image_id"] for hb in hbirds if hb["image_id"] in sample_by_id]
            if len(steps) >= 2 and gif_ids:
                shown = bird["image_id"] if bird is not None else None
                if ss.get(P + "gif_bird") not in gif_ids or (shown in gif_ids and ss.get(P + "gif_shown") != shown):
                    ss[P + "gif_bird"] = shown if shown in gif_ids else gif_ids[0]
                ss[P + "gif_shown"] = shown
                gif_names = {hb["image_id"]: hb["class_name"] for hb in hbirds}
                g1, g2 = st.columns([2, 1], vertical_alignment="bottom")
                g1.selectbox("Bird of the GIF", gif_ids, key=P + "gif_bird",
                             format_func=lambda i: f"{gif_names.get(i, '')} (CUB image {i})")
                gid = ss[P + "gif_bird"]

                def _make_gif(stem=str(reg.cub_stem(k, size=res)), version=status[k]["version"], gid=gid,
                              b=sample_by_id[gid]) -> bytes:
                    return cached.cub_box_replay_gif(stem, version, gid, ca.load_bird_image(b))

                # made on click (deferred; cached per model and bird): no cost for a page that is only looked at
                g2.download_button("Box replay (GIF)", data=_make_gif, file_name=f"cub-{k}-replay-image{gid}.gif",
                                   mime="image/gif", key=P + "gif", icon=":material/movie:", on_click="ignore",
                                   help=f"The {reg.CUB_LABELS[k]}'s boxes on this bird at "
                                        f"{min(len(steps), MAX_FRAMES)} recorded points of training, captioned "
                                        "with the step and epoch.")
