"""Train a digit-string reader with or without transformers in its conv stack (the paper's Table 2).

    python -m stn_core.train.sequence --model seq-st-multi --crop tight --steps 6000 --out checkpoints/seq64_st-multi
    python -m stn_core.train.sequence --svhn PATH --model seq-st-multi --crop tight --steps 6000 --out runs/svhn64_st-multi

``--svhn PATH``: SVHN's own images instead (format 1: ``PATH/train`` and ``PATH/test``, each PNGs + digitStruct.mat,
read by :mod:`stn_core.data.svhn`; batches drawn from the training images, the test split whole or its first
``--test-size``).

Data: strings of MNIST training digits (:mod:`stn_core.data.sequences`, a synthetic analogue of SVHN; batch
t is a pure function of (seed, t)); test: the fixed set of ``TEST_SIZE`` strings of test-split digits drawn
with ``TEST_SEED``, made on demand. Recipe: SGD momentum 0.9, weight decay 5e-4 [paper], warm-up + cosine,
the transformers at ``--loc-lr-mult`` = 0.1 × the lr [paper]; bf16 autocast on a CPU with fast bf16
(``--precision``). Resumable (``--resume``, ``--time-limit`` counts training seconds over all sessions),
and the checkpoint JSON records data, command, recipe, precision, steps, seed and test sequence error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from stn_core.checkpoints import optimizer_tensors, save_checkpoint
from stn_core.data import sequences as Q
from stn_core.data import tasks as ds
from stn_core.models.sequence import SEQUENCE_MODELS, build_sequence_model, sequence_errors, sequence_loss
from stn_core.registry import SEQUENCE_STEPS
from stn_core.train.loop import (LocGradClip, autocast_context, cli, command_line, default_warmup, eval_mode,
                                 make_optimizer, open_run, param_groups, resume_state, rng_tensors, run_schedule,
                                 say_final, start_run)

#: The paper's localisation-net learning rate as a multiple of the base rate (its SVHN appendix): the default.
PAPER_LOC_LR_MULT = 0.1

#: Settings a resumed run must share with the run it continues.
RESUME_FIXED = ("model", "crop", "steps", "batch", "lr", "momentum", "weight_decay", "loc_lr_mult", "seed",
                "schedule", "test_size")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=list(SEQUENCE_MODELS), default="seq-st-multi")
    p.add_argument("--crop", choices=list(Q.SIZES), default="tight", help="tight: 64×64; loose: 128×128")
    p.add_argument("--steps", type=int, default=None,
                   help=f"training steps (default: the shipped readers' budget per crop, {SEQUENCE_STEPS})")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--schedule", choices=["cosine", "paper"], default="cosine")
    p.add_argument("--loc-lr-mult", type=float, default=PAPER_LOC_LR_MULT)
    p.add_argument("--clip-loc-grad", type=float, default=None, metavar="NORM",
                   help="clip the transformers' gradient norm to NORM each step (default: no clip; the log shows "
                        "the largest norm every 50 steps either way)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-size", type=int, default=Q.TEST_SIZE)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--time-limit", type=float, default=None, help="stop (resumable) after this many training s")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"],
                   help="channels_last weights and inputs (auto: on under bf16/fp16, where it measured 1.3–1.9× "
                        "faster per step on this CPU)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--no-verify", action="store_true", help="skip the md5 check of the MNIST files")
    p.add_argument("--svhn", default=None, help="SVHN folder with train/ and test/ (format 1) instead of MNIST strings")
    p.add_argument("--out", required=True, help="checkpoint stem, e.g. checkpoints/seq64_st-multi")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    if a.steps is None:
        a.steps = SEQUENCE_STEPS[a.crop]
    if a.steps < 1 or a.batch < 2 or a.test_size < 1:
        p.error("--steps, --batch (≥ 2) and --test-size must be positive")
    if a.clip_loc_grad is not None and not a.clip_loc_grad > 0:
        p.error("--clip-loc-grad must be positive")
    return a


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


class FixedStrings:
    """Training batches drawn from a fixed set of strings (SVHN's images), as pure functions of (seed, step)."""

    def __init__(self, data: Q.Strings, seed: int, batch: int, device: torch.device, channels_last: bool = False):
        self.data = Q.Strings(*(t.to(device) for t in data))
        self.seed, self.batch, self.format = seed, batch, memory_format(channels_last)

    def batch_at(self, step: int) -> Q.Strings:
        g = torch.Generator().manual_seed(ds.derive_seed(self.seed, 5, step))
        idx = torch.randint(0, self.data.images.shape[0], (self.batch,), generator=g).to(self.data.images.device)
        s = Q.Strings(*(t[idx] for t in self.data))
        return s._replace(images=s.images.contiguous(memory_format=self.format))


class StringStream:
    """Training batches: strings as pure functions of (seed, step)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, crop: str, seed: int, batch: int,
                 device: torch.device, channels_last: bool = False):
        self.images, self.labels, self.crop = images.to(device), labels.to(device), crop
        self.seed, self.batch, self.format = seed, batch, memory_format(channels_last)

    def batch_at(self, step: int) -> Q.Strings:
        g = torch.Generator().manual_seed(ds.derive_seed(self.seed, 4, step))
        s = Q.make_strings(self.images, self.labels, self.batch, self.crop, g)
        return s._replace(images=s.images.contiguous(memory_format=self.format))


def evaluate_strings(model: torch.nn.Module, s: Q.Strings, chunk: int = 250,
                     channels_last: bool = False) -> tuple[float, float]:
    """(sequence error %, mean loss) of ``model`` on strings ``s``, in float32 and the default memory format
    (what :func:`stn_core.load_model` gives anyone), whatever layout training uses (``channels_last``: the
    model's, restored afterwards)."""
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    errs, loss, n = 0, 0.0, s.images.shape[0]
    with eval_mode(model), torch.no_grad():
        for i in range(0, n, chunk):
            sl = slice(i, i + chunk)
            ll, dl = model(s.images[sl].contiguous())
            errs += int(sequence_errors(ll, dl, s.digits[sl]).sum())
            loss += float(sequence_loss(ll, dl, s.digits[sl], s.length[sl])) * ll.shape[0]
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return 100.0 * errs / n, loss / n


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = parse_args(argv)
    a.task = f"{'svhn' if a.svhn else 'mnist-strings'}-{a.crop}"
    _, _, device, threads, precision, _, say, paths = start_run(a)
    train_args = {k: getattr(a, k) for k in RESUME_FIXED}
    if a.clip_loc_grad is not None:   # recorded only when set: an unclipped run's recipe reads as before
        train_args["clip_loc_grad"] = a.clip_loc_grad
    meta, precision = open_run(a, paths, train_args, say, precision, device)
    if meta is not None and meta.get("final"):
        return meta
    # the layout follows the precision the run actually uses (a resumed run's own)
    channels_last = a.channels_last == "on" or (a.channels_last == "auto" and precision in ("bf16", "fp16"))
    if a.svhn:
        from stn_core.data.svhn import load_svhn

        train = load_svhn(Path(a.svhn) / "train", a.crop)
        test = load_svhn(Path(a.svhn) / "test", a.crop, limit=a.test_size)
        stream = FixedStrings(train, a.seed, a.batch, device, channels_last)
        test = Q.Strings(*(t.to(device) for t in test))
        data_md5 = ds.test_set_md5(train.images, train.digits)
        say(f"SVHN: {train.images.shape[0]} training and {test.images.shape[0]} test images from {a.svhn}")
    else:
        images, labels = ds.load_split("train", a.data_root, not a.no_verify)
        t_images, t_labels = ds.load_split("test", a.data_root, not a.no_verify)
        test = Q.test_strings(t_images.to(device), t_labels.to(device), a.crop, a.test_size)
        stream = StringStream(images, labels, a.crop, a.seed, a.batch, device, channels_last)
        data_md5 = ds.mnist_md5(a.data_root, not a.no_verify)

    torch.manual_seed(a.seed)
    model = build_sequence_model(a.model, Q.SIZES[a.crop]).to(device, memory_format=memory_format(channels_last))
    opt = make_optimizer(param_groups(model, a.loc_lr_mult), "sgd", a.lr, a.momentum, a.weight_decay)
    warmup = default_warmup(a.steps) if a.schedule == "cosine" else 0
    start, history, train_seconds = 0, [], 0.0
    clip = LocGradClip(model, a.clip_loc_grad, ((meta or {}).get("extra") or {}).get("loc_grad_clipped_steps", 0))
    if meta is not None:
        start, history, train_seconds = resume_state(paths, meta, model, opt, device)
        model.to(memory_format=memory_format(channels_last))
        say(f"resuming {a.out} at step {start}/{a.steps} ({precision})")
    command = command_line(argv, 1).replace("-m stn_core.train ", "-m stn_core.train.sequence ", 1)
    test_md5 = ds.test_set_md5(test.images, test.digits)

    def meta_now(step: int, err: float | None, final: bool, train_seconds: float) -> dict:
        return {"task": a.task, "model": a.model, "transform": model.config["transform"],
                "input_size": Q.SIZES[a.crop], "num_classes": 10, "classes": [str(c) for c in range(10)],
                "test_error": err, "paper_error": None, "command": command, "steps": step, "seed": a.seed,
                "data_md5": data_md5, "torch_version": torch.__version__, "train_args": train_args,
                "final": final, "test_set": {"seed": None if a.svhn else Q.TEST_SEED, "size": int(test.images.shape[0]),
                                              "md5": test_md5},
                "world_size": 1, "device": str(device), "threads": threads, "history": history,
                "train_seconds": round(train_seconds, 2),
                "samples_per_s": round(step * a.batch / train_seconds, 1) if train_seconds > 0 else None,
                "extra": {"precision": precision, "channels_last": channels_last, "data": Q.__name__, "crop": a.crop,
                          "loc_grad_clipped_steps": clip.clipped,
                          "error_metric": "sequence error: a string counts only when its length and every digit are right",
                          "dataset_note": ("SVHN format 1 from " + a.svhn) if a.svhn else
                          "MNIST digit strings, a synthetic analogue of SVHN (not SVHN)"}}

    def save(step: int, err: float | None, final: bool, seconds: float) -> None:
        save_checkpoint(a.out, model, meta_now(step, err, final, seconds),
                        {**optimizer_tensors(opt), **rng_tensors(device)}, train_info={"step": step, "data_seed": a.seed})

    def step_once(step: int) -> torch.Tensor:
        b = stream.batch_at(step)
        with autocast_context(precision, device):
            ll, dl = model(b.images)
            loss = sequence_loss(ll, dl, b.digits, b.length)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip()
        opt.step()
        if clip.params and (step + 1) % 50 == 0:
            say(f"step {step + 1}: {clip.report()}")
        return loss

    model.train()
    meta = run_schedule(a, opt, start, history, train_seconds, warmup, step_once,
                        lambda: evaluate_strings(model, test, channels_last=channels_last), save, meta_now, say,
                        "test sequence error")
    if not meta["final"]:
        return meta
    err = meta["test_error"]
    say_final(say, meta, f"test sequence error {err:.2f}% on {test.images.shape[0]} strings; wrote {paths['meta']}",
              ("model", "steps", "test_error", "samples_per_s", "command"))
    return meta


if __name__ == "__main__":
    cli(main)
