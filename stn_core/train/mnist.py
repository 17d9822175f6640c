"""Train a distorted-MNIST classifier (paper Table 1).

    python -m stn_core.train --task mnist-rts --model st-cnn --transform affine \\
        --steps 150000 --batch 256 --lr 0.01 --seed 0 --out checkpoints/rts-st-cnn-aff

Paper schedule: plain SGD, batch 256, lr 0.01 divided by 10 every 50k of 150k steps, no
weight decay; here the two lr drops are placed at 1/3 and 2/3 of ``--steps``. Training data
is distorted on the fly (batch t depends only on (seed, t)); the test error is measured on
the fixed test set. ``--resume`` continues a run from its last checkpoint with identical
results. Data-parallel with ``torchrun --nproc_per_node N -m stn_core.train ...`` (gloo on
CPU, nccl on GPU): the global batch ``--batch`` is split across the processes.

Speed: ``--precision auto`` (the default) trains under bfloat16 autocast on a CPU with
AVX-512-BF16/AMX and on a bfloat16 GPU (see stn_core.train.loop); the convolutional models run
channels-last. The test error is always evaluated in float32. The resolved precision,
channels-last and compile settings are recorded in the checkpoint's ``extra``.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from tqdm import tqdm

from stn_core.checkpoints import optimizer_tensors, save_checkpoint, validation_split
from stn_core.data import tasks as ds
from stn_core.dcn import set_backend
from stn_core.models import ALL_MODEL_NAMES, ST_TRANSFORMS, build_model
from stn_core.paper import paper_error
from stn_core.train.loop import (OPTIONAL_TRAIN_ARGS, PRECISION_HELP, PRECISIONS, SCHEDULES, all_reduce, barrier, cli,
                                 command_line, default_ckpt_every, default_warmup, evaluate, keep_depthwise_fp32, lr_at,
                                 make_grad_scaler, make_optimizer, open_run, param_groups, resume_state, rng_tensors,
                                 say_final, scaler_tensors, set_lr, start_run, train_step, wrap_ddp)

#: Models whose classifier is convolutional: channels-last by default (it speeds their convolutions up;
#: for the FCN classifiers it only costs a copy).
CONV_MODELS = ("cnn", "st-cnn", "dcn")

#: Arguments that must not change when a run is resumed.
RESUME_FIXED = ("task", "model", "transform", "steps", "batch", "lr", "momentum", "loc_lr_mult", "seed",
                "target_params", "test_seed")


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
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"],
                   help="sgd (the paper's), adam or adamw (betas 0.9, 0.999; --momentum must stay 0); "
                        "the lr schedule (--schedule) is the same for all")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="weight decay: decoupled for adamw, L2 for sgd/adam (default: 0 for sgd and adam "
                        "(the paper: none), 1e-4 for adamw)")
    p.add_argument("--schedule", default="paper", choices=list(SCHEDULES),
                   help="lr schedule: paper = lr, ÷10 at 1/3 and 2/3 of --steps; cosine = linear warm-up "
                        "over --warmup steps, then cosine decay to 0 at --steps")
    p.add_argument("--warmup", type=int, default=None,
                   help="cosine only: warm-up steps (default: 5%% of --steps)")
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
    p.add_argument("--ckpt-every", type=int, default=None,
                   help="write a resumable checkpoint every K steps (0: only at --stop-at / --time-limit); "
                        "default min(1000, max(1, steps // 10)): about 10 in a short run")
    p.add_argument("--stop-at", type=int, default=None,
                   help="stop (with a resumable checkpoint) once this step is reached; resume later")
    p.add_argument("--time-limit", type=float, default=None,
                   help="stop (with a resumable checkpoint) after this many seconds; resume later")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per process (default: cores / processes)")
    p.add_argument("--precision", default="auto", choices=list(PRECISIONS), help=PRECISION_HELP)
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last convolutions (default: on for the convolutional classifiers "
                        f"{', '.join(CONV_MODELS)}, where it is faster on CPU; off for the FCNs)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the classifier (off by default: on a CPU it made steps slower, "
                        "see results/bench-train.md)")
    p.add_argument("--prefetch", action=argparse.BooleanOptionalAction, default=True,
                   help="generate the next distorted batch in a background thread during the step")
    p.add_argument("--target-params", type=int, default=400_000, help="parameter budget of every model")
    p.add_argument("--test-seed", type=int, default=ds.TEST_SEED, help="seed of the fixed test set")
    p.add_argument("--test-limit", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--val-digits", type=int, default=0,
                   help="hold out this many training digits (a fixed seeded choice, the same for every run) as a "
                        "validation set, distorted once, and evaluate on it instead of the test set, which is then "
                        "never read (test_error is the validation error; the JSON's test_set says so): choose "
                        "settings on it, then train the chosen one on all digits (0: no validation set)")
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
    if a.val_digits < 0:
        p.error("--val-digits must be >= 0")
    if a.optimizer != "sgd" and a.momentum:
        p.error("--momentum applies to --optimizer sgd only")
    if a.weight_decay is None:
        a.weight_decay = 1e-4 if a.optimizer == "adamw" else 0.0
    if a.weight_decay < 0:
        p.error("--weight-decay must be >= 0")
    if a.schedule == "paper":
        if a.warmup:
            p.error("--warmup applies to --schedule cosine only")
        a.warmup = 0
    else:
        a.warmup = default_warmup(a.steps) if a.warmup is None else a.warmup
        if not 0 <= a.warmup <= a.steps:
            p.error(f"--warmup must be in 0..--steps ({a.steps})")
    if a.ckpt_every is None:
        a.ckpt_every = default_ckpt_every(a.steps)
    if a.channels_last is None:
        a.channels_last = a.model in CONV_MODELS
    return a




def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = parse_args(argv)
    rank, world, device, threads, precision, main_proc, say, paths = start_run(a)
    train_args = {k: getattr(a, k) for k in RESUME_FIXED}
    if a.model == "dcn":  # only dcn runs record it, so older checkpoints resume as before
        train_args["modulated"] = a.modulated
    # Recorded only when they differ from OPTIONAL_TRAIN_ARGS (the paper's SGD, step schedule, no weight
    # decay), so older checkpoints, which lack them, resume as before.
    for k, default in OPTIONAL_TRAIN_ARGS.items():
        if k != "modulated" and getattr(a, k) != default:
            train_args[k] = getattr(a, k)

    # ---- data
    verify = not a.no_verify
    images, labels = ds.load_split("train", a.data_root, verify)
    if a.val_digits:  # a validation set carved from train: the test split is never read
        try:
            images, labels, x_test, y_test = ds.validation_set(images, labels, a.task, a.val_digits)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        x_test, y_test = x_test[:a.test_limit], y_test[:a.test_limit]
    else:
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
        set_backend(model, a.dcn_backend)
    if a.channels_last:
        model.use_channels_last()
    groups = param_groups(model, a.loc_lr_mult)
    opt = make_optimizer(groups, a.optimizer, a.lr, a.momentum, a.weight_decay)

    start, history, train_seconds = 0, [], 0.0
    scaler = make_grad_scaler(precision, device)
    command = command_line(argv, world)
    meta, precision = open_run(a, paths, train_args, say, precision, device)
    if meta is not None:
        if meta.get("final"):
            return meta
        scaler = make_grad_scaler(precision, device)
        start, history, train_seconds = resume_state(paths, meta, model, opt, device, scaler)
        say(f"resuming {a.out} at step {start}/{a.steps} ({precision})")

    keep_depthwise_fp32(model, precision, device)  # no-op unless CPU autocast and depthwise convs
    net = wrap_ddp(model, world, device)
    if a.compile:
        model.classifier.compile()  # in place: state_dict keys stay the same

    def meta_now(step: int, test_err: float | None, final: bool) -> dict:
        return {
            "task": a.task, "model": a.model, "transform": a.transform, "input_size": size, "num_classes": n_classes,
            "classes": ds.classes(a.task), "test_error": test_err, "paper_error": paper_error(a.model, a.transform, a.task),
            "command": command, "steps": step, "seed": a.seed, "data_md5": data_md5,
            "torch_version": torch.__version__, "train_args": train_args, "final": final,
            "test_set": ({"seed": a.test_seed, "size": int(x_test.shape[0]), "md5": test_md5} if not a.val_digits else
                         {"split": validation_split(f"{a.val_digits} training digits held out (seed {ds.VAL_SEED})"),
                          "seed": ds.VAL_SEED,
                          "size": int(x_test.shape[0]), "md5": test_md5}),
            "world_size": world, "device": str(device), "threads": threads, "history": history,
            "train_seconds": round(train_seconds, 2),
            "samples_per_s": round(step * a.batch / train_seconds, 1) if train_seconds > 0 else None,
            "extra": {"precision": precision, "channels_last": bool(a.channels_last), "compile": bool(a.compile)},
        }

    def checkpoint(step: int, test_err: float | None, final: bool) -> None:
        if main_proc:
            state = {**optimizer_tensors(opt), **rng_tensors(device), **scaler_tensors(scaler)}
            save_checkpoint(a.out, model, meta_now(step, test_err, final), state,
                            train_info={"step": step, "data_seed": a.seed})
        barrier(world)

    data_md5 = ds.mnist_md5(a.data_root, verify) if main_proc else None
    test_md5 = ds.test_set_md5(x_test, y_test)
    eval_name = "validation" if a.val_digits else "test"

    # ---- loop
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
        lr = lr_at(step, a.steps, a.lr, a.schedule, a.warmup)
        set_lr(opt, lr)
        t0 = time.perf_counter()
        if pending is not None:
            xb, yb = pending.result()
            pending = pool.submit(stream.batch, step + 1) if step + 1 < stop_at else None
        else:
            xb, yb = stream.batch(step)
        data_time += time.perf_counter() - t0  # with prefetch: time spent waiting for data
        logits, loss = train_step(net, opt, xb, yb, precision, scaler)
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
            bar.write(f"step {step}: {eval_name} error {err:.2f}%  ({eval_name} loss {tl:.4f})") if main_proc else None
        elapsed = train_seconds + time.perf_counter() - t_start
        out_of_time = a.time_limit is not None and elapsed > a.time_limit
        if world > 1 and a.time_limit is not None:  # all ranks must agree to stop
            flag = all_reduce(torch.tensor([float(out_of_time)], device=device), world)
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
    paper = "" if meta["paper_error"] is None or a.val_digits else f" (paper: {meta['paper_error']}%)"
    say_final(say, meta, f"{eval_name} error {err:.2f}% on {x_test.shape[0]} images{paper}; wrote {paths['meta']}",
              ("task", "model", "transform", "steps", "test_error", "paper_error", "samples_per_s", "command"))
    if world > 1:
        torch.distributed.destroy_process_group()
    return meta


if __name__ == "__main__":
    cli(main)
