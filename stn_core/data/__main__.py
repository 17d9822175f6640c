"""Command line: import datasets into the STN Lab cache.

    python -m stn_core.data mnist [--from PATH_OR_URL] [--dest DIR]
    python -m stn_core.data cub --from PATH [--dest DIR] [--classes 1-50]

DIR is the data folder (default $STN_LAB_DATA or <repo>/data/cache); files go to DIR/mnist
and DIR/cub. Errors print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .common import DataError, default_data_dir
from .cub import import_cub, load_cub, parse_classes
from .mnist import DEFAULT_MIRROR, import_mnist, load_mnist


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m stn_core.data",
        description="Import MNIST / CUB-200-2011 into the STN Lab data folder.",
    )
    sub = ap.add_subparsers(dest="dataset", required=True, metavar="{mnist,cub}")
    m = sub.add_parser("mnist", help="copy or download the 4 official MNIST idx .gz files (md5-checked)")
    m.add_argument(
        "--from",
        dest="src",
        default=None,
        help=f"local folder with the files, or an http(s)/file base URL (default: {DEFAULT_MIRROR}, then a fallback mirror)",
    )
    m.add_argument("--dest", default=None, help=f"data folder (default: {default_data_dir()}); files go to DEST/mnist")
    m.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds (default 30)")
    c = sub.add_parser("cub", help="import CUB-200-2011 from CUB_200_2011.tgz or an extracted folder")
    c.add_argument("--from", dest="src", required=True, help="CUB_200_2011.tgz, a CUB_200_2011/ folder, or a downscaled copy")
    c.add_argument("--dest", default=None, help=f"data folder (default: {default_data_dir()}); files go to DEST/cub")
    c.add_argument("--classes", default=None, help="class ids to import, e.g. 1-50 or 1-10,17 (default: all)")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.dataset == "mnist":
            out = import_mnist(args.src, args.dest, progress=_say, timeout=args.timeout)
            tr, _ = load_mnist("train", root=out)
            te, _ = load_mnist("test", root=out)
            print(f"MNIST ready in {out}: {len(tr)} train + {len(te)} test images (md5 verified)")
        else:
            classes = parse_classes(args.classes) if args.classes else None
            out = import_cub(args.src, args.dest, classes=classes, progress=_say)
            recs = load_cub(out)
            n_cls = len({r.class_id for r in recs})
            n_tr = sum(r.is_train for r in recs)
            print(f"CUB-200-2011 ready in {out}: {len(recs)} images of {n_cls} classes ({n_tr} train, {len(recs) - n_tr} test)")
    except (DataError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
