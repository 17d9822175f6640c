"""scripts/device_tree.py: what travels to a device machine, and hiding the weights from it for a while."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.script_util import load_script

dt = load_script("device_tree")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repo with a committed 3 KiB weights file, a small source file, an ignored run and an untracked note."""
    r = tmp_path / "repo"
    (r / "checkpoints").mkdir(parents=True)
    (r / "checkpoints" / "m.safetensors").write_bytes(b"w" * 3072)
    (r / "checkpoints" / "m.json").write_text("{}")
    (r / "lib.py").write_text("x = 1\n")
    (r / ".gitignore").write_text("/runs/\n")
    _git(r, "init", "-q")
    _git(r, "-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    _git(r, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "init")
    (r / "runs").mkdir()
    (r / "runs" / "big.bin").write_bytes(b"r" * 10000)
    (r / "note.md").write_text("untracked, not ignored\n")
    return r


def test_travelling_files_are_tracked_plus_untracked_not_ignored(repo):
    files = dt.travelling_files(repo)
    assert "runs/big.bin" not in files  # ignored: travels only when carried
    assert {"checkpoints/m.safetensors", "checkpoints/m.json", "lib.py", "note.md", ".gitignore"} <= set(files)
    total, top = dt.size_report(repo)
    assert total == sum((repo / f).stat().st_size for f in files)
    assert top[0] == ("checkpoints", 3072 + 2)


def test_hide_untracks_and_ignores_the_weights_and_restore_brings_them_back(repo):
    before = _git(repo, "ls-files")
    hidden = dt.hide(repo, ["checkpoints/*.safetensors"])
    assert hidden == ["checkpoints/m.safetensors"]
    assert (repo / "checkpoints" / "m.safetensors").read_bytes() == b"w" * 3072  # still on disk, untouched
    assert "checkpoints/m.safetensors" not in dt.travelling_files(repo)
    assert "checkpoints/m.json" in dt.travelling_files(repo)
    status = _git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert "D  checkpoints/m.safetensors" in status  # a staged removal until --restore ...
    assert "?? checkpoints/m.safetensors" not in status  # ... never an untracked file
    assert dt.hidden_patterns(repo) == ["checkpoints/*.safetensors"]
    assert dt.restore(repo) == ["checkpoints/*.safetensors"]
    assert _git(repo, "ls-files") == before
    assert _git(repo, "status", "--porcelain") == "?? note.md\n"
    assert dt.hidden_patterns(repo) == []
    assert dt.restore(repo) == []  # nothing hidden: a no-op


def test_hide_refuses_staged_changes_and_unmatched_patterns(repo):
    (repo / "checkpoints" / "m.safetensors").write_bytes(b"new")
    _git(repo, "add", "checkpoints/m.safetensors")
    with pytest.raises(ValueError, match="staged changes"):
        dt.hide(repo, ["checkpoints/*.safetensors"])
    assert dt.hidden_patterns(repo) == []  # nothing written when refused
    with pytest.raises(ValueError, match="no tracked file matches"):
        dt.hide(repo, ["nothing/*.bin"])


def test_the_exclude_block_keeps_the_users_own_lines(repo):
    exclude = repo / ".git" / "info" / "exclude"
    exclude.write_text("/.whl/\n")
    dt.hide(repo, ["checkpoints/*.safetensors"])
    assert exclude.read_text().startswith("/.whl/\n" + dt.BEGIN)
    dt.restore(repo)
    assert exclude.read_text() == "/.whl/\n"
