"""scripts/train_queue.py and scripts/train_table1.py: the queue of training runs (serial or side by side)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import train_queue as Q  # noqa: E402
import train_table1 as T1  # noqa: E402


def _job(stem: Path, code: str):
    return stem, lambda: [sys.executable, "-c", code]


def test_parallel_queue_runs_jobs_side_by_side_and_skips_final_ones(tmp_path, capsys):
    done = tmp_path / "done"
    done.with_suffix(".json").write_text(json.dumps({"final": True}))
    marker = tmp_path / "started"
    marker.mkdir()
    # each job waits (up to 20 s) until both have started: a serial queue would never finish them
    m = repr(str(marker))
    wait = (f"import os, time\nopen(os.path.join({m}, str(os.getpid())), 'w').close()\nt = time.time()\n"
            f"while len(os.listdir({m})) < 2 and time.time() - t < 20:\n    time.sleep(0.05)\n"
            f"print('both started' if len(os.listdir({m})) >= 2 else 'alone')")
    jobs = [_job(tmp_path / "a", wait), _job(tmp_path / "b", wait), _job(done, "raise SystemExit(3)")]
    Q.run_queue(jobs, None, parallel=2, log_dir=tmp_path / "logs")
    out = capsys.readouterr().out
    assert "done already: done" in out and out.count("ended (0)") == 2
    for name in ("a", "b"):
        lines = (tmp_path / "logs" / f"{name}.log").read_text().strip().splitlines()
        assert lines[0].startswith("=== ") and " $ -c " in lines[0] and lines[-1] == "both started"


def test_parallel_queue_reports_a_failed_run_after_the_others(tmp_path):
    jobs = [_job(tmp_path / "bad", "raise SystemExit(3)"), _job(tmp_path / "good", "print('fine')")]
    with pytest.raises(subprocess.CalledProcessError):
        Q.run_queue(jobs, None, parallel=2, log_dir=tmp_path / "logs")
    assert (tmp_path / "logs" / "good.log").read_text().strip().splitlines()[-1] == "fine"


def test_a_resumed_run_gets_its_trained_seconds_plus_the_time_left(tmp_path):
    (tmp_path / "x.json").write_text('{"final": false, "train_seconds": 5000.0}')
    cmd = Q._command_or_none(tmp_path / "x", lambda: ["python", "run"], start=time.time(), time_limit=600)
    assert cmd[2] == "--time-limit" and 5590 <= int(cmd[3]) <= 5600  # the trainer's limit is cumulative


def test_time_limit_is_passed_on_and_stops_new_runs(tmp_path, capsys):
    cmd = Q._command_or_none(tmp_path / "x", lambda: ["python", "run"], start=0.0, time_limit=1e12)
    assert cmd[:2] == ["python", "run"] and cmd[2] == "--time-limit" and int(cmd[3]) > 60
    assert Q._command_or_none(tmp_path / "x", lambda: ["python"], start=time.time(), time_limit=30) is None
    assert "time limit reached" in capsys.readouterr().out


def test_table_schedules_and_a_longer_one():
    assert T1.schedule("st-cnn-tps")[:2] == ["--steps", "3000"] and T1.schedule("st-fcn-aff")[:2] == ["--steps", "20000"]
    long = T1.schedule("dcn", 12000)
    assert long[long.index("--steps") + 1] == "12000" and long[long.index("--eval-every") + 1] == "1200"
    assert long[long.index("--lr") + 1] == "0.01"  # only the length changes
    cmd = T1.command("rts", "st-cnn-aff", ROOT / "checkpoints" / "long" / "mnist_rts_st-cnn-aff", 1, 12000)
    assert cmd[cmd.index("--out") + 1] == "checkpoints/long/mnist_rts_st-cnn-aff"
    assert cmd[cmd.index("--transform") + 1] == "affine"


def test_v2_gives_every_model_of_a_column_one_budget_and_the_study_recipe():
    fcn = T1.command("rts", "fcn", ROOT / "runs" / "table1-v2" / "mnist_rts_fcn", 1, recipe="v2")
    st = T1.command("rts", "st-cnn-aff", ROOT / "runs" / "table1-v2" / "mnist_rts_st-cnn-aff_s2", 1, recipe="v2",
                    seed=2)

    def flag(cmd, name):
        return cmd[cmd.index(name) + 1]

    assert flag(fcn, "--steps") == flag(st, "--steps") == str(T1.V2_STEPS)
    assert T1.V2_STEPS * 256 >= 5 * 3000 * 256  # at least 5× the CNN family's v1 budget (issue #17)
    assert flag(st, "--schedule") == "cosine" and flag(st, "--momentum") == "0.9" and flag(st, "--lr") == "0.05"
    assert flag(st, "--loc-lr-mult") == "0.1" and "--loc-lr-mult" not in fcn
    assert flag(st, "--seed") == "2" and flag(fcn, "--seed") == "0"
    assert T1.stem_name("rts", "st-cnn-aff", 2) == "mnist_rts_st-cnn-aff_s2" and T1.stem_name("r", "cnn") == "mnist_r_cnn"


def test_read_meta_takes_run_names_with_dots(tmp_path):
    (tmp_path / "cnn_sgdm-cosine_0.25M.json").write_text('{"final": true, "train_seconds": 12.5}')
    stem = tmp_path / "cnn_sgdm-cosine_0.25M"
    assert Q.read_meta(stem) == {"final": True, "train_seconds": 12.5}
    assert Q.is_final(stem) and Q.trained_seconds(stem) == 12.5
    assert Q.read_meta(tmp_path / "missing") is None


def test_cub_protocol_gives_every_model_of_a_size_the_same_budget(tmp_path):
    import train_cub as TC

    for size in TC.SIZES:
        cmds = {name: TC.command(name, size, threads=1) for name in TC.MODELS}
        flags = {name: c[c.index("--epochs"):c.index("--threads")] for name, c in cmds.items()}
        assert flags["baseline"] == flags["2st"] == flags["4st"], size
        assert all("--resume" not in c or TC.read_meta(TC.stem_of(n, size)) is not None for n, c in cmds.items())
    p448 = TC.protocol_args("448")
    assert p448[p448.index("--input-size") + 1] == "448" and p448[p448.index("--crop-size") + 1] == "224"
    assert p448[p448.index("--loc-size") + 1] == "224"
    with pytest.raises(ValueError):
        TC.protocol_args("300")
    # a variant keeps the 448 protocol but its own localisation settings, and its own stem
    hm = TC.command("2st-heatmap", "448", threads=1)
    assert hm.count("--loc-lr-mult") == 1 and hm[hm.index("--loc-lr-mult") + 1] == "0.1"
    assert "--loc-head" in hm and hm[hm.index("--out") + 1] == "runs/cub/cub50_2st_448_heatmap"
    assert TC.with_overrides(["--a", "1", "--b", "2"], ["--b", "3", "--flag"]) == ["--a", "1", "--b", "3", "--flag"]


def test_cub_search_writes_a_report_of_what_is_there(tmp_path, monkeypatch):
    import cub_search as CS

    monkeypatch.setattr(CS, "OUT_DIR", tmp_path)
    meta = {"final": True, "test_error": 40.0, "steps": 150, "command": "python -m stn_core.train …",
            "test_set": {"size": 300}, "extra": {"eval_box_stats": {"centre_std": [[0.1, 0.2], [0.0, 0.05]],
                                                                    "centre_mean": [[-0.5, 0.0], [0.5, 0.0]]}}}
    CS.stem_of(10.0, "centre", "mlp").with_suffix(".json").write_text(json.dumps(meta))
    text = CS.report()
    assert "| 10 | centre | mlp | **60.00** | 0.100, 0.200; 0.000, 0.050 |" in text and "300 birds" in text
    assert "Chosen: loc lr × 10, centre start, mlp head" in text and text.count("not run") == len(CS.SETTINGS)  # + baseline - 1
    CS.stem_of(None, "baseline", None).with_suffix(".json").write_text(json.dumps({**meta, "test_error": 45.0}))
    Path(f"{CS.stem_of(0.1, 'tiled', 'heatmap')}.json").write_text(json.dumps({**meta, "test_error": 41.0}))
    text = CS.report()
    assert "| (baseline, no transformer) | baseline |  | **55.00** |" in text and "60.00 % vs 55.00 % (+5.00 points)" in text
    assert "| 0.1 | tiled | heatmap | **59.00** |" in text  # a stem with a dot in it is read


def test_the_v2_p_column_is_refused_until_its_new_generator_is_the_default(monkeypatch, capsys):
    from stn_core.data import distortions as D

    monkeypatch.setattr(D, "P_CONVEX", False)  # the old generator: σ = 5 px, non-convex quads kept
    monkeypatch.setattr(sys, "argv", ["train_table1.py", "--recipe", "v2", "--tasks", "p"])
    ran = []
    monkeypatch.setattr(T1, "run_queue", lambda jobs, *a, **k: ran.extend(stem.name for stem, _ in jobs))
    with pytest.raises(SystemExit):
        T1.main()
    assert "new P generator" in capsys.readouterr().err and not ran
    monkeypatch.setattr(D, "P_CONVEX", True)  # with the new one the same command queues the column
    T1.main()
    assert "mnist_p_st-cnn-aff" in ran and len(ran) == len(T1.MODELS)  # the 8 of Table 1 and the DCN


def test_skip_published_leaves_out_the_seeds_checkpoints_already_report_at_that_budget(tmp_path, monkeypatch,
                                                                                       capsys):
    def publish(name: str, seed: int, steps: int, others: dict | None = None) -> None:
        meta = {"final": True, "train_args": {"seed": seed, "steps": steps},
                **({"extra": {"seeds": {"errors": others}}} if others else {})}
        (tmp_path / f"{T1.stem_name('tc', name)}.json").write_text(json.dumps(meta))

    publish("cnn", 0, T1.V2_STEPS)                                  # seed 0 only
    publish("st-cnn-aff", 0, T1.V2_STEPS, {"0": 1.09, "1": 1.07})   # seeds 0 and 1
    publish("st-cnn-tps", 0, 3000, {"0": 1.5, "1": 1.4})            # another budget: reports nothing here
    assert T1.published_seeds("tc", "st-cnn-aff", T1.V2_STEPS, tmp_path) == {0, 1}
    assert T1.published_seeds("tc", "st-cnn-tps", T1.V2_STEPS, tmp_path) == set()
    assert T1.published_seeds("tc", "fcn", T1.V2_STEPS, tmp_path) == set()  # no checkpoint
    real = T1.published_seeds
    monkeypatch.setattr(T1, "published_seeds", lambda t, n, steps, folder=None: real(t, n, steps, tmp_path))
    ran = []
    monkeypatch.setattr(T1, "run_queue", lambda jobs, *a, **k: ran.extend(stem.name for stem, _ in jobs))
    argv = ["train_table1.py", "--recipe", "v2", "--tasks", "tc", "--models", "cnn", "st-cnn-aff", "st-cnn-tps",
            "--seeds", "0", "1", "2"]
    monkeypatch.setattr(sys, "argv", argv + ["--skip-published"])
    T1.main()
    assert sorted(ran) == sorted(["mnist_tc_cnn_s1", "mnist_tc_cnn_s2", "mnist_tc_st-cnn-aff_s2", "mnist_tc_st-cnn-tps",
                                  "mnist_tc_st-cnn-tps_s1", "mnist_tc_st-cnn-tps_s2"])
    assert "6 run(s) left to train" in capsys.readouterr().out
    ran.clear()
    monkeypatch.setattr(sys, "argv", argv)  # without the flag: every chosen seed of every cell
    T1.main()
    assert len(ran) == 9


# --------------------------------------------------------------------------- one process per checkpoint

def test_the_queue_and_the_trainer_agree_on_the_running_elsewhere_status():
    from stn_core.train import run_lock

    assert Q.IN_USE_EXIT == run_lock.IN_USE_EXIT


@pytest.mark.parametrize("parallel", [1, 2])
def test_the_queue_skips_a_run_another_process_is_training_and_goes_on(tmp_path, capsys, parallel):
    jobs = [_job(tmp_path / "busy", f"raise SystemExit({Q.IN_USE_EXIT})"), _job(tmp_path / "next", "print('fine')")]
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "busy.log").write_text("the other queue's run, still writing\n")
    Q.run_queue(jobs, None, parallel=parallel, log_dir=tmp_path / "logs")  # no CalledProcessError
    out = capsys.readouterr().out
    # its log (parallel mode) is appended to, never truncated: the other queue's lines stay
    assert (tmp_path / "logs" / "busy.log").read_text().startswith("the other queue's run, still writing\n")
    assert "running elsewhere (another process holds its lock): busy" in out
    assert "print('fine')" in out  # the next run's command line: it was started


def test_a_second_trainer_of_the_same_checkpoint_exits_with_the_in_use_status(tmp_path, capsys):
    import argparse

    from stn_core.train import run_lock
    from stn_core.train.loop import start_run

    meta = tmp_path / "run.json"
    holder = subprocess.Popen([sys.executable, "-c", (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\nfrom stn_core.train import run_lock\n"
        f"assert run_lock.hold(__import__('pathlib').Path({str(meta)!r}))\nprint('held', flush=True)\n"
        "sys.stdin.read()")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not run_lock.hold(meta)
        a = argparse.Namespace(device="cpu", batch=8, threads=1, precision="fp32", out=str(tmp_path / "run"))
        with pytest.raises(SystemExit) as e:
            start_run(a)
        assert e.value.code == run_lock.IN_USE_EXIT
        assert "another process is training" in capsys.readouterr().err
    finally:
        holder.communicate("")
    assert run_lock.hold(meta)  # released with its process: this one takes it now
    assert run_lock.hold(meta)  # and taking it again in the same process is a no-op
    run_lock.release(meta)
    assert str(tmp_path) not in str(run_lock.lock_path(meta).parent)  # nothing is left beside the checkpoint
