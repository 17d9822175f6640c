"""Training throughput of every model family, fp32 against the fast path → results/bench-train.md.

    python bench/train_throughput.py                          # sections step + data + heap (~10 min)
    python bench/train_throughput.py --sections compile       # torch.compile of the classifier
    python bench/train_throughput.py --sections accuracy      # test error at equal samples, fp32 vs bf16

Sections (each is rewritten in place in the results file, with its own command line, so one can be
re-run alone):

* ``step``: samples/s of one real training step — ``stn_core.train.loop.train_step``: forward, loss,
  backward, optimiser update — on real batches from the task's ``TrainStream`` (two batches generated
  before timing, used in turn; nothing of the model's is memoised), for every model family (FCN,
  CNN, ST-FCN, ST-CNN affine / projective / TPS, DCN on distorted MNIST-R; 2×ST-FCN on MNIST
  addition; the CUB baseline and 2×ST-CNN at 224 px with a tiny batch). Per model, the
  configurations are timed side by side in interleaved rounds (``bench/timing.py``,
  ``interleaved_median_ms``): fp32 contiguous, fp32 with the CLI's channels-last default, and the
  fast path (the CLI default on this CPU: ``--precision auto`` → bf16 autocast, channels-last on
  the convolutional models), each with 1 and 2 threads. Medians over the rounds, and ratios.
* ``data``: per distortion task at batch 256 (1 thread): the time to generate one batch
  (``TrainStream.batch`` of a step not generated before) against the step time in fp32 and bf16,
  and the time the step actually waits for its batch when the next batch is made in a background
  thread during the step, as ``python -m stn_core.train`` does (``--prefetch``).
* ``heap``: the CLI's whole fast path against the CLI before this engine, in fresh processes that
  alternate round by round (the heap setting of :mod:`stn_core.train.heap` is per process, so it
  cannot be A/B'd inside one): fp32 (with and without channels-last) and the fast path on glibc's
  default heap, against the fast path with the freed memory kept (what ``python -m stn_core.train``
  now does on a CPU). The step section's process keeps the heap for every configuration.
* ``conv1``: the ST-CNN's overhead over the CNN (issue #16's target: ≤ 1.15× on R with the fast path)
  and where it goes: CNN, ST-CNN Aff as built (conv 1 a :class:`stn_core.fold_conv.FoldGradConv2d`, its
  input gradient a matmul + col2im) and the same ST-CNN with conv 1 a plain ``nn.Conv2d`` (oneDNN's
  input gradient), one step of each per round, side by side; then conv 1's backward alone, both ways.
* ``depthwise``: every depthwise convolution of the CUB backbone (MobileNetV2, at the CUB batch and
  size), forward + backward under bf16 autocast, run in bf16 against run in float32 inside autocast
  (``stn_core.train.loop.Float32Conv2d``, with its casts), side by side: which ones
  ``keep_depthwise_fp32`` should keep in float32.
* ``compile`` (opt-in): ``torch.compile`` of the classifier (compile time and steady-state step)
  in fp32 and bf16.
* ``accuracy`` (opt-in): the RTS CNN trained by the CLI in fp32 and in bf16 for the same steps and
  batch (equal samples); test error of each, evaluated in fp32 and under bf16 autocast.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from timing import interleaved_median_ms, write_report  # noqa: E402

from stn_core.data import tasks as ds  # noqa: E402
from stn_core.models import build_model  # noqa: E402
from stn_core.train import loop as L  # noqa: E402
from stn_core.train.heap import keep_freed_memory  # noqa: E402
from stn_core.train.mnist import CONV_MODELS  # noqa: E402

#: (label, task, model, transform) of the step section; "cub:<model>" rows use the CUB loader.
FAMILIES = [
    ("FCN", "mnist-r", "fcn", None),
    ("CNN", "mnist-r", "cnn", None),
    ("ST-FCN Aff", "mnist-r", "st-fcn", "affine"),
    ("ST-CNN Aff", "mnist-r", "st-cnn", "affine"),
    ("ST-CNN Proj", "mnist-r", "st-cnn", "projective"),
    ("ST-CNN TPS", "mnist-r", "st-cnn", "tps"),
    ("DCN", "mnist-r", "dcn", None),
    ("DCN (42×42)", "mnist-rts", "dcn", None),  # RTS's input: conv 1 has 34×34 outputs, conv 2 11×11
    ("2×ST-FCN (addition)", "mnist-addition", "2st-fcn", "affine"),
    ("CUB baseline", "cub", "cub-baseline", None),
    ("CUB 2×ST-CNN", "cub", "cub-2st", None),
]
DATA_TASKS = [("R", "mnist-r"), ("RTS", "mnist-rts"), ("P", "mnist-p"), ("E", "mnist-e"), ("TC", "mnist-tc"),
              ("addition", "mnist-addition")]
SECTIONS = ("step", "conv1", "depthwise", "data", "heap", "compile", "accuracy")
TITLE = "# Training throughput: fp32 against the fast path (bf16 autocast + channels-last)"


# --------------------------------------------------------------------------- set-up


def fast_precision() -> str:
    """What ``--precision auto`` gives on this machine's CPU."""
    return L.resolve_precision("auto", "cpu")


def mnist_model(task: str, name: str, transform: str | None, channels_last: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    m = build_model(name, transform, ds.input_size(task), ds.num_classes(task), in_channels=ds.in_channels(task))
    if channels_last:
        m.use_channels_last()
    return m


def mnist_batches(task: str, batch: int, n: int = 2, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    images, labels = ds.load_split("train")
    stream = ds.TrainStream(images, labels, task, seed=0, batch_size=batch)
    return [stream.batch(start + k) for k in range(n)]


_CUB: dict = {}


def cub_batches(batch: int, size: int, n: int = 2) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], str]:
    """``n`` training batches of CUB birds as the CUB CLI makes them (uint8 → [0, 1], flip + crop
    augmentation), and where they came from (random pixels if no CUB copy is found)."""
    from stn_core.train import cub as C

    key = (batch, size, n)
    if key not in _CUB:
        try:
            x, y_id, _ = C.load_split_tensors(None, "1-50", "train", size, limit=batch * n)
            y = y_id - 1
            source = f"{x.shape[0]} CUB training images (classes 1-50) resized to {size} px"
        except (SystemExit, Exception) as e:  # noqa: BLE001 - no CUB copy: time on random pixels
            g = torch.Generator().manual_seed(0)
            x = torch.randint(0, 256, (batch * n, 3, size, size), dtype=torch.uint8, generator=g)
            y = torch.randint(0, 50, (batch * n,), generator=g)
            source = f"random pixels (no CUB copy: {str(e)[:80]})"
        out = []
        for k in range(n):
            xb = C.augment(x[k * batch:(k + 1) * batch].float() / 255.0, 0, k)
            out.append((xb.contiguous(memory_format=torch.channels_last), y[k * batch:(k + 1) * batch]))
        _CUB[key] = (out, source)
    return _CUB[key]


def cub_model(name: str, size: int, channels_last: bool) -> torch.nn.Module:
    from stn_core.models import build_cub_model

    torch.manual_seed(0)
    m = build_cub_model(name, list(range(1, 51)), input_size=size, backbone_weights=None)
    if channels_last:
        m.use_channels_last()
    return m


def make_step(model: torch.nn.Module, batches: list, precision: str, threads: int, lr: float = 0.01,
              depthwise_fp32: bool = True):
    """A closure running one real training step per call (the next batch in turn) with ``threads``,
    on ``model`` prepared as the training CLIs do (``keep_depthwise_fp32`` under CPU autocast)."""
    from stn_core.train.loop import param_groups

    if depthwise_fp32:
        L.keep_depthwise_fp32(model, precision, "cpu")
    opt = torch.optim.SGD(param_groups(model, 1.0), lr=lr, momentum=0.9)
    model.train()
    state = {"k": 0}

    def step() -> None:
        torch.set_num_threads(threads)
        x, y = batches[state["k"] % len(batches)]
        state["k"] += 1
        L.train_step(model, opt, x, y, precision)

    return step


# --------------------------------------------------------------------------- sections

def sps(batch: int, ms: float) -> str:
    """samples/s of a step of ``ms`` milliseconds on ``batch`` samples, to 3 significant figures or so."""
    v = batch / ms * 1e3
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def timed_rounds(fns: dict, a) -> tuple[dict, int]:
    """``a.warmup`` untimed rounds, then interleaved rounds (``interleaved_median_ms``): ``a.rounds``, or
    more (up to ``a.max_rounds``) where a round is short enough to fit ~``a.model_seconds``."""
    t0 = time.perf_counter()
    for _ in range(max(1, a.warmup)):
        for fn in fns.values():
            fn()
    round_s = (time.perf_counter() - t0) / max(1, a.warmup)
    rounds = max(a.rounds, min(a.max_rounds, int(a.model_seconds / max(round_s, 1e-6))))
    return interleaved_median_ms(fns, rounds, warmup=0), rounds


def section_step(a, log) -> None:
    fast = fast_precision()
    keep_freed_memory()  # as the training CLI does on a CPU, for every configuration of this section
    threads = [int(t) for t in a.threads.split(",")]
    only = set(a.models.split(",")) if a.models else None
    fams = [f for f in FAMILIES if only is None or f[2] in only]
    log("## Training step: samples/s, fp32 vs the fast path")
    log("")
    log(f"Fast path = the CLI default here: `--precision auto` → **{fast}** autocast, channels-last on the "
        f"convolutional models ({', '.join(CONV_MODELS)}; always on for CUB). fp32 = `--precision fp32 "
        f"--no-channels-last`; fp32 + CL = `--precision fp32` with the channels-last default (the CLI's "
        f"behaviour before `--precision`). MNIST batch {a.batch}, CUB batch {a.cub_batch} at {a.cub_size} px. "
        f"Per model: {a.warmup} warm-up round(s), then the median of at least {a.rounds} interleaved rounds "
        f"(one step of each configuration per round; more rounds, up to {a.max_rounds}, for the fast models, "
        f"filling ~{a.model_seconds:g} s). ratio = fast / fp32 samples/s; ratio vs CL = fast / (fp32+CL). "
        f"All configurations share this process, whose heap keeps freed memory as the CLI now does (the "
        f"heap section measures the CLI before it in separate processes).")
    log("")
    head = ["model", "task", "params"]
    for t in threads:
        head += [f"fp32 {t}t", f"fp32+CL {t}t", f"fast {t}t", f"ratio {t}t", f"ratio vs CL {t}t"]
    log("| " + " | ".join(head) + " |")
    log("|" + "---|" * len(head))
    step_ms: dict[tuple[str, str, int], float] = {}
    notes: list[str] = []
    used_rounds: list[int] = []
    for label, task, name, transform in fams:
        t0 = time.perf_counter()
        if task == "cub":
            batches, source = cub_batches(a.cub_batch, a.cub_size)
            bsz = a.cub_batch
            mk = lambda cl: cub_model(name, a.cub_size, cl)  # noqa: E731
            default_cl = True
        else:
            batches = mnist_batches(task, a.batch)
            bsz = a.batch
            mk = lambda cl: mnist_model(task, name, transform, cl)  # noqa: E731
            default_cl = name in CONV_MODELS
        fns, params = {}, None
        for t in threads:
            for cfg, (prec, cl) in (("fp32", ("fp32", False)), ("fp32+CL", ("fp32", default_cl)),
                                    ("fast", (fast, default_cl))):
                m = mk(cl)
                params = sum(p.numel() for p in m.parameters())
                fns[(cfg, t)] = make_step(m, batches, prec, t)
            if task == "cub" and fast != "fp32" and t == threads[0]:  # the fast path, all of it in bf16
                fns[("all-bf16", t)] = make_step(mk(True), batches, fast, t, depthwise_fp32=False)
        ms, rounds = timed_rounds(fns, a)
        used_rounds.append(rounds)
        if ("all-bf16", threads[0]) in ms:
            t = threads[0]
            notes.append(f"{label}, {t} thread: with the depthwise convolutions in {fast} too (without "
                         f"`keep_depthwise_fp32`): {sps(bsz, ms[('all-bf16', t)])} samples/s, "
                         f"{ms[('fp32', t)] / ms[('all-bf16', t)]:.2f}× fp32, "
                         f"{ms[('fp32+CL', t)] / ms[('all-bf16', t)]:.2f}× fp32+CL.")
        row = [label, "CUB" if task == "cub" else task, f"{params:,}"]
        for t in threads:
            f32, cl, fa = ms[("fp32", t)], ms[("fp32+CL", t)], ms[("fast", t)]
            step_ms[(label, "fp32", t)], step_ms[(label, "fp32+CL", t)], step_ms[(label, "fast", t)] = f32, cl, fa
            row += [sps(bsz, f32), sps(bsz, cl), f"**{sps(bsz, fa)}**",
                    f"{f32 / fa:.2f}×", f"{cl / fa:.2f}×"]
        log("| " + " | ".join(row) + " |")
        print(f"  ({label}: {time.perf_counter() - t0:.0f} s)", flush=True)
    if any(f[1] == "cub" for f in fams):
        log("")
        log(f"CUB batches: {cub_batches(a.cub_batch, a.cub_size)[1]}, flip + crop augmented; random-init "
            f"backbone (the same work as ImageNet weights). The fast path runs MobileNetV2's strided "
            f"depthwise convolutions in float32 (`stn_core.train.loop.keep_depthwise_fp32`, as the CUB CLI does).")
        for n in notes:
            log("")
            log(n)
    log("")
    log(f"Rounds per model: {', '.join(f'{f[0]} {r}' for f, r in zip(fams, used_rounds))}.")
    if max(threads) > 1:
        log("")
        log(f"The {max(threads)}-thread columns use every core of this machine: while other work runs (see the "
            f"load averages), they measure the contention (OpenMP threads waiting for a busy core) more than "
            f"the code, and the 1-thread columns are the ones to trust (load average {os.getloadavg()[0]:.2f} "
            f"at the end of this section, this benchmark included).")
    # the ST-CNN's overhead over the CNN it wraps
    if ("CNN", "fast", threads[0]) in step_ms and ("ST-CNN Aff", "fast", threads[0]) in step_ms:
        log("")
        log("ST-CNN step time / CNN step time (same 28 px classifier input):")
        log("")
        log("| | " + " | ".join(f"{t} thread(s)" for t in threads) + " |")
        log("|---|" + "---|" * len(threads))
        for cfg in ("fp32", "fp32+CL", "fast"):
            log(f"| {cfg} | " + " | ".join(
                f"{step_ms[('ST-CNN Aff', cfg, t)] / step_ms[('CNN', cfg, t)]:.2f}×" for t in threads) + " |")


def with_plain_conv1(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with its classifier's first convolution as a plain ``nn.Conv2d`` (same weights, same
    memory format): oneDNN's input gradient instead of :func:`stn_core.fold_conv.conv2d_input_grad`."""
    old = model.classifier[0]
    new = torch.nn.Conv2d(old.in_channels, old.out_channels, old.kernel_size, padding=old.padding)
    new.load_state_dict(old.state_dict())
    fmt = torch.channels_last if old.weight.is_contiguous(memory_format=torch.channels_last) \
        and not old.weight.is_contiguous() else torch.contiguous_format
    model.classifier[0] = new.to(memory_format=fmt)
    return model


def section_conv1(a, log) -> None:
    from stn_core.fold_conv import conv2d_input_grad

    fast = fast_precision()
    keep_freed_memory()
    t = int(a.threads.split(",")[0])
    task = "mnist-r"
    batches = mnist_batches(task, a.batch)
    cfgs = {"CNN": lambda: mnist_model(task, "cnn", None, True),
            "ST-CNN Aff (fold)": lambda: mnist_model(task, "st-cnn", "affine", True),
            "ST-CNN Aff (oneDNN conv 1)": lambda: with_plain_conv1(mnist_model(task, "st-cnn", "affine", True))}
    log("## The ST-CNN's step against the CNN's: conv 1's input gradient")
    log("")
    log(f"CPU: {L.cpu_name()}. R (28 px), batch {a.batch}, {t} thread, the fast path (`--precision auto` → **{fast}**, channels-last). "
        f"In the CNN conv 1's input is the data, so its backward computes the weight gradient only; in the "
        f"ST-CNN the transformer needs conv 1's input gradient too. \"fold\" = the model as built "
        f"(`stn_core.fold_conv.FoldGradConv2d`: that gradient as one matmul + col2im); \"oneDNN conv 1\" = "
        f"the same ST-CNN with conv 1 a plain `nn.Conv2d`. One step of each per round, interleaved; medians.")
    log("")
    fns = {k: make_step(mk(), batches, fast, t) for k, mk in cfgs.items()}
    rounds = max(a.rounds, 9)
    ms = interleaved_median_ms(fns, rounds, warmup=max(1, a.warmup))
    log("| model | samples/s | step ms | / CNN step |")
    log("|---|---|---|---|")
    for k in cfgs:
        log(f"| {k} | {sps(a.batch, ms[k])} | {ms[k]:.1f} | {ms[k] / ms['CNN']:.2f}× |")
    log("")
    log(f"Rounds: {rounds}. Target (issue #16): ST-CNN step ≤ 1.15× the CNN's — "
        f"{'met' if ms['ST-CNN Aff (fold)'] / ms['CNN'] <= 1.15 else 'not met'} "
        f"({ms['ST-CNN Aff (fold)'] / ms['CNN']:.2f}×).")
    # conv 1's backward alone, on the ST-CNN's real conv-1 input (the transformer's output at init)
    torch.set_num_threads(t)
    m = mnist_model(task, "st-cnn", "affine", True)
    dt = torch.bfloat16 if fast == "bf16" else torch.float32
    conv = m.classifier[0]
    with torch.no_grad():
        x = m.transformed(batches[0][0]).to(dt)
        w = conv.weight.to(dt)
        out = torch.nn.functional.conv2d(x, w, conv.bias.to(dt), padding=conv.padding)
    g = torch.randn(out.shape, dtype=dt).contiguous(memory_format=torch.channels_last)
    args = (g, x, w, [w.shape[0]], [1, 1], list(conv.padding), [1, 1], False, [0, 0], 1)
    bw = torch.ops.aten.convolution_backward
    parts = {"oneDNN: input + weight gradients": lambda: bw(*args, [True, True, True]),
             "oneDNN: weight gradient only (the CNN's conv 1)": lambda: bw(*args, [False, True, True]),
             "oneDNN: input gradient only": lambda: bw(*args, [True, False, False]),
             "fold: input gradient (matmul + col2im)": lambda: conv2d_input_grad(g, w, tuple(x.shape[-2:]),
                                                                                 tuple(conv.padding))}
    pm = interleaved_median_ms(parts, 15, warmup=2)
    ref = bw(*args, [True, False, False])[0].float()
    diff = (conv2d_input_grad(g, w, tuple(x.shape[-2:]), tuple(conv.padding)) - ref).abs().max().item()
    log("")
    log(f"Conv 1's backward alone ({tuple(x.shape)} → {tuple(out.shape)}, {str(dt).replace('torch.', '')}, "
        f"{t} thread; median of 15 interleaved rounds):")
    log("")
    log("| kernel | ms |")
    log("|---|---|")
    for k, v in pm.items():
        log(f"| {k} | {v:.1f} |")
    log("")
    fold_ms = pm["fold: input gradient (matmul + col2im)"]
    log(f"Input gradient: oneDNN / fold = {pm['oneDNN: input gradient only'] / fold_ms:.1f}×; "
        f"largest difference {diff:.3g} (oneDNN's result is rounded to {str(dt).replace('torch.', '')}, "
        f"largest magnitude {ref.abs().max().item():.3g}).")


def section_depthwise(a, log) -> None:
    fast = fast_precision()
    keep_freed_memory()
    t = int(a.threads.split(",")[0])
    torch.set_num_threads(t)
    model = cub_model("cub-baseline", a.cub_size, True)
    shapes: list[tuple[torch.nn.Conv2d, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append((m, tuple(i[0].shape))))
             for m in model.modules() if type(m) is torch.nn.Conv2d and m.groups > 1 and m.groups == m.in_channels]
    with torch.no_grad():
        model(torch.rand(a.cub_batch, 3, a.cub_size, a.cub_size).contiguous(memory_format=torch.channels_last))
    for h in hooks:
        h.remove()
    log("## Depthwise convolutions under bf16 autocast: bf16 or float32")
    log("")
    log(f"Every depthwise 3×3 convolution of the CUB backbone (MobileNetV2) at batch {a.cub_batch}, {a.cub_size} px, "
        f"channels-last, {t} thread: forward + backward (input and weight gradients) under bf16 autocast, "
        f"computed in bf16 against computed in float32 inside autocast (`Float32Conv2d`: input cast up, "
        f"output cast back, the casts included). Median of 7 interleaved rounds. The CUB CLI's "
        f"`keep_depthwise_fp32` keeps the strided ones in float32. Precision here: {fast}.")
    log("")
    log("| layer | input | stride | bf16 ms | float32 ms | bf16 / float32 | kept in float32 |")
    log("|---|---|---|---|---|---|---|")
    total = {"bf16": 0.0, "float32": 0.0, "policy": 0.0, "best": 0.0}
    for k, (conv, shape) in enumerate(shapes):
        fns = {}
        for mode in ("bf16", "float32"):
            c = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                                padding=conv.padding, groups=conv.groups, bias=False)
            c = c.to(memory_format=torch.channels_last)
            if mode == "float32":
                c.__class__ = L.Float32Conv2d
            x = torch.randn(shape).contiguous(memory_format=torch.channels_last).bfloat16().requires_grad_(True)

            def fb(c=c, x=x) -> None:
                with torch.autocast("cpu", torch.bfloat16):
                    y = c(x)
                y.float().sum().backward()

            fns[mode] = fb
        ms = interleaved_median_ms(fns, 7, warmup=1)
        kept = max(conv.stride) > 1
        total["bf16"] += ms["bf16"]
        total["float32"] += ms["float32"]
        total["policy"] += ms["float32"] if kept else ms["bf16"]
        total["best"] += min(ms.values())
        log(f"| {k + 1} | {shape[1]}×{shape[2]}×{shape[3]} | {conv.stride[0]} | {ms['bf16']:.2f} | "
            f"{ms['float32']:.2f} | {ms['bf16'] / ms['float32']:.2f}× | {'yes' if kept else 'no'} |")
    log("")
    log(f"Sum over the {len(shapes)} layers: all bf16 {total['bf16']:.1f} ms, all float32 {total['float32']:.1f} ms, "
        f"strided ones in float32 (the CLI) {total['policy']:.1f} ms, the faster of the two per layer "
        f"{total['best']:.1f} ms.")


#: (label, task, model, transform) of the heap section: the CNN family where the buffers are biggest.
HEAP_MODELS = [("CNN", "mnist-rts", "cnn", None), ("CNN", "mnist-r", "cnn", None),
               ("ST-CNN Aff", "mnist-r", "st-cnn", "affine")]
#: heap-section configurations: (label, precision ("fast" = the auto one), channels-last, keep the heap).
HEAP_CONFIGS = [("fp32, default heap", "fp32", False, False), ("fp32+CL, default heap", "fp32", True, False),
                ("fast, default heap", "fast", True, False), ("fast, heap kept (CLI now)", "fast", True, True)]


def heap_child(a) -> None:
    """One heap-section measurement in this fresh process: prints ``{"ms": median step ms}``."""
    _label, precision, cl, keep = HEAP_CONFIGS[a.child_config]
    if keep:
        keep_freed_memory()
    task, name, transform = a.child_task, a.child_model, a.child_transform or None
    precision = fast_precision() if precision == "fast" else precision
    step = make_step(mnist_model(task, name, transform, cl), mnist_batches(task, a.batch), precision, 1)
    for _ in range(2):
        step()
    times = []
    for _ in range(a.child_steps):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"ms": statistics.median(times)}))


def section_heap(a, log) -> None:
    fast = fast_precision()
    log("## The whole fast path against the CLI before it, in fresh processes (1 thread)")
    log("")
    log(f"Each cell: the median of {a.heap_rounds} fresh processes (one per round, the configurations "
        f"alternating), each timing the median of {a.child_steps} training steps after 2 warm-up steps, "
        f"batch {a.batch}, 1 thread. fast = `--precision auto` → **{fast}** autocast + channels-last; "
        f"\"heap kept\" = `stn_core.train.heap.keep_freed_memory()` (glibc keeps freed buffers for reuse "
        f"instead of unmapping them, so big activations are not page-faulted in again every step), which "
        f"`python -m stn_core.train` now applies on a CPU. \"today's fp32\" of the engine issue is the "
        f"first column; the CLI before `--precision` ran the second.")
    log("")
    head = ["model", "task"] + [c[0] for c in HEAP_CONFIGS] + ["CLI now / fp32", "CLI now / fp32+CL",
                                                                "heap kept / default (fast)"]
    log("| " + " | ".join(head) + " |")
    log("|" + "---|" * len(head))
    for label, task, name, transform in HEAP_MODELS:
        ms: dict[int, list[float]] = {i: [] for i in range(len(HEAP_CONFIGS))}
        for _ in range(a.heap_rounds):
            for i in range(len(HEAP_CONFIGS)):
                cmd = [sys.executable, str(Path(__file__).resolve()), "--child-config", str(i), "--child-task", task,
                       "--child-model", name, "--child-transform", transform or "", "--batch", str(a.batch),
                       "--child-steps", str(a.child_steps)]
                env = dict(os.environ, OMP_NUM_THREADS="1")
                p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, check=True)
                ms[i].append(json.loads(p.stdout.strip().splitlines()[-1])["ms"])
        med = [statistics.median(ms[i]) for i in range(len(HEAP_CONFIGS))]
        row = [label, task] + [f"{a.batch / m * 1e3:,.0f} ({m:.0f} ms)" for m in med]
        row += [f"**{med[0] / med[3]:.2f}×**", f"{med[1] / med[3]:.2f}×", f"{med[2] / med[3]:.2f}×"]
        log("| " + " | ".join(row) + " |")
        print(f"  ({label} {task} done)", flush=True)
    log("")
    log("Cells: samples/s (median step ms).")


def section_data(a, log) -> None:
    fast = fast_precision()
    t_step = int(a.data_threads)
    log("## Data generation against the step (batch %d, %d thread)" % (a.batch, t_step))
    log("")
    log(f"data = median time to generate one distorted batch (`TrainStream.batch`, a step not generated "
        f"before; {a.data_reps} batches); step = median training step (interleaved rounds as above); wait = mean time the step waited for its batch in a loop of {a.loop_steps} steps "
        f"with the next batch made in a background thread during the step (the CLI's `--prefetch`, "
        f"{fast} step). The background thread needs a free core: on this 2-core machine it gets one.")
    log("")
    log(f"| task | model | data ms | fp32 step ms | {fast} step ms | data / fp32 step | data / {fast} step | "
        f"wait ms ({fast}, prefetch) |")
    log("|---|---|---|---|---|---|---|---|")
    torch.set_num_threads(t_step)
    images, labels = ds.load_split("train")
    for short, task in DATA_TASKS:
        stream = ds.TrainStream(images, labels, task, seed=0, batch_size=a.batch)
        stream.batch(0)  # permutation + (RTS) ink boxes, once
        times = []
        for k in range(1, 1 + a.data_reps):
            t0 = time.perf_counter()
            stream.batch(k)
            times.append(time.perf_counter() - t0)
        data_ms = 1e3 * statistics.median(times)
        models = [("2st-fcn", "affine"), ("cnn", None)] if ds.is_pair_task(task) else \
            [("st-fcn", "affine"), ("st-cnn", "affine")]
        batches = [stream.batch(k) for k in (100, 101)]
        for name, transform in models:
            cl = name in CONV_MODELS
            fns = {p: make_step(mnist_model(task, name, transform, cl), batches, p, t_step) for p in ("fp32", fast)}
            ms, _ = timed_rounds(fns, a)
            # the CLI's prefetch loop: batch s+1 is made in a thread while step s runs
            model = mnist_model(task, name, transform, cl)
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            waits = []
            with ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(t_step,)) as pool:
                pending = pool.submit(stream.batch, 200)
                for s in range(200, 200 + a.loop_steps):
                    t0 = time.perf_counter()
                    x, y = pending.result()
                    waits.append(time.perf_counter() - t0)
                    pending = pool.submit(stream.batch, s + 1)
                    L.train_step(model, opt, x, y, fast)
                pending.result()
            wait = 1e3 * statistics.mean(waits[1:])
            label = f"{name}" + (f" {transform[:3]}" if transform and name != "2st-fcn" else "")
            log(f"| {short} | {label} | {data_ms:.1f} | {ms['fp32']:.1f} | {ms[fast]:.1f} | "
                f"{data_ms / ms['fp32']:.0%} | {data_ms / ms[fast]:.0%} | {wait:.2f} |")


def section_compile(a, log) -> None:
    fast = fast_precision()
    log("## torch.compile of the classifier (CNN, MNIST-R, batch %d, 1 thread)" % a.batch)
    log("")
    log("compile s = wall time of the first step (tracing + code generation, an empty inductor cache "
        "at the start: the second precision reuses some of the first's work); then the median of "
        f"{a.rounds} interleaved rounds after {a.warmup + 1} warm-up round(s).")
    log("")
    log("| precision | eager samples/s | compiled samples/s | compiled / eager | compile s |")
    log("|---|---|---|---|---|")
    batches = mnist_batches("mnist-r", a.batch)
    cache = tempfile.mkdtemp(prefix="inductor-")  # a cold compile, as on a fresh machine
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
    for prec in ("fp32", fast):
        eager = make_step(mnist_model("mnist-r", "cnn", None, True), batches, prec, 1)
        m = mnist_model("mnist-r", "cnn", None, True)
        m.classifier.compile()
        comp = make_step(m, batches, prec, 1)
        t0 = time.perf_counter()
        try:
            comp()
        except Exception as e:  # noqa: BLE001 - report, do not abort the other sections
            log(f"| {prec} | | error: {str(e).splitlines()[0][:120]} | | |")
            continue
        compile_s = time.perf_counter() - t0
        ms = interleaved_median_ms({"eager": eager, "compiled": comp}, a.rounds, warmup=a.warmup + 1)
        log(f"| {prec} | {a.batch / ms['eager'] * 1e3:,.0f} | {a.batch / ms['compiled'] * 1e3:,.0f} | "
            f"{ms['eager'] / ms['compiled']:.2f}× | {compile_s:.1f} |")
    import shutil

    shutil.rmtree(cache, ignore_errors=True)


def _accuracy_run(a, prec: str, stem: Path, budget_s: float) -> tuple[dict | None, str]:
    """Start or continue (``--resume``, bit-exact) the CLI run ``stem`` for up to ~``budget_s`` more
    seconds of training; returns (its checkpoint metadata or None, a note)."""
    from stn_core.checkpoints import load_meta

    meta_path = stem.with_suffix(".json")
    done = load_meta(meta_path) if meta_path.is_file() else None
    if done is not None and done.get("final"):
        return done, "reused (final)"
    if budget_s <= 0:
        return done, "not run (no time left in this invocation)"
    prior = float(done.get("train_seconds", 0.0)) if done else 0.0
    cmd = [sys.executable, "-m", "stn_core.train", "--task", "mnist-rts", "--model", "cnn", "--steps",
           str(a.acc_steps), "--batch", str(a.acc_batch), "--lr", "0.01", "--momentum", "0.9", "--seed", "0",
           "--threads", str(a.acc_threads), "--precision", prec, "--no-progress", "--out", str(stem), "--resume",
           "--time-limit", f"{prior + budget_s:.0f}", "--cache-dir", str(ROOT / "data" / "cache"),
           *([] if a.acc_test_limit is None else ["--test-limit", str(a.acc_test_limit)])]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(a.acc_threads)))
    if p.returncode:
        return None, "error: " + " / ".join(p.stderr.strip().splitlines()[-2:])[:200]
    meta = load_meta(meta_path)
    return meta, ("finished" if meta.get("final") else "stopped") + f" at step {meta['steps']} in this invocation"


def section_accuracy(a, log) -> None:
    """Train the RTS CNN with the CLI in each precision of ``--acc-precisions`` (checkpoints under
    runs/bench-train/; an unfinished run is continued by the next invocation, bit-exactly, so each
    invocation stays within ``--acc-budget`` seconds of training), then evaluate the final weights."""
    fast = fast_precision()
    precs = [p for p in a.acc_precisions.split(",") if p]
    cli = (f"python -m stn_core.train --task mnist-rts --model cnn --steps {a.acc_steps} --batch {a.acc_batch} "
           f"--lr 0.01 --momentum 0.9 --seed 0 --threads {a.acc_threads} --precision P")
    log(f"## Test error at equal samples: RTS CNN, fp32 vs {fast}")
    log("")
    log(f"`{cli}` (full MNIST, the fixed 10k RTS test set"
        f"{'' if a.acc_test_limit is None else f' cut to {a.acc_test_limit}'}; run in pieces with `--resume "
        f"--time-limit`, which continue bit-exactly), then the final weights evaluated in fp32 (what the CLI "
        f"records as test_error) and under {fast} autocast. Train samples/s is the CLI's own (training time "
        f"only, 1 process, {a.acc_threads} thread(s)); the runs may have met different loads, so compare "
        f"speeds in the step section, which times the configurations side by side.")
    log("")
    log(f"| precision | steps | train samples/s | test error % (fp32 eval) | test error % ({fast} eval) | "
        f"digits that differ | eval s fp32 / {fast} |")
    log("|---|---|---|---|---|---|---|")
    from stn_core.checkpoints import load_model

    folder = ROOT / "runs" / "bench-train"
    folder.mkdir(parents=True, exist_ok=True)
    x = y = None
    t_end = time.perf_counter() + a.acc_budget
    notes = []
    for prec in precs:
        stem = folder / f"acc-rts-cnn-{prec}-{a.acc_steps}x{a.acc_batch}-t{a.acc_threads}"
        if a.acc_fresh:
            for f in folder.glob(stem.name + ".*"):
                f.unlink()
        meta, note = _accuracy_run(a, prec, stem, t_end - time.perf_counter())
        notes.append(f"{prec}: {note}")
        if meta is None or not meta.get("final"):
            log(f"| {prec} | {meta['steps'] if meta else 0} of {a.acc_steps} | | unfinished: run the command "
                f"again to continue | | | |")
            continue
        if x is None:
            torch.set_num_threads(a.acc_threads)
            x, y = ds.fixed_test_set("mnist-rts", limit=a.acc_test_limit, cache_dir=str(ROOT / "data" / "cache"))
        model, meta = load_model(stem)
        model.eval()
        preds, secs = {}, {}
        for ev in ("fp32", fast):
            t0 = time.perf_counter()
            with torch.no_grad(), L.autocast_context(ev, "cpu"):
                preds[ev] = torch.cat([model(x[i:i + 1000]).float().argmax(1) for i in range(0, len(y), 1000)])
            secs[ev] = time.perf_counter() - t0
        err = {ev: 100.0 * float((pr != y).double().mean()) for ev, pr in preds.items()}
        assert abs(err["fp32"] - meta["test_error"]) < 1e-3, (err, meta["test_error"])  # as the CLI recorded
        log(f"| {prec} | {meta['steps']} | {meta['samples_per_s']:,.0f} | {err['fp32']:.2f} | {err[fast]:.2f} | "
            f"{int((preds['fp32'] != preds[fast]).sum())} of {len(y)} | {secs['fp32']:.1f} / {secs[fast]:.1f} |")
    log("")
    log(f"This invocation: {'; '.join(notes)}.")


# --------------------------------------------------------------------------- report

def merge_sections(path: Path, blocks: dict[str, list[str]], header: list[str]) -> list[str]:
    """The results file with each named section replaced (between ``<!-- section:NAME -->`` markers)
    or appended; sections not re-run keep their earlier text."""
    old = path.read_text() if path.is_file() else ""
    kept: dict[str, str] = {m.group(1): m.group(0) for m in
                            re.finditer(r"<!-- section:(\w+) -->.*?<!-- /section:\1 -->", old, re.S)}
    for name, lines in blocks.items():
        kept[name] = "\n".join([f"<!-- section:{name} -->", *lines, f"<!-- /section:{name} -->"])
    out = list(header)
    for name in SECTIONS:
        if name in kept:
            out += ["", kept[name]]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", default="step,conv1,data,heap", help=f"comma-separated, of {', '.join(SECTIONS)}")
    ap.add_argument("--batch", type=int, default=256, help="MNIST batch")
    ap.add_argument("--cub-batch", type=int, default=4)
    ap.add_argument("--cub-size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=3, help="timed interleaved rounds (median)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    ap.add_argument("--max-rounds", type=int, default=15, help="step section: most rounds for a fast model")
    ap.add_argument("--model-seconds", type=float, default=3.0,
                    help="step section: time the extra rounds of a fast model may fill")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--models", default=None, help="step section: only these model names (e.g. cnn,st-cnn)")
    ap.add_argument("--data-threads", type=int, default=1)
    ap.add_argument("--data-reps", type=int, default=8)
    ap.add_argument("--loop-steps", type=int, default=6)
    ap.add_argument("--acc-steps", type=int, default=300)
    ap.add_argument("--acc-batch", type=int, default=128)
    ap.add_argument("--acc-threads", type=int, default=1)
    ap.add_argument("--acc-test-limit", type=int, default=None)
    ap.add_argument("--acc-precisions", default="fp32,bf16")
    ap.add_argument("--acc-budget", type=float, default=100,
                    help="accuracy section: seconds of training per invocation (unfinished runs continue next time)")
    ap.add_argument("--acc-fresh", action="store_true", help="accuracy section: start the runs afresh")
    ap.add_argument("--heap-rounds", type=int, default=3, help="heap section: fresh processes per configuration")
    ap.add_argument("--child-steps", type=int, default=5, help="heap section: timed steps per process")
    ap.add_argument("--child-config", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-task", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-model", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-transform", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "results" / "bench-train.md"))
    a = ap.parse_args(argv)
    if a.child_config is not None:
        heap_child(a)
        return
    a.argv = list(sys.argv[1:] if argv is None else argv)
    sections = [s for s in a.sections.split(",") if s]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
    cmd = "python " + shlex.join(["bench/train_throughput.py"] + list(sys.argv[1:] if argv is None else argv))
    blocks: dict[str, list[str]] = {}
    for name in sections:
        lines: list[str] = []

        def log(s: str = "", lines=lines) -> None:
            print(s, flush=True)
            lines.append(s)

        t0 = time.perf_counter()
        load = os.getloadavg()[0]
        globals()[f"section_{name}"](a, log)
        log("")
        log(f"Command: `{cmd}` — {time.strftime('%Y-%m-%d')}, {time.perf_counter() - t0:.0f} s, load average "
            f"{load:.2f} at the start of the section (cores shared with other work: ±15 %).")
        blocks[name] = lines
    header = [TITLE, "",
              f"Machine: {L.cpu_name()} ({platform.machine()}), {os.cpu_count()} CPU cores "
              f"(bf16 native: {L.cpu_has_fast_bf16()}), torch {torch.__version__}. Each section below was "
              f"written by the command under it; `python bench/train_throughput.py --sections NAME` "
              f"rewrites one section and keeps the others."]
    write_report(a.out, merge_sections(Path(a.out), blocks, header))


if __name__ == "__main__":
    main()
