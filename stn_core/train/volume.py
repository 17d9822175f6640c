"""Train a volume classifier, with or without a 3-D spatial transformer (the paper's appendix A.3).

    python -m stn_core.train.volume --model vol-st-cnn --steps 3000 --out checkpoints/volume_st-cnn
    python -m stn_core.train.volume --model vol-cnn --steps 3000 --out checkpoints/volume_cnn

Data: MNIST training digits in random 3-D poses, a fresh pose every time (:mod:`stn_core.data.volumes`;
batch t is a pure function of (seed, t)); test: the fixed set of ``TEST_SIZE`` test-split digits in
poses drawn with ``TEST_SEED``, made on demand. Recipe: SGD momentum 0.9, warm-up + cosine, the
localisation net at ``--loc-lr-mult`` × the lr; fp32 (3-D convolutions gain nothing from bf16 here).
Resumable (``--resume``, ``--time-limit`` counts training seconds over all sessions), like the Table 1
trainer, and the checkpoint JSON records data, command, recipe, steps, seed and test error.
"""

from __future__ import annotations

import argparse
import sys

import torch

from stn_core.checkpoints import optimizer_tensors, save_checkpoint
from stn_core.data import tasks as ds
from stn_core.data import volumes as V
from stn_core.models.volume import VOLUME_MODELS, build_volume_model
from stn_core.train.loop import (cli, command_line, default_warmup, evaluate, make_optimizer, open_run, param_groups,
                                 resume_state, rng_tensors, run_schedule, say_final, start_run, train_step)

#: Settings a resumed run must share with the run it continues.
RESUME_FIXED = ("model", "steps", "batch", "lr", "momentum", "loc_lr_mult", "seed", "schedule", "test_size")
#: Recorded only when not the default (so runs made before the flag resume as they were).
OPTIONAL_FIXED = {"start_scale": 1.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=list(VOLUME_MODELS), default="vol-st-cnn")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--schedule", choices=["cosine", "paper"], default="cosine")
    p.add_argument("--loc-lr-mult", type=float, default=0.1)
    p.add_argument("--start-scale", type=float, default=1.0,
                   help="the transformer's starting zoom: a centred cube this fraction of the volume (1: identity)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-size", type=int, default=V.TEST_SIZE)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--time-limit", type=float, default=None, help="stop (resumable) after this many training s")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=["fp32"])
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", required=True, help="checkpoint stem, e.g. checkpoints/volume_st-cnn")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    if a.steps < 1 or a.batch < 2 or a.test_size < 1:
        p.error("--steps, --batch (≥ 2) and --test-size must be positive")
    return a


class VolumeStream:
    """Training batches: digits and poses as pure functions of (seed, step)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, seed: int, batch: int, device: torch.device):
        self.images, self.labels, self.seed, self.batch, self.device = images, labels, seed, batch, device

    def batch_at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(ds.derive_seed(self.seed, 3, step))
        idx = torch.randint(0, self.images.shape[0], (self.batch,), generator=g)
        pose = V.sample_pose(self.batch, g)
        x = V.make_volumes(self.images[idx].to(self.device), pose)
        return x, self.labels[idx].to(self.device)


def test_set(images: torch.Tensor, labels: torch.Tensor, n: int, device: torch.device,
             chunk: int = 250) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed test volumes ``(n, 1, 60, 60, 60)`` (float16 to halve their memory: they are in
    [0, 1], and the rounding moves a voxel by at most 5e-4) and labels."""
    pose = V.test_poses(n)
    images = images[:n]
    parts = [V.make_volumes(images[i:i + chunk].to(device), {k: v[i:i + chunk] for k, v in pose.items()}).half()
             for i in range(0, n, chunk)]
    return torch.cat(parts), labels[:n].clone().to(device)


def evaluate_volumes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple[float, float]:
    """(test error %, mean loss) on the float16-stored test volumes, evaluated in float32."""
    errs, losses, n = 0.0, 0.0, 0
    for i in range(0, x.shape[0], 100):
        xb, yb = x[i:i + 100].float(), y[i:i + 100]
        e, l = evaluate(model, xb, yb, device)
        errs += e * xb.shape[0]
        losses += l * xb.shape[0]
        n += xb.shape[0]
    return errs / n, losses / n


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = parse_args(argv)
    a.task = "mnist-volume"
    _, _, device, threads, precision, _, say, paths = start_run(a)
    train_args = {k: getattr(a, k) for k in RESUME_FIXED}
    train_args.update({k: getattr(a, k) for k, d in OPTIONAL_FIXED.items() if getattr(a, k) != d})
    images, labels = ds.load_split("train", a.data_root)
    t_images, t_labels = ds.load_split("test", a.data_root)
    x_test, y_test = test_set(t_images, t_labels, a.test_size, device)
    stream = VolumeStream(images, labels, a.seed, a.batch, device)

    torch.manual_seed(a.seed)
    model = build_volume_model(a.model, start_scale=a.start_scale).to(device)
    opt = make_optimizer(param_groups(model, a.loc_lr_mult), "sgd", a.lr, a.momentum)
    warmup = default_warmup(a.steps) if a.schedule == "cosine" else 0
    start, history, train_seconds = 0, [], 0.0
    meta, _ = open_run(a, paths, train_args, say)
    if meta is not None:
        if meta.get("final"):
            return meta
        start, history, train_seconds = resume_state(paths, meta, model, opt, device)
        say(f"resuming {a.out} at step {start}/{a.steps}")
    command = command_line(argv, 1).replace("-m stn_core.train ", "-m stn_core.train.volume ", 1)

    def meta_now(step: int, err: float | None, final: bool, train_seconds: float) -> dict:
        return {"task": a.task, "model": a.model, "transform": VOLUME_MODELS[a.model], "input_size": V.VOLUME,
                "num_classes": 10, "classes": [str(c) for c in range(10)], "test_error": err, "paper_error": None,
                "command": command, "steps": step, "seed": a.seed, "data_md5": ds.mnist_md5(a.data_root),
                "torch_version": torch.__version__, "train_args": train_args, "final": final,
                "test_set": {"seed": V.TEST_SEED, "size": int(x_test.shape[0]), "md5": ds.test_set_md5(x_test, y_test)},
                "world_size": 1, "device": str(device), "threads": threads, "history": history,
                "train_seconds": round(train_seconds, 2),
                "samples_per_s": round(step * a.batch / train_seconds, 1) if train_seconds > 0 else None,
                "extra": {"precision": precision, "data": V.__name__, "volume": V.VOLUME, "slab": V.SLAB,
                          "tilt_deg": V.TILT_DEG, "spin_deg": V.SPIN_DEG}}

    def save(step: int, err: float | None, final: bool, seconds: float) -> None:
        save_checkpoint(a.out, model, meta_now(step, err, final, seconds),
                        {**optimizer_tensors(opt), **rng_tensors(device)}, train_info={"step": step, "data_seed": a.seed})

    def step_once(step: int) -> torch.Tensor:
        xb, yb = stream.batch_at(step)
        return train_step(model, opt, xb, yb)[1]

    model.train()
    meta = run_schedule(a, opt, start, history, train_seconds, warmup, step_once,
                        lambda: evaluate_volumes(model, x_test, y_test, device), save, meta_now, say)
    if not meta["final"]:
        return meta
    err = meta["test_error"]
    say_final(say, meta, f"test error {err:.2f}% on {x_test.shape[0]} volumes; wrote {paths['meta']}",
              ("model", "steps", "test_error", "samples_per_s", "command"))
    return meta


if __name__ == "__main__":
    cli(main)
