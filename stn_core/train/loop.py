"""The one training loop's parts, shared by every task family (distorted MNIST, addition, CUB, the
live page): the lr schedule, one optimiser step, evaluation, parameter groups (the localisation net's
learning-rate multiplier), DDP set-up, RNG state and resume.

A training CLI (``stn_core.train.mnist``, ``stn_core.train.cub``) reads its arguments, builds data and
model, then runs ``lr → step → eval → log → checkpoint`` with these functions.

Precision (``--precision``, :func:`resolve_precision`): ``fp32``; ``bf16`` = bfloat16 autocast of the
forward pass and the loss (weights, gradients and the optimiser stay float32; the spatial transformers
run their grid generation and sampling in float32 under autocast, see stn_core/stn.py); ``fp16`` =
float16 autocast with a dynamic loss scale (GradScaler); ``auto`` = bf16 on a CPU with native bfloat16
arithmetic (AVX-512-BF16 or AMX) and on a CUDA GPU that supports it, fp16 on an older GPU, else fp32.
Under CPU autocast, strided depthwise convolutions (the CUB backbone's) compute in float32
(:func:`keep_depthwise_fp32`). Evaluation (:func:`evaluate`) runs in fp32 unless asked otherwise.
Measurements: results/bench-train.md (``bench/train_throughput.py``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from stn_core.checkpoints import (CheckpointError, checkpoint_paths, load_meta, load_optimizer_tensors,
                                  load_train_state, load_weights, recover)
from stn_core.train import run_lock
from stn_core.modes import eval_mode  # noqa: F401  (re-exported: the training modules use it from here)
from stn_core.train.heap import keep_freed_memory

#: Settings recorded only when they differ from these defaults (older checkpoints lack them).
OPTIONAL_TRAIN_ARGS = {"optimizer": "sgd", "modulated": False, "schedule": "paper", "warmup": 0,
                       "weight_decay": 0.0, "val_digits": 0}


def task_of(argv: list[str]) -> str | None:
    """The value of ``--task`` in a command line (``--task X`` or ``--task=X``), or None."""
    for i, a in enumerate(argv):
        if a == "--task" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--task="):
            return a.split("=", 1)[1]
    return None


#: ``--precision`` choices (``auto`` resolves to one of the others: :func:`resolve_precision`).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PRECISION_HELP = ("numeric precision of the training step's forward pass and loss: fp32; bf16 / fp16 = "
                  "torch.autocast (weights, gradients, optimiser in float32; fp16 with a GradScaler); auto = "
                  "bf16 on a CPU with AVX-512-BF16/AMX or a CUDA GPU with bfloat16, fp16 on an older GPU, "
                  "else fp32. A resumed run keeps its recorded precision (auto adopts it; any other "
                  "value must match)")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _cpuinfo_field(name: str) -> str | None:
    """The value of the first ``name`` line of /proc/cpuinfo (None where there is none: not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name):
            return line.split(":", 1)[1].strip()
    return None


def _cpuinfo_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where it is unreadable: not Linux)."""
    return set((_cpuinfo_field("flags") or "").split())


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (e.g. "AMD EPYC"), or the machine type where there is none.
    Benchmarks name it: kernels, and so which of two code paths is faster, differ between CPUs."""
    import platform

    return _cpuinfo_field("model name") or platform.machine()


def cpu_has_fast_bf16() -> bool:
    """True if this CPU computes bfloat16 natively (AVX-512-BF16 or AMX tiles) and torch has oneDNN
    (mkldnn), the library whose bfloat16 convolutions and matmuls use them. Asks torch's own
    detection (``torch.cpu._is_avx512_bf16_supported`` / ``_is_amx_tile_supported``) where this
    torch has it, else /proc/cpuinfo's ``avx512_bf16`` / ``amx_bf16`` flags."""
    if not torch.backends.mkldnn.is_available():
        return False
    probes = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    probes = [f for f in probes if callable(f)]
    if probes:
        for f in probes:
            try:
                if f():
                    return True
            except Exception:  # noqa: BLE001 - a private probe: treat failure as "no"
                pass
        return False
    return bool(_cpuinfo_flags() & {"avx512_bf16", "amx_bf16"})


def resolve_precision(name: str, device: torch.device | str) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` for ``--precision name`` on ``device``. ``auto``: on CUDA
    bf16 if ``torch.cuda.is_bf16_supported()`` else fp16; on a CPU bf16 if :func:`cpu_has_fast_bf16`,
    else fp32. An explicit name is returned as given (SystemExit for bf16 on a GPU without it)."""
    dev = torch.device(device)
    if name not in PRECISIONS:
        raise SystemExit(f"error: unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    if name == "auto":
        if dev.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if dev.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    if name == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SystemExit("error: --precision bf16: this GPU does not support bfloat16; use fp16 or auto")
    return name


def autocast_context(precision: str, device: torch.device | str):
    """``torch.autocast`` for a resolved ``precision`` on ``device`` (a no-op context for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=_DTYPES[precision])


class Float32Conv2d(torch.nn.Conv2d):
    """A ``Conv2d`` that computes in float32 under autocast (input upcast, autocast off inside) and
    returns its input's dtype, so the layers after it stay in the autocast dtype; same parameters and
    state_dict as the ``Conv2d`` it replaces (see :func:`keep_depthwise_fp32`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float()).to(x.dtype)


def keep_depthwise_fp32(model: torch.nn.Module, precision: str, device: torch.device | str) -> int:
    """Under CPU autocast (bf16/fp16), make the model's **strided** depthwise convolutions (``groups ==
    in_channels > 1``, stride > 1: four of MobileNetV2's in the CUB backbone) compute in float32:
    oneDNN's bfloat16 backward pass of a stride-2 depthwise convolution is 2.7–8× slower than float32's
    on an AMD EPYC (torch 2.14), while at stride 1 bfloat16 is faster than float32 with its casts
    (``python bench/train_throughput.py --sections depthwise`` measures every MobileNetV2 shape on the
    CPU at hand; an Intel CPU with AMX, measured whole-model only, kept all of them in float32). In
    place (the modules' class becomes :class:`Float32Conv2d`; weights and state_dict keys unchanged);
    returns how many. No-op in fp32, on CUDA, and for models without such convolutions (the MNIST ones)."""
    if precision == "fp32" or torch.device(device).type != "cpu":
        return 0
    n = 0
    for m in model.modules():
        if type(m) is torch.nn.Conv2d and m.groups > 1 and m.groups == m.in_channels and max(m.stride) > 1:
            m.__class__ = Float32Conv2d
            n += 1
    return n


def make_grad_scaler(precision: str, device: torch.device | str) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 (its loss scale keeps small float16 gradients from flushing to 0), else None."""
    return torch.amp.GradScaler(torch.device(device).type) if precision == "fp16" else None


def scaler_tensors(scaler: torch.amp.GradScaler | None) -> dict[str, torch.Tensor]:
    """The loss scale and growth counter of ``scaler`` as checkpoint tensors (empty without one)."""
    if scaler is None:
        return {}
    sd = scaler.state_dict()
    if not sd:  # not used yet: nothing to record
        return {}
    return {"amp/scale": torch.tensor(float(sd["scale"]), dtype=torch.float64),
            "amp/growth_tracker": torch.tensor(int(sd["_growth_tracker"]), dtype=torch.int64)}


def restore_scaler(tensors: dict[str, torch.Tensor], scaler: torch.amp.GradScaler | None) -> None:
    """Inverse of :func:`scaler_tensors` (no-op without a scaler or without recorded state)."""
    sd = scaler.state_dict() if scaler is not None else {}
    if not sd or "amp/scale" not in tensors:
        return
    sd["scale"] = float(tensors["amp/scale"])
    sd["_growth_tracker"] = int(tensors["amp/growth_tracker"])
    scaler.load_state_dict(sd)


def resume_precision(out: str, meta: dict[str, Any], requested: str, device: torch.device | str) -> str:
    """The precision a resumed run continues in: the one it recorded (``meta["extra"]["precision"]``;
    runs from before the flag were fp32). ``--precision auto`` adopts it; an explicit other value
    is refused (SystemExit), since a change of precision would change every later step."""
    recorded = (meta.get("extra") or {}).get("precision", "fp32")
    if requested == "auto" or requested == recorded:
        return resolve_precision(recorded, device)  # SystemExit if this device cannot run it
    raise SystemExit(f"error: cannot resume {out} with --precision {requested}: it was trained in {recorded} "
                     f"(pass --precision {recorded} or auto, or start afresh with --overwrite)")


def default_ckpt_every(steps: int, cap: int = 1000) -> int:
    """Default checkpoint interval: every ``cap`` steps, but at least ~10 checkpoints in a short run:
    ``min(cap, max(1, steps // 10))`` (a run of 400 steps writes one every 40)."""
    return min(cap, max(1, steps // 10))


#: ``--schedule`` choices of :func:`lr_at`.
SCHEDULES = ("paper", "cosine")


def default_warmup(steps: int) -> int:
    """Default warm-up of the cosine schedule: 5 % of ``steps`` (rounded; 0 for a run under 20 steps)."""
    return int(round(0.05 * steps))


def lr_at(step: int, steps: int, lr: float, schedule: str = "paper", warmup: int = 0) -> float:
    """Learning rate of step ``step`` (0-based) of ``steps``.

    ``paper``: the paper's schedule scaled to ``steps``: lr, then ÷10 at 1/3 and again at 2/3 of the
    steps (``warmup`` must be 0). ``cosine``: linear warm-up ``lr · (step + 1) / warmup`` over the
    first ``warmup`` steps (so step 0 already moves and step ``warmup − 1`` reaches lr), then cosine
    decay ``lr · ½ (1 + cos(π t))``, ``t = (step − warmup) / (steps − warmup)``, from lr at the end of
    the warm-up towards 0 at ``steps``."""
    if schedule == "paper":
        if warmup:
            raise ValueError("the paper schedule has no warm-up")
        return lr * 0.1 ** min(2, (3 * step) // max(1, steps))
    if schedule != "cosine":
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if warmup < 0 or warmup > steps:
        raise ValueError(f"warm-up {warmup} outside 0..{steps}")
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * 0.5 * (1.0 + math.cos(math.pi * t))


def make_optimizer(groups: list[dict], name: str, lr: float, momentum: float = 0.0,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``sgd`` (with ``momentum``), ``adam`` or ``adamw`` (betas 0.9, 0.999; decoupled ``weight_decay``)
    over parameter ``groups`` (:func:`param_groups`); ``weight_decay`` is L2 for sgd and adam."""
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def localisation_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters ``model`` declares as its localisation net's (``model.localisation_parameters()``), or []."""
    declared = getattr(model, "localisation_parameters", None)
    return list(declared()) if callable(declared) else []


def param_groups(model: torch.nn.Module, loc_lr_mult: float) -> list[dict]:
    """Optimiser parameter groups: everything at lr × 1, and the parameters the model declares as its
    localisation net's (``model.localisation_parameters()``: the transformers, or a DCN's offset
    predictors) at lr × ``loc_lr_mult``. Each group carries its ``lr_mult``."""
    loc = localisation_parameters(model)
    loc_ids = {id(p) for p in loc}
    rest = [p for p in model.parameters() if id(p) not in loc_ids]
    return [{"params": rest, "lr_mult": 1.0}] + ([{"params": loc, "lr_mult": loc_lr_mult}] if loc else [])


class LocGradClip:
    """Clips the gradient norm of a model's localisation parameters (``model.localisation_parameters()``) to
    ``max_norm`` after each backward (None: measures only), and keeps the largest norm seen since the last
    :meth:`report` and how many steps it clipped; every other weight's gradient is left untouched. A transformer
    sent outside its input reads only padding, its gradient vanishes and it never comes back. On the loose digit
    strings these norms showed how that happened: the ST-CNN Single's grew over ~300 steps (13 → 68) before its
    window left the image for good, and a clip at 20 did not stop it (a bound on each step, not on a drift)."""

    def __init__(self, model: torch.nn.Module, max_norm: float | None, clipped: int = 0) -> None:
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"the localisation gradient clip must be positive, got {max_norm}")
        self.params = localisation_parameters(model)
        self.max_norm, self.clipped, self.peak = max_norm, int(clipped), 0.0

    def __call__(self) -> None:
        """After ``loss.backward()``, before ``opt.step()``."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return
        if self.max_norm is None:
            norm = float(torch.nn.utils.get_total_norm(grads))
        else:
            norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.max_norm))
            self.clipped += int(norm > self.max_norm)
        self.peak = max(self.peak, norm) if math.isfinite(norm) else math.inf

    def report(self) -> str:
        """'localisation grad norm ≤ P (clipped at M: K steps so far)', and starts a new peak."""
        text = f"localisation grad norm ≤ {self.peak:.3g}"
        if self.max_norm is not None:
            text += f" (clipped at {self.max_norm:g}: {self.clipped} steps so far)"
        self.peak = 0.0
        return text


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr to ``lr × group["lr_mult"]`` (1 when a group has none)."""
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)


def setup_distributed(device: str) -> tuple[int, int, int, torch.device]:
    """(rank, world, local_rank, device); initialises torch.distributed under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but CUDA is not available")
    dev = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return rank, world, local, dev


def start_process(device: str, batch: int, threads: int | None) -> tuple[int, int, torch.device, int]:
    """(rank, world, device, threads) of this training process: sets up torch.distributed, checks that
    the global batch splits evenly over the processes, and sets torch's CPU threads (default: the
    cores shared evenly by the processes on this machine)."""
    rank, world, _local, dev = setup_distributed(device)
    if batch % world:
        raise SystemExit(f"error: --batch {batch} must be divisible by the {world} processes")
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    threads = threads or max(1, (os.cpu_count() or 1) // local_world)
    torch.set_num_threads(threads)
    return rank, world, dev, threads


class Run(NamedTuple):
    """What every training CLI starts with (:func:`start_run`)."""

    rank: int
    world: int
    device: torch.device
    threads: int
    precision: str
    main_proc: bool
    say: Callable[..., None]
    paths: dict[str, Path]


def start_run(a) -> Run:
    """Set up this training process from the parsed ``--device --batch --threads --precision --out``:
    torch.distributed and threads (:func:`start_process`), the resolved precision, printing on rank 0
    only, the run's lock (:mod:`stn_core.train.run_lock`: exits with ``IN_USE_EXIT`` when another process
    trains the same ``--out``), and the checkpoint's paths with any interrupted commit finished or cleaned up first. On a CPU
    the process keeps freed memory for reuse (:func:`stn_core.train.heap.keep_freed_memory`)."""
    rank, world, device, threads = start_process(a.device, a.batch, a.threads)
    if device.type == "cpu":
        keep_freed_memory()
    main_proc = rank == 0
    paths = checkpoint_paths(a.out)
    if main_proc and not run_lock.hold(paths["meta"]):  # before recover(): it removes and renames files
        print(f"error: another process is training {a.out} (lock {run_lock.lock_path(paths['meta'])}); "
              "wait for it to end or stop it", file=sys.stderr, flush=True)
        raise SystemExit(run_lock.IN_USE_EXIT)
    recover(paths["meta"])
    return Run(rank, world, device, threads, resolve_precision(a.precision, device), main_proc,
               print if main_proc else (lambda *x, **k: None), paths)


def all_reduce(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(t)
    return t


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
             rank: int = 0, world: int = 1, chunk: int = 1000, precision: str = "fp32") -> tuple[float, float]:
    """(test error %, mean loss) on ``x (N, 1, S, S)``, ``y (N,)``; ranks share the work. ``precision``
    (resolved) runs the forward pass under that autocast; the training CLIs evaluate in fp32, so a
    recorded test error is what ``load_model`` + this function give anywhere."""
    n = x.shape[0]
    lo, hi = rank * n // world, (rank + 1) * n // world
    stats = torch.zeros(3, dtype=torch.float64, device=device)  # errors, loss sum, count
    with eval_mode(model):
        for i in range(lo, hi, chunk):
            xb, yb = x[i:min(i + chunk, hi)].to(device), y[i:min(i + chunk, hi)].to(device)
            with autocast_context(precision, device):
                logits = model(xb)
            logits = logits.float()
            stats[0] += (logits.argmax(1) != yb).sum()
            stats[1] += F.cross_entropy(logits, yb, reduction="sum").double()
            stats[2] += yb.numel()
    all_reduce(stats, world)
    cnt = max(1.0, float(stats[2]))
    return 100.0 * float(stats[0]) / cnt, float(stats[1]) / cnt


# --------------------------------------------------------------------------- state

def rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    out = {"rng/torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["rng/torch_cuda"] = torch.cuda.get_rng_state(device)
    return out


def restore_rng(tensors: dict[str, torch.Tensor], device: torch.device) -> None:
    if "rng/torch_cpu" in tensors:
        torch.set_rng_state(tensors["rng/torch_cpu"].to(torch.uint8))
    if device.type == "cuda" and "rng/torch_cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng/torch_cuda"].to(torch.uint8), device)


#: Flags that only steer one invocation (interrupt / continue); left out of the recorded command.
SESSION_FLAGS = {"--resume": 0, "--overwrite": 0, "--stop-at": 1, "--time-limit": 1}


def resume_state(paths: dict[str, Path], meta: dict[str, Any], model: torch.nn.Module,
                 opt: torch.optim.Optimizer, device: torch.device,
                 scaler: torch.amp.GradScaler | None = None) -> tuple[int, list, float]:
    """Load a partial run's weights, optimiser state, RNG state and (fp16) loss scale (in place) from
    the checkpoint ``paths``; returns (step to continue at, eval history so far, training seconds so far)."""
    weights = load_weights(paths["weights"], meta)  # the same id, hash and NaN checks as any load
    model.load_state_dict({k: v.to(device) for k, v in weights.items()})
    state, info = load_train_state(paths["train"], meta)
    load_optimizer_tensors(opt, state)
    restore_rng(state, device)
    restore_scaler(state, scaler)
    return int(info["step"]), list(meta.get("history", [])), float(meta.get("train_seconds", 0.0))


def refuse_to_overwrite(a, paths: dict[str, Path]) -> None:
    """SystemExit when ``paths`` (the run's checkpoint) exists and neither ``--resume`` nor ``--overwrite`` was
    given: a finished model is never replaced by accident."""
    if paths["meta"].is_file() and not (a.resume or a.overwrite):
        raise SystemExit(f"error: {paths['meta']} exists; pass --resume to continue it or --overwrite")


def run_to_resume(a, paths: dict[str, Path], train_args: dict[str, Any], say: Callable[..., None]) -> dict | None:
    """The metadata of the run ``--resume`` continues, its settings checked against ``train_args``
    (:func:`check_same_settings`); None to start afresh. A finished run's metadata has ``"final"`` true:
    the caller returns it (resuming a finished run changes nothing and adds no history entry)."""
    if not a.resume:
        return None
    if not paths["meta"].is_file():
        say(f"no checkpoint at {paths['meta']}: starting afresh")
        return None
    meta = load_meta(paths["meta"])
    check_same_settings(a.out, meta, train_args)
    if meta.get("final"):
        say(f"{a.out} is already finished (final checkpoint); nothing to do")
    return meta


def open_run(a, paths: dict[str, Path], train_args: dict[str, Any], say: Callable[..., None],
             precision: str | None = None, device: torch.device | str = "cpu") -> tuple[dict | None, str | None]:
    """Open the run ``a.out``: refuse to replace a checkpoint by accident (:func:`refuse_to_overwrite`), find the
    run ``--resume`` continues (:func:`run_to_resume`) and the precision it trains in: a resumed run keeps its
    own (:func:`resume_precision`), a new one ``precision`` (None: a trainer without ``--precision``).
    Returns ``(meta or None, precision)``; a meta with ``"final"`` true means there is nothing to do."""
    refuse_to_overwrite(a, paths)
    meta = run_to_resume(a, paths, train_args, say)
    if meta is not None and not meta.get("final") and precision is not None:
        precision = resume_precision(a.out, meta, a.precision, device)
    return meta, precision


def check_same_settings(out: str, meta: dict[str, Any], train_args: dict[str, Any]) -> None:
    """SystemExit naming every setting that differs from the run being resumed (meta["train_args"])."""
    old = {**OPTIONAL_TRAIN_ARGS, **meta.get("train_args", {})}
    new = {**OPTIONAL_TRAIN_ARGS, **train_args}
    diff = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
    if diff:
        raise SystemExit(f"error: cannot resume {out} with different settings: " +
                         ", ".join(f"{k} was {o!r}, now {n!r}" for k, (o, n) in diff.items()))


def wrap_ddp(model: torch.nn.Module, world: int, device: torch.device) -> torch.nn.Module:
    """The module to train: ``model`` itself, or under torchrun (world > 1) a DistributedDataParallel of it."""
    if world > 1:
        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    return model


def train_step(net: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               precision: str = "fp32", scaler: torch.amp.GradScaler | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on the cross-entropy of batch ``x``, labels ``y (N,)``; returns the
    detached logits ``(N, K)`` (in the autocast dtype under bf16/fp16) and loss ``()`` (float32).

    ``precision`` (resolved: fp32 | bf16 | fp16): the forward pass and the loss run under
    :func:`autocast_context`, the backward pass and the update outside it. ``scaler`` (fp16: from
    :func:`make_grad_scaler`) scales the loss, unscales the gradients and skips steps with inf/NaN."""
    with autocast_context(precision, x.device):
        logits = net(x)
        loss = F.cross_entropy(logits, y)  # autocast computes it in float32
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()
    return logits.detach(), loss.detach()


def run_schedule(a, opt: torch.optim.Optimizer, start: int, history: list[dict], train_seconds: float, warmup: int,
                 step_once: Callable[[int], torch.Tensor], evaluate_now: Callable[[], tuple[float, float]],
                 save: Callable[[int, float | None, bool, float], None],
                 meta_now: Callable[[int, float | None, bool, float], dict], say: Callable[..., None],
                 what: str = "test error") -> dict:
    """The single-process training loop of the volume and digit-string trainers, from step ``start`` to
    ``a.steps``: lr → eval → step → log. Reads ``a.steps a.lr a.schedule a.eval_every a.ckpt_every
    a.time_limit``. ``step_once(step)`` makes one update and returns its loss; ``evaluate_now()`` gives
    (error %, loss) on the test set; ``save(step, error, final, train_seconds)`` writes a checkpoint and
    ``meta_now`` (same arguments) builds its metadata. ``history`` gains an entry per evaluation. Stops
    resumably after ``a.time_limit`` training seconds (all sessions together); returns the last metadata."""
    t0 = time.perf_counter()
    last_err, step, loss_avg = (history[-1]["test_error"] if history else None), start, None
    while step < a.steps:
        set_lr(opt, lr_at(step, a.steps, a.lr, a.schedule, warmup))
        # every eval_every steps, once (a run stopped right after such a step evaluates it when resumed)
        if step > 0 and step % a.eval_every == 0 and (not history or history[-1]["step"] != step):
            last_err, tl = evaluate_now()
            history.append({"step": step, "test_error": round(last_err, 4), "test_loss": round(tl, 5)})
            say(f"step {step}: {what} {last_err:.2f}%")
        loss = float(step_once(step).detach())
        step += 1
        if not math.isfinite(loss):
            raise SystemExit(f"error: training diverged at step {step}; try a smaller --lr")
        loss_avg = loss if loss_avg is None else 0.95 * loss_avg + 0.05 * loss
        if step % 50 == 0:
            say(f"step {step}: loss {loss_avg:.3f}")
        elapsed = train_seconds + time.perf_counter() - t0
        out_of_time = a.time_limit is not None and elapsed > a.time_limit
        if step < a.steps and (step % a.ckpt_every == 0 or out_of_time):
            train_seconds = elapsed
            save(step, last_err, False, train_seconds)
            t0 = time.perf_counter()
            if out_of_time:
                say(f"stopped at step {step}/{a.steps}; continue with --resume")
                return meta_now(step, last_err, False, train_seconds)
    train_seconds += time.perf_counter() - t0
    err, tl = evaluate_now()
    history.append({"step": step, "test_error": round(err, 4), "test_loss": round(tl, 5)})
    save(step, round(err, 4), True, train_seconds)
    return meta_now(step, round(err, 4), True, train_seconds)


def say_final(say: Callable[..., None], meta: dict[str, Any], text: str, keys: tuple[str, ...]) -> None:
    """A finished run's last two lines: ``text`` and the JSON of ``meta``'s ``keys`` (the training queue
    prints a run's last line)."""
    say(text)
    say(json.dumps({k: meta[k] for k in keys}))


def cli(main: Callable[[], object]) -> None:
    """Run a trainer's ``main`` as a command: a :class:`CheckpointError` (bad file, refused overwrite) ends
    it with its message and exit status 1, not a traceback."""
    try:
        main()
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None


def command_line(argv: list[str], world: int) -> str:
    """The command that reproduces this run in one go (session-only flags removed)."""
    kept, i = [], 0
    while i < len(argv):
        flag = argv[i].split("=", 1)[0]
        if flag in SESSION_FLAGS:
            i += 1 + (SESSION_FLAGS[flag] if "=" not in argv[i] else 0)
            continue
        kept.append(argv[i])
        i += 1
    argv = kept
    if world > 1:
        nproc = os.environ.get("LOCAL_WORLD_SIZE", str(world))
        return f"torchrun --nproc_per_node {nproc} -m stn_core.train {shlex.join(argv)}"
    return f"python -m stn_core.train {shlex.join(argv)}"


