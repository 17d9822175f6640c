"""One short GPU session's work for Table 1 and the STN-vs-DCN comparison, in priority order.

    python scripts/gpu_session.py --out DIR [--budget 480] [--dry-run]

Run from the repo root of a machine with a GPU and the MNIST files in data/cache/mnist (or
$STN_LAB_DATA). Everything it does is a command of this repo; it only orders them and sizes the
last one to the time left. Getting there: the lent machine receives a copy of the working tree of at
most 64 MiB, which the shipped weights alone exceed, so first ``python scripts/device_tree.py --hide``
here (untracks + ignores checkpoints/*.safetensors, which this plan does not read; the JSONs stay),
``python -m stn_core.data mnist --from ../shared/data/mnist`` (into the ignored data/cache, 12 MiB), carry
``data/cache`` in the call, and ``python scripts/device_tree.py --restore`` after the last call,
before any commit. The plan:

1. smoke: two 5-step runs of the costliest models (stops here if they fail);
2. CUDA timings of the CNN / ST-CNN / DCN comparison, of the sampler and of transformers in the conv
   stack (the paper's "+6 %"), on a quiet GPU: ``scripts/make_stn_vs_dcn.py --devices cuda --save-timings``,
   ``bench/sampler.py --device cuda`` and ``bench/multidigit_cost.py --devices cuda``;
3. issue #17's retrain: every Table 1 / DCN cell not yet final on the v2 recipe (one 4.0 M-sample
   budget for all, the recipe study's SGD momentum + cosine), all at once:
   ``scripts/train_table1.py --recipe v2 --jobs 36 --skip-published`` into runs/table1-v2 (the CUDA tests
   run beside it; ``--skip-published``: a cell or seed that checkpoints/ already reports at the v2 budget
   is not trained again, since the bare machine has no staging folder); then, with the time left,
   seeds 1 and 2 of the RTS column and of every ST-CNN cell and the CNN it is judged against
   (``--seeds 1 2``), whose JSONs come back (their numbers, not their weights); beside the table runs,
   MNIST addition at one budget for all four models (``scripts/train_addition.py --recipe <RECIPE> --jobs 4``,
   its chosen recipe, into runs/addition-<RECIPE>, whose weights come back too). ``--plan v1`` runs
   the old step 3 (the shipped schedules into checkpoints/) and step 4 instead;
4. (``--plan v1`` only) with the time left: the CNN family (by default CNN, ST-CNN Aff/Proj/TPS and DCN of every
   distortion) again on a longer schedule, into checkpoints/long/, all with the same step count,
   chosen from the throughput that 200-step calibration runs of all of them measure side by side
   (at least 3× the table's 3,000 steps, at most the paper's 150,000; skipped if that does not fit);
   ``--long-only --long-tasks rts --long-models cnn st-cnn-aff`` does just this step for those;
5. packing: the new checkpoints (no optimiser state) as tar files of at most 15 MiB and the logs,
   under --out, within the 60 MiB that comes back from the device machine.

``--dry-run`` does the same on the CPU with tiny step counts and test sets, to check the plumbing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from train_queue import is_final  # noqa: E402
from train_addition import MODELS as ADDITION_MODELS  # noqa: E402
from train_addition import OUT_DIRS, RECIPE as ADDITION_RECIPE  # noqa: E402
from train_table1 import MODELS, V2_OUT_DIR, stem_name  # noqa: E402

TASKS = ("r", "rts", "p", "e")
#: The v2 plan's columns (P on its new generator, σ = 3 px with convex quads: results/p-fidelity.md; its
#: eight Table 1 cells are final, its DCN and extra seeds are not); TC (the paper's translated + cluttered
#: MNIST) is the fifth column.
V2_TASKS = ("rts", "r", "p", "e", "tc")
LONG_MODELS = ("cnn", "st-cnn-aff", "st-cnn-proj", "st-cnn-tps", "dcn")
LONG_DIR = "checkpoints/long"
PART_BYTES = 15 << 20
TOTAL_BYTES = 58 << 20


class Session:
    def __init__(self, out: Path, budget: float, dry: bool, long_tasks: tuple[str, ...] = TASKS,
                 long_models: tuple[str, ...] = LONG_MODELS) -> None:
        self.out, self.t0, self.budget, self.dry = out, time.time(), budget, dry
        self.long_tasks, self.long_models = long_tasks, long_models
        # a dry run never writes into the real staging folder (its 20-step runs would count as final)
        self.v2_dir = ROOT / (V2_OUT_DIR + "-dry" if dry else V2_OUT_DIR)
        self.addition_dir = ROOT / (OUT_DIRS[ADDITION_RECIPE] + ("-dry" if dry else ""))
        self.log = open(out / "session.log", "a")

    def left(self) -> float:
        return self.budget - (time.time() - self.t0)

    def say(self, msg: str) -> None:
        line = f"[{time.time() - self.t0:6.1f} s] {msg}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def run(self, cmd: list[str], cwd: Path = ROOT, log: str | None = None, timeout: float | None = None) -> int:
        self.say("$ " + " ".join(cmd))
        with open(self.out / log, "a") if log else open(os.devnull, "w") as f:
            try:
                p = subprocess.run(cmd, cwd=cwd, stdout=f if log else None, stderr=subprocess.STDOUT if log else None,
                                   timeout=timeout)
            except subprocess.TimeoutExpired:
                self.say(f"timed out after {timeout:.0f} s")
                return 124
        self.say(f"exit {p.returncode}")
        return p.returncode


def train_cmd(task: str, name: str, steps: int, out: Path, test_limit: int | None) -> list[str]:
    """A short run of model ``name`` (a key of train_table1.MODELS) into ``out``, outside the table."""
    model, transform = MODELS[name]
    cmd = [sys.executable, "-m", "stn_core.train", "--task", f"mnist-{task}", "--model", model, "--steps", str(steps),
           "--lr", "0.01", "--momentum", "0.9", "--seed", "0", "--threads", "1", "--out", str(out), "--no-progress",
           "--overwrite"]
    return cmd + (["--transform", transform] if transform else []) + (
        ["--test-limit", str(test_limit)] if test_limit else [])


def parallel(cmds: list[list[str]], cwd: Path) -> list[int]:
    procs = [subprocess.Popen(c, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in cmds]
    codes = []
    for c, p in zip(cmds, procs):
        _, err = p.communicate()
        codes.append(p.returncode)
        if p.returncode:
            print(f"FAILED: {' '.join(c)}\n{err[-3000:]}", flush=True)
    return codes


def smoke(s: Session) -> bool:
    tmp = Path("/tmp/gpu_smoke")
    cmds = [train_cmd("rts", "dcn", 5, tmp / "dcn", 256), train_cmd("e", "st-cnn-tps", 5, tmp / "tps", 256)]
    s.say("smoke: 5 steps of the RTS DCN and the E ST-CNN TPS")
    return not any(parallel(cmds, ROOT))


def timings(s: Session) -> None:
    dev = "cpu" if s.dry else "cuda"
    s.run([sys.executable, "scripts/make_stn_vs_dcn.py", "--devices", dev, "--repeats", "1" if s.dry else "5",
           "--save-timings", str(s.out / "stn-vs-dcn-cuda.json"), "--out", "/tmp/gpu_svd/stn-vs-dcn.md"],
          log="timings.log", timeout=max(30.0, min(120.0, s.left() / 4)))
    s.run([sys.executable, "bench/sampler.py", "--device", dev, "--repeats", "2" if s.dry else "20",
           "--out", str(s.out / "bench-sampler-cuda.md")], log="timings.log", timeout=max(30.0, min(60.0, s.left() / 6)))
    s.run([sys.executable, "bench/multidigit_cost.py", "--devices", dev, "--repeats", "1" if s.dry else "15",
           *(["--sizes", "64"] if s.dry else []), "--out", str(s.out / "bench-multidigit-cuda.md")],
          log="timings.log", timeout=max(30.0, min(60.0, s.left() / 6)))


V2_SEEDS = (1, 2)


def checkpoint_stems(folder: Path, seeds: tuple[int, ...] = (0,)) -> list[Path]:
    return [folder / stem_name(t, m, seed) for seed in seeds for t in (*TASKS, "tc") for m in MODELS]


def table_runs(s: Session, plan: str = "v2") -> subprocess.Popen:
    """Phase 3 in the background: every missing Table 1 / DCN cell at once."""
    cmd = [sys.executable, "scripts/train_table1.py", "--jobs", "36" if plan == "v2" else "24",
           "--time-limit", str(int(s.left() - 60))]
    if plan == "v2":
        cmd += ["--recipe", "v2", "--out-dir", str(s.v2_dir.relative_to(ROOT)), "--skip-published",
                "--tasks", *V2_TASKS]
    if s.dry:
        cmd = cmd[:cmd.index("--tasks")] if "--tasks" in cmd else cmd
        cmd += ["--tasks", "e", "--models", "fcn", "cnn", "--steps", "20"]
    s.say("$ " + " ".join(cmd))
    return subprocess.Popen(cmd, cwd=ROOT, stdout=open(s.out / "table1.log", "w"), stderr=subprocess.STDOUT)


def addition_runs(s: Session) -> subprocess.Popen:
    """Phase 3 (v2), beside the table: the four MNIST-addition models at one budget, all at once."""
    cmd = [sys.executable, "scripts/train_addition.py", "--recipe", ADDITION_RECIPE, "--jobs", "4",
           "--time-limit", str(int(s.left() - 60))]
    if s.dry:
        cmd += ["--checkpoints", str(s.addition_dir), "--models", "fcn", "2st-fcn",
                "--extra", "--steps", "20", "--test-limit", "256"]
    s.say("$ " + " ".join(cmd))
    return subprocess.Popen(cmd, cwd=ROOT, stdout=open(s.out / "addition.log", "w"), stderr=subprocess.STDOUT)


def seed_runs(s: Session) -> None:
    """Phase 3b (v2): seeds 1 and 2 of the RTS column and of the other columns' ST-CNN cells and CNN (the
    ordering "every ST-CNN beats the CNN" compares seed means), with the time left."""
    if s.left() < 120:
        s.say("no time left for the extra seeds")
        return
    limit = str(int(s.left() - 60))
    common = [sys.executable, "scripts/train_table1.py", "--recipe", "v2", "--out-dir", str(s.v2_dir.relative_to(ROOT)),
              "--jobs", "18", "--skip-published", "--seeds", *map(str, V2_SEEDS)]
    rts = common + ["--tasks", "rts", "--time-limit", limit]
    st = common + ["--tasks", *(t for t in V2_TASKS if t != "rts"), "--models", "st-cnn-aff", "st-cnn-proj", "st-cnn-tps",
                   "cnn", "--time-limit", limit]
    if s.dry:
        rts += ["--models", "fcn", "--steps", "20"]
        st = st[:st.index("--models")] + ["--models", "st-cnn-aff", "--steps", "20", "--time-limit", limit]
    procs = []
    for cmd, log in ((rts, "seeds-rts.log"), (st, "seeds-st-cnn.log")):
        s.say("$ " + " ".join(cmd))
        procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=open(s.out / log, "w"), stderr=subprocess.STDOUT))
    for p in procs:
        p.wait()
    s.say(f"seed runs: exit {[p.returncode for p in procs]}")


def cuda_tests(s: Session, all_files: bool = True) -> subprocess.Popen | None:
    """The CUDA tests in the background (4 CPU threads, to leave the cores to the training runs)."""
    if s.dry:
        return None
    files = ["tests/core/test_cuda.py"] + (
        ["tests/core/test_sampling.py", "tests/core/test_stn.py", "tests/core/test_transforms.py"] if all_files else [])
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files, "-k", "cuda"]
    s.say("$ " + " ".join(cmd))
    return subprocess.Popen(cmd, cwd=ROOT, stdout=open(s.out / "pytest-cuda.log", "w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "4"})


def long_runs(s: Session) -> int | None:
    """Phase 4: the CNN family on the longest schedule that fits the time left (None: skipped)."""
    cal_steps = 10 if s.dry else 200
    tasks, names = s.long_tasks, s.long_models
    cal = Path("/tmp/gpu_cal")
    shutil.rmtree(cal, ignore_errors=True)
    cmds = [train_cmd(t, m, cal_steps, cal / f"{t}_{m}", 64 if s.dry else 500) for t in tasks for m in names]
    s.say(f"calibration: {len(cmds)} runs of {cal_steps} steps side by side")
    if any(parallel(cmds, ROOT)):
        s.say("calibration failed: no long runs")
        return None
    sps = [json.loads((cal / f"{t}_{m}.json").read_text())["samples_per_s"] for t in tasks for m in names]
    slowest = min(sps)
    avail = s.left() - 75  # process start, data, final evaluation, packing
    steps = int(min(150_000, slowest * avail * 0.85 / 256) // 1000 * 1000)
    s.say(f"calibration: slowest {slowest:.0f} samples/s (fastest {max(sps):.0f}); {avail:.0f} s left → {steps} steps")
    if s.dry:
        steps = 30
    elif steps < 9000:
        s.say("a longer schedule does not fit: skipped")
        return None
    cmd = [sys.executable, "scripts/train_table1.py", "--jobs", "24", "--steps", str(steps), "--out-dir", LONG_DIR,
           "--time-limit", str(int(s.left() - 40)), "--tasks", *tasks, "--models", *names]
    s.run(cmd, log="long.log")
    return steps


def pack_parts(s: Session, files: list[Path], prefix: str, arcname) -> tuple[int, int]:
    """``files`` in order into ``<out>/<prefix>_<n>.tar`` parts of at most PART_BYTES, TOTAL_BYTES in
    all (what does not fit is said and left out); returns (bytes packed, parts)."""
    total, part, size, n = 0, None, 0, 0
    for f in files:
        b = f.stat().st_size
        if total + b > TOTAL_BYTES:
            s.say(f"left out (size limit): {f}")
            continue
        if part is None or size + b > PART_BYTES:
            if part is not None:
                part.close()
            n += 1
            part, size = tarfile.open(s.out / f"{prefix}_{n}.tar", "w"), 0
        part.add(f, arcname=arcname(f))
        size, total = size + b, total + b
    if part is not None:
        part.close()
    return total, n


def pack(s: Session, before: dict[str, float], long_steps: int | None, plan: str = "v2") -> None:
    """Tar the new or changed checkpoints (json + safetensors) in priority order within the size limits;
    v2: the seed-0 weights, and the JSONs of every seed."""
    def changed(root: Path, seeds: tuple[int, ...] = (0,), suffixes: tuple[str, ...] = (".json", ".safetensors")
                ) -> list[Path]:
        """The checkpoint files of ``root`` new or modified since the session started."""
        out = []
        for stem in checkpoint_stems(root, seeds):
            for suffix in suffixes:
                f = stem.with_suffix(suffix)
                if f.is_file() and before.get(str(f)) != f.stat().st_mtime:
                    out.append(f)
        return out

    copy = ROOT / LONG_DIR
    if plan == "v2":
        table = changed(s.v2_dir)
        extra = changed(s.v2_dir, V2_SEEDS, (".json",))
        with tarfile.open(s.out / "v2.tgz", "w:gz") as tf:  # every v2 JSON (all seeds) always comes back
            for f in table + extra:
                if f.suffix == ".json":
                    tf.add(f, arcname="table1-v2/" + f.name)
            if (ROOT / "runs" / "logs").is_dir():
                tf.add(ROOT / "runs" / "logs", arcname="logs")
        addition = [f for name in ADDITION_MODELS for suffix in (".json", ".safetensors")
                    for f in [s.addition_dir / f"mnist_addition_{name}{suffix}"]
                    if f.is_file() and before.get(str(f)) != f.stat().st_mtime]
        weights = [f for f in table if f.suffix == ".safetensors"] + addition
        total, n = pack_parts(s, weights, "v2_weights",
                              lambda f: (f"addition-{ADDITION_RECIPE}/" if f.is_relative_to(s.addition_dir) else "table1-v2/")
                              + f.name)
        s.say(f"packed {total / 2**20:.1f} MiB of v2 weights in {n} tar file(s), {len(table) + len(extra)} files changed")
        return
    table = changed(ROOT / "checkpoints")
    long = changed(copy) if long_steps else []
    long_all_final = bool(long) and all(is_final(copy / f"mnist_{t}_{m}") for t in s.long_tasks for m in s.long_models)
    first = ([f for f in long] + table) if long_all_final else (table + long)
    with tarfile.open(s.out / "logs.tgz", "w:gz") as tf:  # every JSON always comes back
        for f in table + long:
            if f.suffix == ".json":
                tf.add(f, arcname=("long/" if f.is_relative_to(copy) else "table/") + f.name)
        if (ROOT / "runs" / "logs").is_dir():
            tf.add(ROOT / "runs" / "logs", arcname="logs")
    total, n = pack_parts(s, first, "ckpt", lambda f: ("long/" if f.is_relative_to(copy) else "table/") + f.name)
    s.say(f"packed {total / 2**20:.1f} MiB of checkpoints in {n} tar file(s)"
          + (" (long runs first: all final)" if long_all_final else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for everything, packing included")
    ap.add_argument("--dry-run", action="store_true", help="tiny CPU version of the same steps")
    ap.add_argument("--long-only", action="store_true", help="only step 4 (after the smoke runs)")
    ap.add_argument("--long-tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--long-models", nargs="+", default=list(LONG_MODELS), choices=LONG_MODELS)
    ap.add_argument("--plan", choices=["v2", "v1"], default="v2",
                    help="v2: issue #17's retrain into runs/table1-v2 (default); v1: the old table + long runs")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    s = Session(out, a.budget, a.dry_run, tuple(a.long_tasks), tuple(a.long_models))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if not a.dry_run:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("error: no CUDA device (use --dry-run to check the plumbing on a CPU)")
        s.say(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    before = {str(f): f.stat().st_mtime for root in (ROOT / "checkpoints", s.v2_dir, s.addition_dir)
              for f in root.glob("**/mnist_*")}
    if not smoke(s):
        raise SystemExit("smoke runs failed")
    if not a.long_only:
        timings(s)
    tests = cuda_tests(s, all_files=not a.long_only)
    if not a.long_only:
        phase = table_runs(s, a.plan)
        addition = addition_runs(s) if a.plan == "v2" else None
        phase.wait()
        s.say(f"table runs: exit {phase.returncode}")
        if addition is not None:
            addition.wait()
            s.say(f"addition runs: exit {addition.returncode}")
    if a.plan == "v2" and not a.long_only:
        seed_runs(s)
        long_steps = None
    else:
        long_steps = long_runs(s) if s.left() > 150 else None
    if tests is not None:
        try:
            tests.wait(timeout=max(1.0, s.left() - 20))
        except subprocess.TimeoutExpired:
            tests.kill()
            s.say("CUDA tests killed (out of time)")
        s.say(f"CUDA tests: exit {tests.returncode}")
    pack(s, before, long_steps, "v1" if a.long_only else a.plan)
    s.say("done")


if __name__ == "__main__":
    main()
