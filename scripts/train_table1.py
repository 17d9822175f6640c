"""Train the Table 1 models one after another (skips finished runs, resumes unfinished ones).

    python scripts/train_table1.py [--tasks rts r p e tc] [--families fcn cnn] [--models ...]
                                   [--time-limit 3600] [--jobs 1] [--steps N]
                                   [--recipe v1|v2] [--seeds 0 1 2] [--out-dir DIR]

Each run is one `python -m stn_core.train` command, written to checkpoints/ under the issue's
names (mnist_<task>_<model>.safetensors + .json); the command is recorded in the JSON. The
schedule is shortened from the paper's 150k steps to fit a 2-core CPU (see SCHEDULES); the
JSONs and results/table1.md say so. ``--jobs N`` keeps N runs going at once (on a GPU, where one
small run leaves the card mostly idle; logs in runs/logs/); ``--steps N`` gives the chosen runs a
longer (or shorter) schedule, evaluated every N/10 steps.

``--recipe v1`` (default) is the schedule of the shipped checkpoints. ``--recipe v2`` is issue #17's
retrain: one budget for every model of every column (V2_STEPS × 256 = 4.0 M samples, 5.2× the CNN
family's v1 budget) with the recipe study's choice (results/recipe.md: SGD momentum 0.9, lr 0.05,
5 % warm-up, cosine to 0; localisation nets at 0.1× the lr), into ``--out-dir`` (default
runs/table1-v2, a staging folder: only final checkpoints are copied into checkpoints/ and
committed). ``--seeds 0 1 2`` trains those seeds of every chosen cell (stems of seed s > 0 end in
``_s<s>``). ``--skip-published`` leaves out every (cell, seed) that ``checkpoints/`` already reports at the
same budget: the shipped run's own seed and the seeds in its JSON's ``extra.seeds`` (a fresh machine, a
GPU's, has no staging folder, and would otherwise train the published cells again).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from train_queue import read_meta, run_queue  # scripts/ is sys.path[0]

ROOT = Path(__file__).resolve().parents[1]

#: Model name in the checkpoint file → (--model, --transform).
MODELS = {
    "fcn": ("fcn", None), "cnn": ("cnn", None),
    "st-fcn-aff": ("st-fcn", "affine"), "st-fcn-proj": ("st-fcn", "projective"), "st-fcn-tps": ("st-fcn", "tps"),
    "st-cnn-aff": ("st-cnn", "affine"), "st-cnn-proj": ("st-cnn", "projective"), "st-cnn-tps": ("st-cnn", "tps"),
    "dcn": ("dcn", None),  # issue 7's deformable CNN: same schedule as the CNN family (not in Table 1)
}

#: Reduced schedules for this CPU (paper: 150k steps, batch 256, lr 0.01, plain SGD).
SCHEDULES = {
    "fcn": ["--steps", "20000", "--lr", "0.05", "--momentum", "0.9", "--eval-every", "5000"],
    "cnn": ["--steps", "3000", "--lr", "0.01", "--momentum", "0.9", "--eval-every", "1000"],
}


#: Issue #17's single budget per column (steps of batch 256) and its recipe (see the module docstring).
V2_STEPS = 15625
V2_FLAGS = ["--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.05", "--schedule", "cosine"]
V2_LOC_LR_MULT = "0.1"
V2_OUT_DIR = "runs/table1-v2"


def _p_generator_is_new() -> bool:
    """Whether this code's P generator is the new one (imported here only: the queue itself needs no torch)."""
    sys.path.insert(0, str(ROOT))
    from stn_core.data.distortions import P_CONVEX

    return bool(P_CONVEX)


def family(name: str) -> str:
    return "cnn" if MODELS[name][0] in ("cnn", "st-cnn", "dcn") else "fcn"


def schedule(name: str, steps: int | None = None) -> list[str]:
    """The schedule flags of model ``name``: its family's, with ``steps`` (and eval every steps/10) if given."""
    flags = list(SCHEDULES[family(name)])
    if steps is not None:
        flags[flags.index("--steps") + 1] = str(steps)
        flags[flags.index("--eval-every") + 1] = str(max(1, steps // 10))
    return flags


def v2_schedule(name: str, steps: int | None = None) -> list[str]:
    """The v2 flags of model ``name`` (issue #17): one budget for all, the recipe study's choice."""
    n = V2_STEPS if steps is None else steps
    flags = V2_FLAGS + ["--steps", str(n), "--eval-every", str(max(1, n // 10))]
    if MODELS[name][1] is not None:  # a spatial transformer: its localisation net at 0.1× the lr
        flags += ["--loc-lr-mult", V2_LOC_LR_MULT]
    return flags


def stem_name(task: str, name: str, seed: int = 0) -> str:
    return f"mnist_{task}_{name}" + (f"_s{seed}" if seed else "")


def published_seeds(task: str, name: str, steps: int, folder: Path | None = None) -> set[int]:
    """Seeds of cell (task, name) that the final checkpoint in ``folder`` (default checkpoints/) reports at
    ``steps`` steps: its own seed and those of its JSON's ``extra.seeds``; empty when there is none or it
    was trained at another budget."""
    meta = read_meta((folder or ROOT / "checkpoints") / stem_name(task, name))
    if not meta or not meta.get("final") or (meta.get("train_args") or {}).get("steps") != steps:
        return set()
    errors = (((meta.get("extra") or {}).get("seeds") or {}).get("errors")) or {}
    return {int(meta["train_args"].get("seed", 0))} | {int(k) for k in errors if str(k).isdigit()}


def command(task: str, name: str, stem: Path, threads: int, steps: int | None = None, recipe: str = "v1",
            seed: int = 0) -> list[str]:
    model, transform = MODELS[name]
    cmd = [sys.executable, "-m", "stn_core.train", "--task", f"mnist-{task}", "--model", model]
    if transform:
        cmd += ["--transform", transform]
    flags = schedule(name, steps) if recipe == "v1" else v2_schedule(name, steps)
    cmd += flags + ["--seed", str(seed), "--threads", str(threads), "--out", str(stem.relative_to(ROOT)),
                    "--no-progress"]
    if stem.with_suffix(".json").exists():
        cmd.append("--resume")
    return cmd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["rts", "r", "p", "e"], choices=["r", "rts", "p", "e", "tc"],
                    help="distortions (tc: the paper's translated + cluttered MNIST, 60×60; not in the default)")
    ap.add_argument("--families", nargs="+", default=["fcn", "cnn"], choices=["fcn", "cnn"])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=None, help="stop starting/continuing runs after this many s")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (logs in runs/logs/)")
    ap.add_argument("--steps", type=int, default=None, help="steps of every chosen run (default: its family's)")
    ap.add_argument("--recipe", choices=["v1", "v2"], default="v1",
                    help="v1: the shipped checkpoints' schedules; v2: issue #17's one budget per column")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds of every chosen cell")
    ap.add_argument("--out-dir", default=None,
                    help="folder of the checkpoints, relative to the repo (default: checkpoints, or "
                         f"{V2_OUT_DIR} for --recipe v2)")
    ap.add_argument("--skip-published", action="store_true",
                    help="leave out the seeds that checkpoints/ already reports at the same budget")
    args = ap.parse_args()
    if args.steps is not None and args.steps < 1:
        ap.error("--steps must be positive")
    if args.recipe == "v2" and "p" in args.tasks and not _p_generator_is_new():
        ap.error("the v2 P column trains on the new P generator (σ = 3 px, non-convex quads redrawn: "
                 "results/p-fidelity.md), which becomes the default together with that column; this code still "
                 "has the old one (stn_core.data.distortions.P_CONVEX is False)")
    if args.out_dir is None:
        args.out_dir = "checkpoints" if args.recipe == "v1" else V2_OUT_DIR
    budget = args.steps or (V2_STEPS if args.recipe == "v2" else None)

    def wanted(task: str, name: str, seed: int) -> bool:
        if family(name) not in args.families:
            return False
        flags = schedule(name)
        steps = budget or int(flags[flags.index("--steps") + 1])  # v1: the family's own step count
        return not (args.skip_published and seed in published_seeds(task, name, steps))

    jobs = [(stem, lambda task=task, name=name, stem=stem, seed=seed:
             command(task, name, stem, args.threads, args.steps, args.recipe, seed))
            for seed in args.seeds for task in args.tasks for name in args.models if wanted(task, name, seed)
            for stem in [ROOT / args.out_dir / stem_name(task, name, seed)]]
    if args.skip_published:
        print(f"--skip-published: {len(jobs)} run(s) left to train", flush=True)
    run_queue(jobs, args.time_limit, parallel=args.jobs, log_dir=ROOT / "runs" / "logs" / Path(args.out_dir).name)


if __name__ == "__main__":
    main()
