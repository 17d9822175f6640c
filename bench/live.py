"""Benchmark the Live training page on the CPU: time per step, and how far the test error falls
in the first two minutes of a live run.

Usage: python bench/live.py [--seconds 120] [--no-compare] [--out results/bench-live.md]

1. *Step time*: median wall time of one training step (distorted batch of 64 + forward +
   backward + Adam) of the page's models, one torch thread: the ST-CNN (default
   ``pages.lab.live.LiveConfig``) and the plain CNN of the same size (the optional comparison).
2. *Two minutes*: a real :class:`pages.lab.live.LiveRun` with the page's default settings,
   started like the page's Start button (data loading included) and stopped after
   ``--seconds``; the test error on the held-out digits is read from the run's own curve at
   30 s intervals and measured once more on the final weights. Then the same with
   ``compare=True`` (ST-CNN and CNN in two threads), unless ``--no-compare``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stn_core.data import tasks as ds  # noqa: E402

from stn_core.models import build_model, count_params  # noqa: E402
from timing import median_ms, write_report  # noqa: E402
from stn_core.train import live_state
from stn_core.train import live as live_train


def step_times(cfg: live_state.LiveConfig, repeats: int) -> dict[str, tuple[int, float]]:
    """{model: (weights, median ms per training step)} on the page's data."""
    data = live_state.load_data(cfg.source, cfg.eval_size, cfg.data_root)
    stream = ds.TrainStream(data.train_images, data.train_labels, live_state.TASK, cfg.seed, cfg.batch)
    out = {}
    for name, transform in (("ST-CNN", cfg.transform), ("CNN", None)):
        model = build_model("st-cnn" if transform else "cnn", transform, 42, 10, target_params=cfg.target_params)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        it = iter(range(10 ** 9))

        def step() -> None:
            xb, yb = stream.batch(next(it))
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        out[name] = (count_params(model), median_ms(step, repeats))
    out["data only"] = (0, median_ms(lambda: stream.batch(0), repeats))
    return out


def timed_run(cfg: live_state.LiveConfig, seconds: float) -> dict:
    """Start a LiveRun like the page does, poll it, stop after ``seconds``."""
    run = live_train.LiveRun(cfg)
    t0 = time.monotonic()
    run.start()
    marks = [30, 60, 90, 120] if seconds >= 120 else [seconds / 4 * k for k in range(1, 5)]
    rows, first_step_s = [], None
    while True:
        t = time.monotonic() - t0
        run.touch()
        snap = run.snapshot()
        if first_step_s is None and snap.lanes and snap.lanes[0].step > 0:
            first_step_s = t
        while marks and t >= marks[0]:
            rows.append((marks.pop(0), [(la.name, la.step, la.last_error, int(la.eval_steps[-1]) if len(la.eval_steps)
                                        else None) for la in snap.lanes]))
        if t >= seconds or snap.state in ("error", "finished"):
            break
        time.sleep(0.2)
    run.pause()
    time.sleep(0.5)
    final = [(la.name, *run.evaluate_now(i)) for i, la in enumerate(run.snapshot().lanes)]
    snap = run.snapshot()
    run.reset()
    return {"rows": rows, "final": final, "state": snap.state, "message": snap.message,
            "data": snap.data_description, "eval_size": snap.eval_size, "first_step_s": first_step_s,
            "speed": [(la.name, la.steps_per_s) for la in snap.lanes]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--no-compare", action="store_true")
    p.add_argument("--out", default="results/bench-live.md")
    a = p.parse_args()
    torch.set_num_threads(1)
    cfg = live_state.LiveConfig()
    cmd = "python bench/live.py" + (f" --seconds {a.seconds:g}" if a.seconds != 120 else "") + \
          (" --no-compare" if a.no_compare else "")
    times = step_times(cfg, a.repeats)
    runs = [("ST-CNN alone", timed_run(cfg, a.seconds))]
    if not a.no_compare:
        runs.append(("ST-CNN + plain CNN (two threads)", timed_run(replace(cfg, compare=True), a.seconds)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Live training page: step time and the first two minutes (CPU)", "",
        f"Command: `{cmd}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, 1 torch thread per model, torch "
        f"{torch.__version__}; load average {load:.1f} at the end (a shared machine: other trainings inflate "
        "the times).", "",
        f"Settings (`pages.lab.live.LiveConfig` defaults): ST-CNN {cfg.transform} with about "
        f"{cfg.target_params:,} weights, batch {cfg.batch}, Adam lr {cfg.lr:g}, test error every "
        f"{cfg.eval_every} steps on {runs[0][1]['eval_size']:,} held-out digits. Data: {runs[0][1]['data']}", "",
        "## Time per training step (median of {} steps)".format(a.repeats), "",
        "| model | weights | ms / step |", "|---|---:|---:|",
    ]
    for name, (n, ms) in times.items():
        lines.append(f"| {name} | {n:,} | {ms:.1f} |" if n else f"| {name} (distorted batch) | – | {ms:.1f} |")
    lines += ["", f"## Test error during a live run of {a.seconds:g} s (from pressing Start)", ""]
    for title, r in runs:
        names = [n for n, *_ in r["final"]]
        lines += [f"### {title}", "",
                  f"First training step after {r['first_step_s']:.1f} s (loading the digits, building the models). "
                  + ", ".join(f"{n}: {v:.1f} steps/s" for n, v in r["speed"] if v) + ".", "",
                  "| time | " + " | ".join(f"{n} step | {n} test error % (at step)" for n in names) + " |",
                  "|---|" + "---:|---:|" * len(names)]
        for t, lanes in r["rows"]:
            cells = []
            for _, step, err, at in lanes:
                cells += [f"{step:,}", "–" if err is None else f"{err:.1f} ({at:,})"]
            lines.append(f"| {t:g} s | " + " | ".join(cells) + " |")
        lines += ["", "Measured on the final weights after stopping: " +
                  "; ".join(f"**{n}: {err:.1f} %** at step {step:,}" for n, step, err in r["final"]) + ".", ""]
    write_report(a.out, lines)


if __name__ == "__main__":
    main()
