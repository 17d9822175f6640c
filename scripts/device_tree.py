"""What of this checkout would travel to a lent GPU machine, and how to bring it under the limit.

    python scripts/device_tree.py                      # size of what travels, biggest folders, verdict
    python scripts/device_tree.py --hide               # untrack + ignore checkpoints/*.safetensors for now
    python scripts/device_tree.py --hide 'results/screenshots/*.png' 'checkpoints/*.safetensors'
    python scripts/device_tree.py --restore            # track them again (index back to HEAD)

The device machine gets a copy of the working tree: the files git tracks, the untracked ones git does
not ignore, and the ignored paths a call names in ``carry``; at most 64 MiB in all. The shipped
checkpoints alone are far more than that, so a GPU session hides them before its first call and
restores them after its last: ``--hide`` removes the matching files from git's index (``git rm
--cached``; the files stay on disk, untouched) and ignores them in ``.git/info/exclude`` inside a marked
block, so they neither travel nor show as untracked; ``--restore`` resets those paths' index entries to
HEAD and removes the block. The GPU work itself needs none of the weights (it trains new ones; the
checkpoints' JSONs, which the results scripts read, stay tracked), and one that does can travel by naming
its path in ``carry``. Nothing is committed while they are hidden: ``--hide`` refuses when a matching
path has staged changes, and a commit made in between would record the weights as deleted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The device tool's limit on what travels (its README: "the working tree that travels ... 64 MiB").
LIMIT_BYTES = 64 << 20
DEFAULT_HIDE = ("checkpoints/*.safetensors",)
BEGIN, END = "# >>> hidden for a device call (scripts/device_tree.py)", "# <<< hidden for a device call"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def travelling_files(repo: Path) -> list[str]:
    """Paths (relative to ``repo``) that a device call copies: tracked files present in the working tree
    and untracked files git does not ignore, plus a ``shared/`` folder inside the checkout."""
    names = [n for n in _git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0") if n]
    shared = repo / "shared"
    if shared.is_dir():
        names += [str(p.relative_to(repo)) for p in shared.rglob("*") if p.is_file()]
    return sorted({n for n in names if (repo / n).is_file()})


def size_report(repo: Path, top: int = 8) -> tuple[int, list[tuple[str, int]]]:
    """(total bytes that travel, the ``top`` biggest first-level folders as (name, bytes))."""
    by_dir: Counter[str] = Counter()
    total = 0
    for name in travelling_files(repo):
        n = (repo / name).stat().st_size
        total += n
        by_dir[name.split("/", 1)[0] if "/" in name else "."] += n
    return total, by_dir.most_common(top)


def _exclude_file(repo: Path) -> Path:
    """``.git/info/exclude`` of ``repo`` (git prints it relative to the repo unless it lies elsewhere)."""
    return repo / _git(repo, "rev-parse", "--git-path", "info/exclude").strip()


def hidden_patterns(repo: Path) -> list[str]:
    """The patterns of the marked block in ``.git/info/exclude`` (empty when nothing is hidden)."""
    path = _exclude_file(repo)
    lines = path.read_text().splitlines() if path.exists() else []
    if BEGIN not in lines:
        return []
    i = lines.index(BEGIN)
    j = lines.index(END, i) if END in lines[i:] else len(lines)
    return [ln for ln in lines[i + 1:j] if ln.strip()]


def _write_block(repo: Path, patterns: list[str]) -> None:
    path = _exclude_file(repo)
    lines = path.read_text().splitlines() if path.exists() else []
    if BEGIN in lines:
        i = lines.index(BEGIN)
        j = lines.index(END, i) + 1 if END in lines[i:] else len(lines)
        del lines[i:j]
    if patterns:
        lines += [BEGIN, *patterns, END]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + ("\n" if lines else ""))
    tmp.replace(path)


def hide(repo: Path, patterns: list[str]) -> list[str]:
    """Untrack and ignore the tracked files matching ``patterns`` (git pathspecs, relative to the repo root);
    returns the paths hidden. Raises ValueError when one of them has staged changes or nothing matches."""
    pathspecs = [f":(glob){p}" for p in patterns]
    matched = [n for n in _git(repo, "ls-files", "-z", "--", *pathspecs).split("\0") if n]
    if not matched:
        raise ValueError(f"no tracked file matches {' '.join(patterns)}")
    staged = [n for n in _git(repo, "diff", "--cached", "--name-only", "-z", "--", *pathspecs).split("\0") if n]
    if staged:
        raise ValueError(f"staged changes in {len(staged)} matching file(s) (e.g. {staged[0]}): commit or unstage "
                         "them first; hiding would drop them from the index")
    _write_block(repo, sorted(set(hidden_patterns(repo)) | set(patterns)))
    _git(repo, "rm", "-q", "-r", "--cached", "--", *pathspecs)
    return matched


def restore(repo: Path) -> list[str]:
    """Track the hidden files again (their index entries reset to HEAD) and drop the exclude block;
    returns the patterns restored (empty when nothing was hidden)."""
    patterns = hidden_patterns(repo)
    if patterns:
        _git(repo, "reset", "-q", "HEAD", "--", *[f":(glob){p}" for p in patterns])
    _write_block(repo, [])
    return patterns


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--hide", nargs="*", metavar="GLOB",
                   help=f"untrack + ignore these tracked files until --restore (default: {' '.join(DEFAULT_HIDE)})")
    g.add_argument("--restore", action="store_true", help="track the hidden files again")
    a = ap.parse_args(argv)
    if a.restore:
        done = restore(ROOT)
        print("restored: " + (" ".join(done) if done else "nothing was hidden"))
    elif a.hide is not None:
        try:
            files = hide(ROOT, list(a.hide) or list(DEFAULT_HIDE))
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"hidden (untracked + ignored, still on disk): {len(files)} files; "
              "run `python scripts/device_tree.py --restore` after the last device call, before any commit")
    total, top = size_report(ROOT)
    print(f"travels to a device machine: {_mib(total)} of at most {_mib(LIMIT_BYTES)} "
          f"({'fits' if total <= LIMIT_BYTES else 'TOO BIG: a call would be refused'})")
    for name, n in top:
        print(f"  {_mib(n):>10}  {name}")
    hidden = hidden_patterns(ROOT)
    if hidden:
        print("hidden now: " + " ".join(hidden))
    return 0 if total <= LIMIT_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
