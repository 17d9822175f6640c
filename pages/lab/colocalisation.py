"""View logic of the co-localisation page (no Streamlit): the set of images from the shipped sample, the
pictures of the windows during a search, and the loss figure. The method: :mod:`stn_core.colocalisation`."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from PIL import Image, ImageDraw

from pages.lab import figures as viz
from stn_core import colocalisation as C

#: How many images the page draws (the paper's Figure 4 shows a handful).
TRACK = 6
WINDOW_COLOUR, TRUTH_COLOUR, CANDIDATE_COLOUR = (247, 103, 7), (55, 178, 77), (140, 110, 90)


def make_set(images: np.ndarray, labels: np.ndarray, digit: int, clutter: bool, seed: int,
             limit: int = C.N_IMAGES) -> C.CoLocSet:
    """The shipped digits of class ``digit`` (at most ``limit``) on 84×84 canvases, with or without clutter
    (cut from every shipped digit)."""
    pick = torch.as_tensor(images[labels == digit][:limit])
    if pick.shape[0] < 2:
        raise ValueError(f"the shipped sample has fewer than two digits of class {digit}")
    return C.make_set(pick, clutter, torch.Generator().manual_seed(int(seed)), pool=torch.as_tensor(images))


def picture(x: torch.Tensor, window: torch.Tensor, truth: torch.Tensor | None, scale: int = 3,
            others: torch.Tensor | None = None) -> np.ndarray:
    """One canvas ``(1, 84, 84)`` with its window box (orange) and, for reference, the true box (green, thin):
    an RGB uint8 image ``scale``× larger; ``others (k, 4)``: further candidate boxes, thin and pale."""
    a = (x[0].clamp(0, 1).numpy() * 255).astype(np.uint8)
    im = Image.fromarray(a).convert("RGB").resize((a.shape[1] * scale, a.shape[0] * scale), Image.NEAREST)
    draw = ImageDraw.Draw(im)
    for box in [] if others is None else others:
        draw.rectangle([float(v) * scale for v in box], outline=CANDIDATE_COLOUR, width=1)
    if truth is not None:
        draw.rectangle([float(v) * scale for v in truth], outline=TRUTH_COLOUR, width=1)
    draw.rectangle([float(v) * scale for v in window], outline=WINDOW_COLOUR, width=3)
    return np.asarray(im)


def pictures(data: C.CoLocSet, params: torch.Tensor, track: int = TRACK, truth: bool = True) -> list[np.ndarray]:
    """The first ``track`` canvases with their current windows (attention ``params (N, 3)``)."""
    return box_pictures(data, C.boxes_of(params[:track]), track, truth)


def box_pictures(data: C.CoLocSet, boxes: torch.Tensor, track: int = TRACK, truth: bool = True) -> list[np.ndarray]:
    """The first ``track`` canvases with their windows given as pixel boxes ``(N, 4)``."""
    return [picture(data.x[i], boxes[i], data.boxes[i] if truth else None) for i in range(min(track, len(boxes)))]


#: The page's live run of the paper's optimiser: SGD on a localisation net from scratch, the configuration
#: of results/colocalisation-sgd.md (``scripts/colocalisation_sgd.py``), drawn every 10 steps.
SGD_CONFIG = C.CoLocConfig(every=10)


def run_sgd(data: C.CoLocSet, encoder: torch.nn.Sequential, callback=None) -> C.CoLocRun:
    """The page's live run: a new localisation net trained by SGD on ``data`` (:data:`SGD_CONFIG`), every image's
    window kept in the history so that ``run.history_correct(data)`` scores every image; ``callback(step, run)``."""
    return C.train(data, encoder, dataclasses.replace(SGD_CONFIG, track=data.x.shape[0]), callback=callback)[1]


#: The page's probe of the loss's pull (:func:`stn_core.colocalisation.basin_probe`): every window started this
#: many px off its own digit, for the probe's default steps (as results/colocalisation-sgd.md), drawn every 25.
BASIN_OFFSET = 10.0
BASIN_STEPS = C.BASIN_STEPS


def run_basin(data: C.CoLocSet, encoder: torch.nn.Sequential, callback=None) -> C.BasinProbe:
    """The page's live probe: free windows started :data:`BASIN_OFFSET` px off their digits, moved by SGD on the
    loss; ``callback(step, windows (N, 3), loss)`` every 25 steps."""
    return C.basin_probe(data, encoder, BASIN_OFFSET, steps=BASIN_STEPS, callback=callback)


def basin_figure(steps: list[int], losses: list[float], correct: list[float], height: int = 300):
    """The probe's triplet loss (left axis, whole set) and correct share (right axis) at its drawn steps."""
    return _loss_and_correct(dict(x=steps, y=losses, mode="lines+markers", name="triplet loss (every image)", width=2),
                             steps, correct, "Started near their digits: the loss and the correct windows",
                             dict(title=dict(text="SGD step")), height, dtick=25)


#: The page's run of :func:`stn_core.colocalisation.tiled_sgd`: its default phases, as results/colocalisation-tiled.md.
TILED_SCHEDULE = C.TILED_SCHEDULE


def run_tiled(data: C.CoLocSet, encoder: torch.nn.Sequential, callback=None) -> C.TiledSGD:
    """The page's live run of :func:`stn_core.colocalisation.tiled_sgd` (:data:`TILED_SCHEDULE`);
    ``callback(step, windows (N, k, 3), best (N,), loss)`` at the start and every 10 steps."""
    return C.tiled_sgd(data, encoder, schedule=TILED_SCHEDULE, callback=callback)


def tiled_pictures(data: C.CoLocSet, windows: torch.Tensor, best: torch.Tensor, track: int = TRACK) -> list[np.ndarray]:
    """The first ``track`` canvases with every kept window ``windows (N, k, 3)`` thin and each image's best one
    (index ``best (N,)``) in orange."""
    boxes = C.boxes_of(windows[:track].reshape(-1, 3)).view(-1, windows.shape[1], 4)
    return [picture(data.x[i], boxes[i, int(best[i])], data.boxes[i], others=boxes[i])
            for i in range(min(track, windows.shape[0]))]


def tiled_figure(steps: list[int], losses: list[float], correct: list[float],
                 schedule: tuple[tuple[int, int], ...] = (), height: int = 300):
    """A tiled run's mean loss of the kept windows (left axis) and the share of images whose best window is correct
    (right axis) at its drawn steps; a dotted line where each phase of ``schedule`` (kept, until step) ends and
    fewer windows are kept (the mean loss drops there because the worse windows go)."""
    ends = [(until, nxt) for (_, until), (nxt, _) in zip(schedule, schedule[1:])]
    marks = dict(shapes=[dict(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1,
                              line=dict(color="#868e96", width=1, dash="dot")) for x, _ in ends],
                 annotations=[dict(x=x, y=1, xref="x", yref="paper", text=f"keep {k}", showarrow=False,
                                   xanchor="left", yanchor="top", font=dict(size=viz.FONT_SIZE - 2, color="#868e96"))
                              for x, k in ends])
    return _loss_and_correct(dict(x=steps, y=losses, mode="lines+markers",
                                  name="triplet loss (mean of the kept windows)", width=2),
                             steps, correct, f"From {C.TILES ** 2} starts per image: the loss and the best windows",
                             dict(title=dict(text="SGD step")), height, marks, dtick=25)


def start_lead(data: C.CoLocSet, encoder: torch.nn.Sequential) -> tuple[float, int]:
    """Where the loss sends the windows from SGD's shared start (:func:`stn_core.colocalisation.descent_alignment`
    at ``S_START``): (share of the windows with a gradient that it moves towards their digit, how many have one)."""
    return C.lead_share(C.descent_alignment(data, encoder, C.S_START))


def lead_sentence(lead: tuple[float, int], n: int) -> str:
    """The page's line on :func:`start_lead`: a lead only where the share is more than two standard errors of a
    coin toss (√(0.25 / windows)) from one half."""
    share, moved = lead
    if moved == 0:
        return f"At the start no window of the {n} saw any ink: the loss could not move them."
    if abs(share - 0.5) <= 2 * (0.25 / moved) ** 0.5:
        verdict = "no clear lead towards the digits (within two standard errors of a coin toss)"
    else:
        verdict = "a lead towards the digits" if share > 0.5 else "a lead away from the digits"
    return (f"From the shared start, the loss's steepest descent moved {100 * share:.0f} % of the {moved} windows it "
            f"could move (of {n}) towards their digit: {verdict}; every class: the second table of "
            "`results/colocalisation-sgd.md`.")


def sgd_figure(run: C.CoLocRun, correct: list[float], height: int = 300):
    """The triplet loss per SGD step (left axis) and the correct share at the history points (right axis)."""
    return _loss_and_correct(dict(x=list(range(1, len(run.losses) + 1)), y=run.losses, mode="lines",
                                  name="triplet loss (one batch)", width=2),
                             run.history_steps[:len(correct)], correct,
                             "The triplet loss and the correct windows over the SGD steps",
                             dict(title=dict(text="SGD step")), height, dtick=25)


def _loss_and_correct(loss: dict, steps: list[int], correct: list[float], title: str, xaxis: dict,
                      height: int, extra: dict | None = None, **yaxis2):
    """The triplet loss (left axis; ``loss``: its scatter trace's x, y, mode, name and line width) and the correct
    share in % at ``steps`` (right axis, 0–105, ``yaxis2`` extras); ``extra``: more layout (shapes, annotations)."""
    loss = dict(loss)
    width = loss.pop("width")
    traces = [viz._trace("scatter", **loss, line=dict(color=viz.MODEL_COLOUR, width=width)),
              viz._trace("scatter", x=steps, y=[100 * c for c in correct], mode="lines+markers",
                         name="correct (IoU > 0.5), %", yaxis="y2", line=dict(color="#37b24d", width=3, dash="dot"))]
    layout = dict(height=height, margin=dict(l=10, r=10, t=40, b=10), font=dict(size=viz.FONT_SIZE),
                  title=dict(text=title, x=0.0, xanchor="left"),
                  xaxis=xaxis, yaxis=dict(title=dict(text="loss"), rangemode="tozero"),
                  yaxis2=dict(title=dict(text="correct %"), overlaying="y", side="right", range=[0, 105], **yaxis2),
                  legend=dict(orientation="h", yanchor="top", y=-0.25, x=0.0), plot_bgcolor="#ffffff", **(extra or {}))
    return viz._figure(traces, layout)


def loss_figure(losses: list[float], correct: list[float], height: int = 300):
    """The triplet loss (left axis) and the correct fraction (right axis) over the sweeps."""
    sweeps = list(range(len(losses)))
    return _loss_and_correct(dict(x=sweeps, y=losses, mode="lines+markers", name="triplet loss", width=3),
                             sweeps[1:], correct, "The loss falls as the windows find the digits",
                             dict(title=dict(text="sweep"), dtick=1), height)


def bank_stem(clutter: bool) -> str:
    """The checkpoint stem of the shipped localisation nets for T (no clutter) or TC."""
    return "coloc_tc" if clutter else "coloc_t"


def bank_windows(bank: C.CoLocBank, data: C.CoLocSet, digit: int) -> tuple[torch.Tensor, float]:
    """The windows ``(N, 3)`` the bank's net for ``digit`` predicts for ``data``'s canvases, and the share
    of them that are correct (IoU > 0.5 with the digit's box, which the net never saw)."""
    with torch.no_grad():
        params = bank(data.x, digit).params
    return params, C.share_correct(C.iou(C.boxes_of(params), data.boxes))


__all__ = ["BASIN_OFFSET", "BASIN_STEPS", "SGD_CONFIG", "TILED_SCHEDULE", "TRACK", "basin_figure", "bank_stem", "bank_windows", "box_pictures", "loss_figure", "make_set", "picture",
           "pictures", "run_basin", "run_sgd", "run_tiled", "sgd_figure", "tiled_figure", "tiled_pictures"]
