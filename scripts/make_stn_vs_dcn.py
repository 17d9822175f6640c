"""Write results/stn-vs-dcn.md (+ .json for the app): spatial transformer vs deformable convolution.

Usage: python scripts/make_stn_vs_dcn.py [--repeats 3] [--batch 256] [--threads 1] [--checkpoints DIR]
                                         [--out results/stn-vs-dcn.md] [--no-cuda] [--devices cpu cuda]
                                         [--save-timings FILE] [--timings-from FILE]

For each distortion (R, RTS, P, E): the test error of the CNN, ST-CNN Aff, ST-CNN TPS and DCN read
from the checkpoint JSONs (``not trained yet`` where a checkpoint is missing; the command that
trained each one is its JSON's "command"); each model's parameter count and how many numbers its
sampling machinery predicts per image (pages.lab.dcn.predicted_numbers); forward and
forward+backward time of one batch, all four models timed round-robin in one run at the task's
input size, as ratios to the plain CNN, on this CPU (the DCN with backend "auto": the sampled
grid_sample path) and on CUDA when available (the DCN on torchvision's kernel); and the cost of
TPS grid generation against affine. Both files are written atomically.

This machine has no GPU, so the CUDA columns come from a run on a GPU machine:
``python scripts/make_stn_vs_dcn.py --devices cuda --save-timings results/stn-vs-dcn-cuda.json``
there, then ``--timings-from results/stn-vs-dcn-cuda.json`` here, which takes the timings of every
device this run does not measure from that file (its command, GPU and torch version are printed
beside them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from stn_vs_dcn import grid_costs  # noqa: E402
from timing import interleaved_median_ms  # noqa: E402

from stn_core.data.tasks import input_size  # noqa: E402
from stn_core.fileio import atomic_write_bytes  # noqa: E402
from stn_core.train.loop import cpu_name  # noqa: E402
from stn_core.models import count_params  # noqa: E402
from stn_core import registry as reg
from stn_core.analysis import stn_vs_dcn as svd


def _fwd(model, x):
    def run():
        with torch.no_grad():
            model(x)
    return run


def _fwd_bwd(model, x, y):
    def run():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
    return run


def time_models(side: int, batch: int, repeats: int, device: torch.device) -> dict[str, dict[str, float]]:
    """{key: {"fwd_ms", "fwd_bwd_ms"}} for the models of COMPARE_KEYS at input ``side`` on ``device``."""
    g = torch.Generator().manual_seed(side)
    x = torch.rand(batch, 1, side, side, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    dist = next(d for d in reg.TABLE1_DISTORTIONS if input_size(reg.DIST_TASK[d]) == side)
    models = {}
    for key in svd.COMPARE_KEYS:
        torch.manual_seed(0)
        m = svd.compare_model(dist, key).to(device)
        models[key] = m.use_channels_last() if device.type == "cpu" else m
    fwd = interleaved_median_ms({k: _fwd(m.eval(), x) for k, m in models.items()}, repeats, warmup=1, device=device)
    fb = interleaved_median_ms({k: _fwd_bwd(m.train(), x, y) for k, m in models.items()}, repeats, warmup=1,
                               device=device)
    return {k: {"fwd_ms": fwd[k], "fwd_bwd_ms": fb[k]} for k in models}


def device_name(dev: str) -> str:
    """Human name of the machine's ``dev`` ("cpu" / "cuda")."""
    if dev == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{platform.machine()} CPU, {os.cpu_count()} cores"


def save_timings(path: Path, timings: dict[str, dict[int, dict]], command: str, a: argparse.Namespace) -> None:
    """Write ``timings`` with where and how they were measured (read back by ``load_timings``)."""
    rec = {"command": command, "batch": a.batch, "repeats": a.repeats, "torch": torch.__version__,
           "device_names": {dev: device_name(dev) for dev in timings},
           "timings": {dev: {str(side): t for side, t in per_side.items()} for dev, per_side in timings.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(rec, indent=1) + "\n").encode("utf-8"))
    print(f"wrote {path}", flush=True)


def load_timings(path: Path, timings: dict[str, dict[int, dict]]) -> dict[str, dict]:
    """Add to ``timings`` (in place) each device of the ``save_timings`` file ``path`` that this run did
    not measure; returns {device: that file's provenance} for the devices added."""
    try:
        rec = json.loads(path.read_text())
        src = {k: rec[k] for k in ("command", "batch", "repeats", "torch", "device_names")}
        per_dev = rec["timings"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"error: cannot read timings from {path}: {e}") from None
    added = {}
    for dev, per_side in per_dev.items():
        if dev in timings:
            continue
        timings[dev] = {int(side): t for side, t in per_side.items()}
        added[dev] = {**src, "file": str(path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path)}
    return added


def _err_cell(meta: dict | None, why: str | None) -> tuple[str, float | None]:
    if meta is None:
        return (why or "not trained yet"), None
    err, note = reg.training_status(meta)
    if err is None:
        return note or "no test error yet", None
    return f"{err:.2f}" + (f" ({note})" if note else ""), err


def main(argv: list[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--checkpoints", default=None,
                    help=f"checkpoint folder (default: ${reg.ENV_CHECKPOINTS} or <repo>/checkpoints)")
    ap.add_argument("--out", default=str(ROOT / "results" / "stn-vs-dcn.md"))
    ap.add_argument("--no-cuda", action="store_true", help="skip the CUDA timings even when a GPU is present")
    ap.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=None,
                    help="devices to time (default: cpu, and cuda when available)")
    ap.add_argument("--save-timings", default=None, help="also write this run's timings as JSON to this file")
    ap.add_argument("--timings-from", default=None,
                    help="JSON from --save-timings (e.g. of a GPU machine): timings of the devices not measured here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    folder = Path(a.checkpoints) if a.checkpoints else reg.checkpoint_dir()
    command = "python scripts/make_stn_vs_dcn.py" + (" " + shlex.join(argv) if argv else "")
    if a.devices is not None:
        if "cuda" in a.devices and not torch.cuda.is_available():
            ap.error("--devices cuda: CUDA is not available on this machine")
        devices = [torch.device(d) for d in a.devices]
    else:
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() and not a.no_cuda
                                           else [])

    sides = sorted({input_size(reg.DIST_TASK[d]) for d in reg.TABLE1_DISTORTIONS})
    timings: dict[str, dict[int, dict]] = {}
    for dev in devices:
        timings[dev.type] = {}
        for side in sides:
            print(f"timing {side}×{side} on {dev.type} …", flush=True)
            timings[dev.type][side] = time_models(side, a.batch, a.repeats, dev)
    if a.save_timings:
        save_timings(Path(a.save_timings), timings, command, a)
    imported = load_timings(Path(a.timings_from), timings) if a.timings_from else {}
    print("timing the grid generators …", flush=True)
    grids = {side: grid_costs(a.batch, side, max(10, 4 * a.repeats)) for side in sides}

    data: dict = {"command": command, "batch": a.batch, "repeats": a.repeats, "threads": a.threads,
                  "devices": list(timings), "timing_sources": imported, "tasks": {}, "grid": {}}
    lines = [
        "# Spatial transformer vs deformable convolution on distorted MNIST",
        "",
        f"Generated by `{command}` (every number below comes from this command unless its own "
        "command is given beside it). Test errors are read from the checkpoint JSONs in "
        f"`{reg.display_dir(folder)}`; the command that trained each checkpoint is in its JSON (\"command\").",
        "",
        f"Timing: batch {a.batch}, median of {a.repeats} round-robin repeats after 1 warm-up, the four models of "
        f"one input size timed in the same rounds; ratios are to the plain CNN. CPU: {cpu_name()} ({platform.machine()}), "
        f"{os.cpu_count()} cores shared with training runs (absolute times are noisy, the ratios are the numbers "
        f"to read), {a.threads} torch thread(s), torch {torch.__version__}; the DCN uses backend \"auto\" (CPU: the "
        "sampled grid_sample path of stn_core.dcn; CUDA: torchvision's deform_conv2d)."
        + ("" if "cuda" in data["devices"] else " No CUDA device was available for this run."),
        "",
        *[f"{dev.upper() if dev == 'cuda' else dev} timings: measured on {src['device_names'].get(dev, '?')} (torch "
          f"{src['torch']}, batch {src['batch']}, median of {src['repeats']} repeats) by `{src['command']}`, read from "
          f"`{src['file']}`." for dev, src in imported.items()],
        *([""] if imported else []),
        "Reading the ratios: R, P and E share the 28×28 timings (same models, same input size). At 42×42 (RTS) the "
        "ST-CNNs' classifier sees the transformer output average-pooled to 21×21 (paper), so they are cheaper than "
        "the CNN, which sees all 42×42; the DCN, like the CNN, convolves the full 42×42 input. The few-ms grid "
        "timings at the end are the noisiest numbers here."
        + (" On the GPU a batch of these small models takes a few milliseconds at most, so its ratios count kernel "
           "launches (the ST's localisation net, grid and sampler are extra kernels) more than arithmetic."
           if "cuda" in timings else ""),
        "",
    ]
    for dist in reg.TABLE1_DISTORTIONS:
        side = input_size(reg.DIST_TASK[dist])
        cols = [f"{dev} fwd ×cnn | {dev} fwd+bwd ×cnn" for dev in timings]
        lines += [f"## {reg.DIST_LABELS[dist]} ({side}×{side} input)", "",
                  "| model | test error % | trained on (steps × batch) | params | numbers predicted / image | "
                  "what is predicted | warped map? | " + " | ".join(cols) + " |",
                  "|---|---:|---:|---:|---:|---|---|" + "---:|---:|" * len(timings)]
        data["tasks"][dist] = {}
        for key in svd.COMPARE_KEYS:
            meta, why = svd.read_meta(dist, key, folder)
            cell, err = _err_cell(meta, why)
            model = svd.compare_model(dist, key)
            n_pred, how = svd.predicted_numbers(model)
            rec = {"test_error": err, "test_error_text": cell, "trained_on": svd.trained_on(meta),
                   "params": count_params(model),
                   "predicted_per_image": n_pred, "predicted_how": how,
                   "checkpoint_command": (meta or {}).get("command")}
            ratios = []
            for dev, per_side in timings.items():
                t, c = per_side[side][key], per_side[side]["cnn"]
                rf, rb = t["fwd_ms"] / c["fwd_ms"], t["fwd_bwd_ms"] / c["fwd_bwd_ms"]
                rec.update({f"fwd_ms_{dev}": t["fwd_ms"], f"fwd_bwd_ms_{dev}": t["fwd_bwd_ms"],
                            f"fwd_ratio_{dev}": rf, f"fwd_bwd_ratio_{dev}": rb})
                ratios.append(f"{rf:.2f} | {rb:.2f}")
            data["tasks"][dist][key] = rec
            lines.append(f"| {svd.COMPARE_LABELS[key]} | {cell} | {rec['trained_on']} | {rec['params']:,} | "
                         f"{n_pred:,} | {how} | "
                         f"{svd.WARPED_MAP[key]} | " + " | ".join(ratios) + " |")
        lines.append("")
    lines += ["## Where the test errors come from", "",
              "| checkpoint | the command that trained it (its JSON's \"command\") |", "|---|---|"]
    for dist in reg.TABLE1_DISTORTIONS:
        for key in svd.COMPARE_KEYS:
            rec = data["tasks"][dist][key]
            cmd = rec["checkpoint_command"]
            name = svd.stem(dist, key, folder).name
            lines.append(f"| {name} | " + (f"`{cmd}`" if cmd else f"not trained yet — train it with "
                                                                  f"`{reg.train_command(dist, key)}`") + " |")
    lines += ["", "## Time per batch (ms)", "",
              "| device | input | " + " | ".join(f"{svd.COMPARE_LABELS[k]} fwd / fwd+bwd" for k in svd.COMPARE_KEYS) + " |",
              "|---|---|" + "---|" * len(svd.COMPARE_KEYS)]
    for dev, per_side in timings.items():
        for side, t in per_side.items():
            lines.append(f"| {dev} | {side}×{side} | " + " | ".join(
                f"{t[k]['fwd_ms']:.1f} / {t[k]['fwd_bwd_ms']:.1f}" for k in svd.COMPARE_KEYS) + " |")
    lines += ["", "## Grid generation: TPS vs affine (CPU)", "",
              f"One batch of {a.batch}, output = input size, K = 16 (the lattice system solved once and cached, as "
              "in training); the bilinear sampling of the same batch for scale.", "",
              "| input | affine grid ms | TPS grid ms | TPS / affine | bilinear sampling ms |", "|---|---:|---:|---:|---:|"]
    for side, c in grids.items():
        lines.append(f"| {side}×{side} | {c['affine grid']:.2f} | {c['tps grid']:.2f} | "
                     f"{c['tps grid'] / c['affine grid']:.1f} | {c['bilinear sampling']:.2f} |")
        data["grid"][str(side)] = {"affine_ms": c["affine grid"], "tps_ms": c["tps grid"],
                                   "tps_over_affine": c["tps grid"] / c["affine grid"],
                                   "sampling_ms": c["bilinear sampling"]}
    lines.append("")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, "\n".join(lines).encode("utf-8"))
    atomic_write_bytes(out.with_suffix(".json"), (json.dumps(data, indent=1) + "\n").encode("utf-8"))
    print("\n".join(lines))
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return out


if __name__ == "__main__":
    main()
