"""Train a distorted-MNIST classifier (paper Table 1).

    python -m stn_core.train --task mnist-rts --model st-cnn --transform affine \\
        --steps 150000 --batch 256 --lr 0.01 --seed 0 --out checkpoints/rts-st-cnn-aff

Paper schedule: plain SGD, batch 256, lr 0.01 divided by 10 every 50k of 150k steps, no
weight decay; here the two lr drops are placed at 1/3 and 2/3 of ``--steps``. Training data
is distorted on the fly (batch t depends only on (seed, t)); the test error is measured on
the fixed test set. ``--resume`` continues a run from its last checkpoint with identical
results. Data-parallel with ``torchrun --nproc_per_node N -m stn_core.train ...`` (gloo on
CPU, nccl on GPU): the global batch ``--batch`` is split across the processes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import datasets as ds
from .checkpoints import (CheckpointError, checkpoint_paths, load_meta, load_optimizer_tensors,
                          load_train_state, optimizer_tensors, read_safetensors, save_checkpoint)
from .models import ALL_MODEL_NAMES, ST_TRANSFORMS, build_model

#: Published test errors (%) of Table 1, keyed by (model, transform) then task.
PAPER_TABLE1: dict[tuple[str, str | None], dict[str, float]] = {
    ("fcn", None): {"mnist-r": 2.1, "mnist-rts": 5.2, "mnist-p": 3.1, "mnist-e": 3.2},
    ("cnn", None): {"mnist-r": 1.2, "mnist-rts": 0.8, "mnist-p": 1.5, "mnist-e": 1.4},
    ("st-fcn", "affine"): {"mnist-r": 1.2, "mnist-rts": 0.8, "mnist-p": 1.5, "mnist-e": 2.7},
    ("st-fcn", "projective"): {"mnist-r": 1.3, "mnist-rts": 0.9, "mnist-p": 1.4, "mnist-e": 2.6},
    ("st-fcn", "tps"): {"mnist-r": 1.1, "mnist-rts": 0.8, "mnist-p": 1.4, "mnist-e": 2.4},
    ("st-cnn", "affine"): {"mnist-r": 0.7, "mnist-rts": 0.5, "mnist-p": 0.8, "mnist-e": 1.2},
    ("st-cnn", "projective"): {"mnist-r": 0.8, "mnist-rts": 0.6, "mnist-p": 0.8, "mnist-e": 1.3},
    ("st-cnn", "tps"): {"mnist-r": 0.7, "mnist-rts": 0.5, "mnist-p": 0.8, "mnist-e": 1.1},
}

#: Published test errors (%) of the MNIST addition experiment (paper appendix), keyed by
#: (model, transform); task "mnist-addition".
PAPER_ADDITION: dict[tuple[str, str | None], float] = {
    ("fcn", None): 47.7, ("cnn", None): 14.7, ("st-fcn", "affine"): 18.5, ("2st-fcn", "affine"): 5.8,
}

#: Arguments that must not change when a run is resumed.
RESUME_FIXED = ("task", "model", "transform", "steps", "batch", "lr", "momentum", "loc_lr_mult", "seed",
                "target_params", "test_seed")

#: Settings recorded only when they differ from these defaults (older checkpoints lack them).
OPTIONAL_TRAIN_ARGS = {"optimizer": "sgd", "modulated": False}


def paper_error(model: str, transform: str | None, task: str) -> float | None:
    """Published test error (%) (Table 1, or the MNIST addition experiment) or None."""
    if task == "mnist-addition":
        return PAPER_ADDITION.get((model, transform))
    return PAPER_TABLE1.get((model, transform), {}).get(task)


def lr_at(step: int, steps: int, lr: float) -> float:
    """Paper schedule scaled to ``steps``: lr, then ÷10 at 1/3 and again at 2/3 of the steps."""
    return lr * 0.1 ** min(2, (3 * step) // max(1, steps))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m stn_core.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", required=True, choices=list(ds.TASKS))
    p.add_argument("--model", required=True, choices=list(ALL_MODEL_NAMES))
    p.add_argument("--transform", default=None, choices=list(ST_TRANSFORMS) + ["none"],
                   help="spatial transform of the ST models (affine by default for st-*)")
    p.add_argument("--steps", type=int, default=150_000, help="total SGD steps (paper: 150k)")
    p.add_argument("--batch", type=int, default=256, help="global batch size (paper: 256)")
    p.add_argument("--lr", type=float, default=0.01, help="initial learning rate (paper: 0.01)")
    p.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (paper: plain SGD)")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"],
                   help="sgd (the paper's) or adam (betas 0.9, 0.999; --momentum must stay 0); the lr "
                        "schedule is the same for both")
    p.add_argument("--loc-lr-mult", type=float, default=1.0,
                   help="learning-rate multiplier of the localisation net, or of the dcn's offset "
                        "predictors (paper's MNIST runs: 1)")
    p.add_argument("--modulated", action=argparse.BooleanOptionalAction, default=False,
                   help="dcn only: DCNv2 modulation masks (default: DCNv1, offsets only)")
    p.add_argument("--dcn-backend", default="auto", choices=["auto", "torchvision", "sampled"],
                   help="dcn only: deformable-conv kernel (auto: torchvision on CUDA, the faster grid_sample "
                        "path on CPU; same function, see stn_core/dcn.py)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the training stream")
    p.add_argument("--out", required=True, help="checkpoint stem, e.g. checkpoints/rts-st-cnn-aff")
    p.add_argument("--resume", action="store_true", help="continue from <out> if it exists")
    p.add_argument("--overwrite", action="store_true", help="start afresh even if <out> exists")
    p.add_argument("--eval-every", type=int, default=0, help="evaluate on the test set every K steps (0: end only)")
    p.add_argument("--ckpt-every", type=int, default=1000, help="write a resumable checkpoint every K steps")
    p.add_argument("--stop-at", type=int, default=None,
                   help="stop (with a resumable checkpoint) once this step is reached; resume later")
    p.add_argument("--time-limit", type=float, default=None,
                   help="stop (with a resumable checkpoint) after this many seconds; resume later")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per process (default: cores / processes)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="channels-last convolutions (faster on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the classifier")
    p.add_argument("--prefetch", action=argparse.BooleanOptionalAction, default=True,
                   help="generate the next distorted batch in a background thread during the step")
    p.add_argument("--target-params", type=int, default=400_000, help="parameter budget of every model")
    p.add_argument("--test-seed", type=int, default=ds.TEST_SEED, help="seed of the fixed test set")
    p.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--data-root", default=None, help="folder with the MNIST idx files (default: auto)")
    p.add_argument("--no-verify", action="store_true", help="skip the md5 check of the MNIST files")
    p.add_argument("--cache-dir", default=None, help="store/read the fixed test set as .npz here")
    p.add_argument("--log-every", type=int, default=10, help="progress-bar update interval (steps)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    if a.dcn_backend != "auto" and a.model != "dcn":
        p.error(f"--dcn-backend applies to --model dcn only, not {a.model}")
    if a.modulated and a.model != "dcn":
        p.error(f"--modulated applies to --model dcn only, not {a.model}")
    if a.model in ("fcn", "cnn", "dcn"):
        if a.transform not in (None, "none"):
            p.error(f"--transform does not apply to {a.model}")
        a.transform = None
    else:
        a.transform = a.transform if a.transform not in (None, "none") else "affine"
    if a.steps < 1 or a.batch < 1:
        p.error("--steps and --batch must be positive")
    if a.optimizer == "adam" and a.momentum:
        p.error("--momentum applies to --optimizer sgd only")
    return a


# --------------------------------------------------------------------------- distributed

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
        import torch.distributed as dist

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


def _all_reduce(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(t)
    return t


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
             rank: int = 0, world: int = 1, chunk: int = 1000) -> tuple[float, float]:
    """(test error %, mean loss) on ``x (N, 1, S, S)``, ``y (N,)``; ranks share the work."""
    was_training = model.training
    model.eval()
    n = x.shape[0]
    lo, hi = rank * n // world, (rank + 1) * n // world
    stats = torch.zeros(3, dtype=torch.float64, device=device)  # errors, loss sum, count
    for i in range(lo, hi, chunk):
        xb, yb = x[i:min(i + chunk, hi)].to(device), y[i:min(i + chunk, hi)].to(device)
        logits = model(xb)
        stats[0] += (logits.argmax(1) != yb).sum()
        stats[1] += F.cross_entropy(logits, yb, reduction="sum").double()
        stats[2] += yb.numel()
    _all_reduce(stats, world)
    model.train(was_training)
    cnt = max(1.0, float(stats[2]))
    return 100.0 * float(stats[0]) / cnt, float(stats[1]) / cnt


# --------------------------------------------------------------------------- state

def _rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    out = {"rng/torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["rng/torch_cuda"] = torch.cuda.get_rng_state(device)
    return out


def _restore_rng(tensors: dict[str, torch.Tensor], device: torch.device) -> None:
    if "rng/torch_cpu" in tensors:
        torch.set_rng_state(tensors["rng/torch_cpu"].to(torch.uint8))
    if device.type == "cuda" and "rng/torch_cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng/torch_cuda"].to(torch.uint8), device)


#: Flags that only steer one invocation (interrupt / continue); left out of the recorded command.
_SESSION_FLAGS = {"--resume": 0, "--overwrite": 0, "--stop-at": 1, "--time-limit": 1}


def resume_state(paths: dict[str, Path], meta: dict[str, Any], model: torch.nn.Module,
                 opt: torch.optim.Optimizer, device: torch.device) -> tuple[int, list, float]:
    """Load a partial run's weights, optimiser state and RNG state (in place) from the checkpoint
    ``paths``; returns (step to continue at, eval history so far, training seconds so far)."""
    weights, winfo = read_safetensors(paths["weights"])
    if meta.get("checkpoint_id") and winfo.get("checkpoint_id") != meta["checkpoint_id"]:
        raise CheckpointError(f"{paths['weights']} does not belong to {paths['meta']}")
    model.load_state_dict({k: v.to(device) for k, v in weights.items()})
    state, info = load_train_state(paths["train"], meta)
    load_optimizer_tensors(opt, state)
    _restore_rng(state, device)
    return int(info["step"]), list(meta.get("history", [])), float(meta.get("train_seconds", 0.0))


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
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    return model


def train_step(net: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on the cross-entropy of batch ``x``, labels ``y (N,)``; returns the
    detached logits ``(N, K)`` and loss ``()``."""
    logits = net(x)
    loss = F.cross_entropy(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return logits.detach(), loss.detach()


def _command(argv: list[str], world: int) -> str:
    """The command that reproduces this run in one go (session-only flags removed)."""
    kept, i = [], 0
    while i < len(argv):
        flag = argv[i].split("=", 1)[0]
        if flag in _SESSION_FLAGS:
            i += 1 + (_SESSION_FLAGS[flag] if "=" not in argv[i] else 0)
            continue
        kept.append(argv[i])
        i += 1
    argv = kept
    if world > 1:
        nproc = os.environ.get("LOCAL_WORLD_SIZE", str(world))
        return f"torchrun --nproc_per_node {nproc} -m stn_core.train {shlex.join(argv)}"
    return f"python -m stn_core.train {shlex.join(argv)}"


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    from .cub_train import is_cub_task

    if is_cub_task(argv):  # CUB birds (--task cub50 / cub200 / cub): see stn_core/cub_train.py
        from .cub_train import main as cub_main

        return cub_main(argv)
    a = parse_args(argv)
    rank, world, device, threads = start_process(a.device, a.batch, a.threads)
    main_proc = rank == 0
    say = print if main_proc else (lambda *x, **k: None)
    paths = checkpoint_paths(a.out)
    train_args = {k: getattr(a, k) for k in RESUME_FIXED}
    if a.model == "dcn":  # only dcn runs record it, so older checkpoints resume as before
        train_args["modulated"] = a.modulated
    if a.optimizer != "sgd":  # only adam runs record it, so older (SGD) checkpoints resume as before
        train_args["optimizer"] = a.optimizer

    # ---- data
    verify = not a.no_verify
    images, labels = ds.load_split("train", a.data_root, verify)
    x_test, y_test = ds.fixed_test_set(a.task, a.test_seed, a.data_root, a.test_limit, a.cache_dir, verify)
    stream = ds.TrainStream(images, labels, a.task, a.seed, a.batch, rank, world, device)
    size = ds.input_size(a.task)

    # ---- model and optimizer
    torch.manual_seed(a.seed)
    n_classes = ds.num_classes(a.task)
    model = build_model(a.model, a.transform, size, n_classes, target_params=a.target_params,
                        in_channels=ds.in_channels(a.task),
                        **({"modulated": a.modulated} if a.model == "dcn" else {})).to(device)
    if a.model == "dcn":
        from .dcn import set_backend

        set_backend(model, a.dcn_backend)
    if a.channels_last:
        model.use_channels_last()
    if getattr(model, "transformers", None) is not None:  # 2st-fcn: all parallel transformers
        loc = [p for st in model.transformers for p in st.parameters()]
    elif model.transformer is not None:
        loc = list(model.transformer.parameters())
    else:  # the dcn's offset predictors play the localisation net's part
        loc = list(model.offset_parameters()) if hasattr(model, "offset_parameters") else []
    loc_ids = {id(p) for p in loc}
    rest = [p for p in model.parameters() if id(p) not in loc_ids]
    groups = [{"params": rest, "lr_mult": 1.0}] + ([{"params": loc, "lr_mult": a.loc_lr_mult}] if loc else [])
    opt = (torch.optim.Adam(groups, lr=a.lr) if a.optimizer == "adam"
           else torch.optim.SGD(groups, lr=a.lr, momentum=a.momentum))

    start, history, train_seconds = 0, [], 0.0
    command = _command(argv, world)
    exists = paths["meta"].is_file()
    if exists and not (a.resume or a.overwrite):
        raise SystemExit(f"error: {paths['meta']} exists; pass --resume to continue it or --overwrite")
    if a.resume and exists:
        meta = load_meta(paths["meta"])
        check_same_settings(a.out, meta, train_args)
        start, history, train_seconds = resume_state(paths, meta, model, opt, device)
        say(f"resuming {a.out} at step {start}/{a.steps}")
    elif a.resume:
        say(f"no checkpoint at {paths['meta']}: starting afresh")

    net = wrap_ddp(model, world, device)
    if a.compile:
        model.classifier.compile()  # in place: state_dict keys stay the same

    def meta_now(step: int, test_err: float | None, final: bool) -> dict:
        return {
            "task": a.task, "model": a.model, "transform": a.transform, "input_size": size, "num_classes": n_classes,
            "classes": ds.classes(a.task), "test_error": test_err, "paper_error": paper_error(a.model, a.transform, a.task),
            "command": command, "steps": step, "seed": a.seed, "data_md5": data_md5,
            "torch_version": torch.__version__, "train_args": train_args, "final": final,
            "test_set": {"seed": a.test_seed, "size": int(x_test.shape[0]), "md5": test_md5},
            "world_size": world, "device": str(device), "threads": threads, "history": history,
            "train_seconds": round(train_seconds, 2),
            "samples_per_s": round(step * a.batch / train_seconds, 1) if train_seconds > 0 else None,
        }

    def checkpoint(step: int, test_err: float | None, final: bool) -> None:
        if main_proc:
            state = {**optimizer_tensors(opt), **_rng_tensors(device)}
            save_checkpoint(a.out, model, meta_now(step, test_err, final), state,
                            train_info={"step": step, "data_seed": a.seed})
        _barrier(world)

    data_md5 = ds.mnist_md5(a.data_root, verify) if main_proc else None
    test_md5 = ds.test_set_md5(x_test, y_test)

    # ---- loop
    from tqdm import tqdm

    bar = tqdm(total=a.steps, initial=start, disable=not main_proc or a.no_progress, dynamic_ncols=True,
               unit="step", file=sys.stderr)
    net.train()
    t_start = time.perf_counter()
    t_win, data_time, n_win = time.perf_counter(), 0.0, 0
    loss_sum = torch.zeros((), device=device)
    err_sum = torch.zeros((), device=device)
    ema_loss = None
    last_err: float | None = history[-1]["test_error"] if history else None
    stop_at = a.steps if a.stop_at is None else min(a.steps, a.stop_at)
    step = start
    stopped = False
    # Batch t is a pure function of (seed, t), so making it one step ahead in a thread
    # changes nothing but the wall time (torch ops release the GIL). The thread count is set
    # to the same value in the worker (some thread settings are per-thread, some global).
    pool = ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(threads,)) if a.prefetch else None
    pending = pool.submit(stream.batch, step) if pool is not None and step < stop_at else None
    while step < stop_at:
        lr = lr_at(step, a.steps, a.lr)
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_mult"]
        t0 = time.perf_counter()
        if pending is not None:
            xb, yb = pending.result()
            pending = pool.submit(stream.batch, step + 1) if step + 1 < stop_at else None
        else:
            xb, yb = stream.batch(step)
        data_time += time.perf_counter() - t0  # with prefetch: time spent waiting for data
        logits, loss = train_step(net, opt, xb, yb)
        step += 1
        n_win += 1
        loss_sum += loss
        err_sum += (logits.argmax(1) != yb).float().mean()
        if n_win >= a.log_every or step == stop_at:
            dt = time.perf_counter() - t_win
            lval = float(loss_sum) / n_win
            if not torch.isfinite(torch.tensor(lval)):
                raise SystemExit(f"error: training diverged at step {step} (loss {lval}); try a smaller --lr")
            ema_loss = lval if ema_loss is None else 0.9 * ema_loss + 0.1 * lval
            bar.set_postfix(loss=f"{ema_loss:.3f}", err=f"{100 * float(err_sum) / n_win:.1f}%",
                            sps=f"{n_win * a.batch / dt:.0f}", data=f"{100 * data_time / dt:.0f}%", lr=f"{lr:g}")
            bar.update(n_win)
            t_win, data_time, n_win = time.perf_counter(), 0.0, 0
            loss_sum.zero_()
            err_sum.zero_()
        if a.eval_every and step % a.eval_every == 0 and step < a.steps:
            err, tl = evaluate(model, x_test, y_test, device, rank, world)
            last_err = err
            history.append({"step": step, "test_error": round(err, 4), "test_loss": round(tl, 5),
                            "train_loss": None if ema_loss is None else round(ema_loss, 5)})
            bar.write(f"step {step}: test error {err:.2f}%  (test loss {tl:.4f})") if main_proc else None
        elapsed = train_seconds + time.perf_counter() - t_start
        out_of_time = a.time_limit is not None and elapsed > a.time_limit
        if world > 1 and a.time_limit is not None:  # all ranks must agree to stop
            flag = _all_reduce(torch.tensor([float(out_of_time)], device=device), world)
            out_of_time = bool(flag.item() > 0)
        periodic = a.ckpt_every > 0 and step % a.ckpt_every == 0
        if step < a.steps and (periodic or step == stop_at or out_of_time):
            train_seconds += time.perf_counter() - t_start
            checkpoint(step, last_err, final=False)
            t_start = time.perf_counter()  # checkpoint writing is not training time
        if out_of_time and step < a.steps:
            stopped = True
            break
    bar.close()
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)
    train_seconds += time.perf_counter() - t_start
    if step < a.steps or stopped:
        say(f"stopped at step {step}/{a.steps}; continue with --resume")
        return meta_now(step, last_err, False)

    err, tl = evaluate(model, x_test, y_test, device, rank, world)
    history.append({"step": step, "test_error": round(err, 4), "test_loss": round(tl, 5),
                    "train_loss": None if ema_loss is None else round(ema_loss, 5)})
    checkpoint(step, round(err, 4), final=True)
    meta = meta_now(step, round(err, 4), True)
    paper = "" if meta["paper_error"] is None else f" (paper: {meta['paper_error']}%)"
    say(f"test error {err:.2f}% on {x_test.shape[0]} images{paper}; wrote {paths['meta']}")
    say(json.dumps({k: meta[k] for k in ("task", "model", "transform", "steps", "test_error", "paper_error",
                                         "samples_per_s", "command")}))
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return meta


if __name__ == "__main__":
    try:
        main()
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
