"""Promoting finished Table 1 v2 runs: weights and JSON copied, the other seeds' numbers added, the
optimiser state and unfinished cells left behind, and the copy loads."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

import promote_table1_v2 as P  # noqa: E402
from tiny_checkpoints import make_tiny_checkpoint  # noqa: E402

from stn_core.checkpoints import load_model  # noqa: E402


def _seeded(src: Path, dist: str, key: str, seed: int, error: float, final: bool = True) -> None:
    tmp = src / f"seed{seed}"
    make_tiny_checkpoint(tmp, dist, key, seed=seed, test_error=error, final=final)
    for f in tmp.iterdir():
        stem = f"mnist_{dist}_{key}" + (f"_s{seed}" if seed else "")
        f.rename(src / (stem + "".join(f.suffixes)))
    tmp.rmdir()


def test_a_finished_cell_is_promoted_with_its_seeds_and_loads(tmp_path, capsys):
    src, dst = tmp_path / "v2", tmp_path / "ckpt"
    src.mkdir()
    for seed, err in ((0, 1.0), (1, 2.0), (2, 3.0)):
        _seeded(src, "rts", "cnn", seed, err)
    _seeded(src, "r", "fcn", 0, 9.0, final=False)
    (src / "mnist_rts_cnn.train.safetensors").write_bytes(b"optimiser state")
    P.main(["--from", str(src), "--to", str(dst)])
    said = capsys.readouterr().out
    assert "not final yet: mnist_r_fcn" in said and f"nothing staged for mnist_p_cnn in {src}" in said
    meta = json.loads((dst / "mnist_rts_cnn.json").read_text())
    seeds = meta["extra"]["seeds"]
    assert seeds["errors"] == {"0": 1.0, "1": 2.0, "2": 3.0}
    assert seeds["mean"] == 2.0 and seeds["std"] == pytest.approx(1.0)
    assert not (dst / "mnist_rts_cnn.train.safetensors").exists()
    assert not (dst / "mnist_r_fcn.json").exists()  # not final: left in staging
    model, loaded = load_model(dst / "mnist_rts_cnn")
    assert loaded["test_error"] == 1.0


def test_a_dry_run_writes_nothing(tmp_path, capsys):
    src, dst = tmp_path / "v2", tmp_path / "ckpt"
    src.mkdir()
    _seeded(src, "e", "st-cnn-aff", 0, 1.5)
    P.main(["--from", str(src), "--to", str(dst), "--dry-run"])
    assert "would promote mnist_e_st-cnn-aff" in capsys.readouterr().out
    assert not dst.exists()


def test_tasks_limits_the_promotion_to_those_columns(tmp_path):
    src, dst = tmp_path / "v2", tmp_path / "ckpt"
    src.mkdir()
    _seeded(src, "rts", "cnn", 0, 1.0)
    _seeded(src, "p", "fcn", 0, 3.0)  # e.g. trained on a generator that lands later
    P.main(["--from", str(src), "--to", str(dst), "--tasks", "rts"])
    assert (dst / "mnist_rts_cnn.json").exists() and not (dst / "mnist_p_fcn.json").exists()


def test_seeds_of_a_cell_promoted_earlier_are_added_to_its_json(tmp_path):
    src, dst = tmp_path / "v2", tmp_path / "ckpt"
    src.mkdir()
    _seeded(src, "rts", "fcn", 0, 7.0)
    P.main(["--from", str(src), "--to", str(dst)])
    for f in src.glob("mnist_rts_fcn.*"):  # a later session: seed 0 is no longer staged
        f.unlink()
    _seeded(src, "rts", "fcn", 1, 8.0)
    _seeded(src, "rts", "fcn", 2, 9.0, final=False)  # unfinished: left out
    weights = (dst / "mnist_rts_fcn.safetensors").read_bytes()
    P.main(["--from", str(src), "--to", str(dst)])
    meta = json.loads((dst / "mnist_rts_fcn.json").read_text())
    assert meta["extra"]["seeds"]["errors"] == {"0": 7.0, "1": 8.0} and meta["test_error"] == 7.0
    assert (dst / "mnist_rts_fcn.safetensors").read_bytes() == weights
    load_model(dst / "mnist_rts_fcn")
