"""The one training loop's parts, shared by every task family (distorted MNIST, addition, CUB, the
live page): the lr schedule, one optimiser step, evaluation, parameter groups (the localisation net's
learning-rate multiplier), DDP set-up, RNG state and resume.

A training CLI (``stn_core.train.mnist``, ``stn_core.train.cub``) reads its arguments, builds data and
model, then runs ``lr → step → eval → log → checkpoint`` with these functions.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from stn_core.checkpoints import CheckpointError, load_optimizer_tensors, load_train_state, read_safetensors

#: Settings recorded only when they differ from these defaults (older checkpoints lack them).
OPTIONAL_TRAIN_ARGS = {"optimizer": "sgd", "modulated": False}


def task_of(argv: list[str]) -> str | None:
    """The value of ``--task`` in a command line (``--task X`` or ``--task=X``), or None."""
    for i, a in enumerate(argv):
        if a == "--task" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--task="):
            return a.split("=", 1)[1]
    return None


def lr_at(step: int, steps: int, lr: float) -> float:
    """Paper schedule scaled to ``steps``: lr, then ÷10 at 1/3 and again at 2/3 of the steps."""
    return lr * 0.1 ** min(2, (3 * step) // max(1, steps))



def param_groups(model: torch.nn.Module, loc_lr_mult: float) -> list[dict]:
    """Optimiser parameter groups: everything at lr × 1, and the parameters the model declares as its
    localisation net's (``model.localisation_parameters()``: the transformers, or a DCN's offset
    predictors) at lr × ``loc_lr_mult``. Each group carries its ``lr_mult``."""
    declared = getattr(model, "localisation_parameters", None)
    loc = list(declared()) if callable(declared) else []
    loc_ids = {id(p) for p in loc}
    rest = [p for p in model.parameters() if id(p) not in loc_ids]
    return [{"params": rest, "lr_mult": 1.0}] + ([{"params": loc, "lr_mult": loc_lr_mult}] if loc else [])


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


def all_reduce(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(t)
    return t


def barrier(world: int) -> None:
    if world > 1:
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
    all_reduce(stats, world)
    model.train(was_training)
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
                 opt: torch.optim.Optimizer, device: torch.device) -> tuple[int, list, float]:
    """Load a partial run's weights, optimiser state and RNG state (in place) from the checkpoint
    ``paths``; returns (step to continue at, eval history so far, training seconds so far)."""
    weights, winfo = read_safetensors(paths["weights"])
    if meta.get("checkpoint_id") and winfo.get("checkpoint_id") != meta["checkpoint_id"]:
        raise CheckpointError(f"{paths['weights']} does not belong to {paths['meta']}")
    model.load_state_dict({k: v.to(device) for k, v in weights.items()})
    state, info = load_train_state(paths["train"], meta)
    load_optimizer_tensors(opt, state)
    restore_rng(state, device)
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


