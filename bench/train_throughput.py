"""Training throughput of the Table 1 models on this machine → results/bench-train.md.

    python bench/train_throughput.py                 # all models, 1 and 2 threads
    python bench/train_throughput.py --quick         # fewer configurations

Measures (batch 256 unless --batch):
1. data: time to generate one distorted training batch per distortion (TrainStream.batch);
2. step: samples/s of one SGD step (forward + backward + update) per model and task, with
   1 and 2 threads, channels-last on/off for the convolutional models;
3. torch.compile of the classifier (compile time and steady-state samples/s), if it works;
4. the whole CLI loop with and without the background data prefetch.
Each configuration runs in a fresh subprocess so thread settings do not leak.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = [("fcn", None), ("cnn", None), ("st-fcn", "affine"), ("st-fcn", "projective"), ("st-fcn", "tps"),
          ("st-cnn", "affine"), ("st-cnn", "projective"), ("st-cnn", "tps")]


def _worker(cfg: dict) -> dict:
    """Runs in a subprocess: one measurement described by ``cfg``."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(cfg["threads"])
    from stn_core.data import tasks as ds
    from stn_core.models import build_model, count_params

    images, labels = ds.load_split("train")
    stream = ds.TrainStream(images, labels, cfg["task"], seed=0, batch_size=cfg["batch"])
    if cfg["kind"] == "data":
        for s in range(3):
            stream.batch(s)
        times: list[float] = []
        s = 3
        while len(times) < cfg["reps"] or (sum(times) < cfg["min_time"] and len(times) < 200):
            t0 = time.perf_counter()
            stream.batch(s)
            times.append(time.perf_counter() - t0)
            s += 1
        return {"ms": 1e3 * statistics.median(times)}
    torch.manual_seed(0)
    model = build_model(cfg["model"], cfg["transform"], ds.input_size(cfg["task"]))
    if cfg["channels_last"]:
        model.use_channels_last()
    compile_s = None
    if cfg["compile"]:
        model.classifier.compile()  # in place: state_dict keys stay the same
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = stream.batch(0)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()
    if cfg["compile"]:
        compile_s = time.perf_counter() - t0
    for _ in range(cfg["warmup"]):
        step()
    times: list[float] = []
    while len(times) < cfg["reps"] or (sum(times) < cfg["min_time"] and len(times) < 200):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"sps": cfg["batch"] / med, "step_ms": 1e3 * med, "params": count_params(model), "compile_s": compile_s}


def run(cfg: dict, timeout: float = 600) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(cfg["threads"]))
    code = f"import json,sys; sys.path.insert(0,{str(ROOT / 'bench')!r}); import train_throughput as b; " \
           f"print('RESULT', json.dumps(b._worker(json.loads(sys.argv[1]))))"
    try:
        p = subprocess.run([sys.executable, "-c", code, json.dumps(cfg)], capture_output=True, text=True,
                           timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout}s"}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail)[:300]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3, help="measured steps per configuration (median)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--min-time", type=float, default=1.5,
                    help="keep measuring fast configurations until this many seconds are summed")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--tasks", default="mnist-r,mnist-rts")
    ap.add_argument("--models", default=",".join(m if t is None else f"{m}:{t}" for m, t in MODELS))
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--no-loop", action="store_true", help="skip the whole-loop prefetch comparison")
    ap.add_argument("--loop-steps", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="1 thread, fewer models, no compile")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench-train.md"))
    a = ap.parse_args(argv)
    threads = [int(t) for t in a.threads.split(",")]
    models = [(s.split(":")[0], s.split(":")[1] if ":" in s else None) for s in a.models.split(",")]
    if a.quick:
        threads, models, a.no_compile, a.no_loop = [1], [("fcn", None), ("cnn", None), ("st-fcn", "affine"),
                                              ("st-cnn", "affine")], True, True
    tasks = a.tasks.split(",")
    base = {"batch": a.batch, "reps": a.reps, "warmup": a.warmup, "min_time": a.min_time, "compile": False, "channels_last": True}
    lines = []

    def log(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    cmd = "python " + shlex.join(["bench/train_throughput.py"] + list(sys.argv[1:] if argv is None else argv))
    import torch

    log("# Training throughput (distorted MNIST, Table 1 models)")
    log("")
    log(f"Command: `{cmd}`  ")
    log(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__}, load average at start {os.getloadavg()[0]:.2f} "
        f"(the cores are shared: numbers are noisy, ±20 %).  ")
    log(f"Batch {a.batch}; median of at least {a.reps} steps (and at least {a.min_time:g} s) after "
        f"{a.warmup} warm-up step(s); each configuration "
        f"in a fresh process. samples/s = batch / time of one SGD step (forward + backward + update) "
        f"on a pre-generated batch.")
    log("")
    log("## Data generation (one distorted batch of %d, 1 thread)" % a.batch)
    log("")
    log("| task | ms / batch | samples/s |")
    log("|---|---|---|")
    data_ms = {}
    for task in ["mnist-r", "mnist-rts", "mnist-p", "mnist-e"]:
        r = run({**base, "kind": "data", "task": task, "threads": 1})
        data_ms[task] = r.get("ms")
        log(f"| {task} | {r['ms']:.1f} | {a.batch / r['ms'] * 1e3:.0f} |" if "ms" in r else f"| {task} | {r['error']} | |")
    log("")
    log("## SGD step (channels-last)")
    log("")
    head = "| task | model | transform | params | " + " | ".join(f"{t} thr samples/s" for t in threads) + \
           " | data / step (1 thr) |"
    log(head)
    log("|" + "---|" * (head.count("|") - 1))
    results = {}
    for task in tasks:
        for m, tr in models:
            row, params = [], None
            for t in threads:
                r = run({**base, "kind": "step", "task": task, "model": m, "transform": tr, "threads": t})
                results[(task, m, tr, t)] = r
                params = r.get("params", params)
                row.append(f"{r['sps']:.0f}" if "sps" in r else f"error: {r['error']}")
            r1 = results[(task, m, tr, threads[0])]
            frac = f"{100 * data_ms[task] / r1['step_ms']:.0f} %" if "step_ms" in r1 and data_ms.get(task) else "?"
            log(f"| {task} | {m} | {tr or '-'} | {params} | " + " | ".join(row) + f" | {frac} |")
    log("")
    log("## channels-last vs contiguous (1 thread, samples/s)")
    log("")
    log("| task | model | transform | contiguous | channels-last |")
    log("|---|---|---|---|---|")
    for task in tasks:
        for m, tr in models:
            if "cnn" not in m:
                continue
            r0 = run({**base, "kind": "step", "task": task, "model": m, "transform": tr, "threads": 1,
                      "channels_last": False})
            r1 = results.get((task, m, tr, 1)) or {}
            log(f"| {task} | {m} | {tr or '-'} | {r0.get('sps', 0):.0f} | {r1.get('sps', 0):.0f} |")
    if not a.no_compile:
        log("")
        log("## torch.compile of the classifier (1 thread, channels-last)")
        log("")
        log("| task | model | transform | eager samples/s | compiled samples/s | compile time (s) |")
        log("|---|---|---|---|---|---|")
        for task in tasks[:1]:
            for m, tr in [("fcn", None), ("cnn", None), ("st-cnn", "affine")]:
                r = run({**base, "kind": "step", "task": task, "model": m, "transform": tr, "threads": 1,
                         "compile": True, "warmup": 2})
                e = results.get((task, m, tr, 1)) or {}
                if "sps" in r:
                    log(f"| {task} | {m} | {tr or '-'} | {e.get('sps', 0):.0f} | {r['sps']:.0f} | {r['compile_s']:.1f} |")
                else:
                    log(f"| {task} | {m} | {tr or '-'} | {e.get('sps', 0):.0f} | error: {r['error']} | |")
    if not a.no_loop:
        log("")
        log("## Whole training loop (`python -m stn_core.train`, 1 thread): background prefetch on / off")
        log("")
        log("| task | model | transform | steps | --no-prefetch samples/s | --prefetch samples/s |")
        log("|---|---|---|---|---|---|")
        import tempfile

        for task, m, tr in (("mnist-rts", "fcn", None), ("mnist-rts", "st-fcn", "affine"), ("mnist-e", "st-fcn", "tps")):
            row = []
            for pf in ("--no-prefetch", "--prefetch"):
                with tempfile.TemporaryDirectory() as d:
                    cmd_ = [sys.executable, "-m", "stn_core.train", "--task", task, "--model", m,
                            *(["--transform", tr] if tr else []), "--steps", str(a.loop_steps), "--batch", str(a.batch),
                            "--out", f"{d}/ck", "--threads", "1", "--no-progress", "--ckpt-every", "0",
                            "--test-limit", "1000", pf]
                    p = subprocess.run(cmd_, capture_output=True, text=True, cwd=ROOT, timeout=600,
                                       env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"))
                    try:
                        row.append(f"{json.loads(Path(d, 'ck.json').read_text())['samples_per_s']:.0f}")
                    except (OSError, ValueError, KeyError):
                        row.append("error: " + " | ".join(p.stderr.strip().splitlines()[-2:])[:200])
            log(f"| {task} | {m} | {tr or '-'} | {a.loop_steps} | {row[0]} | {row[1]} |")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
