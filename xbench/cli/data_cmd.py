"""`xbench data fetch|check|export`: get datasets in place, validate them, export synthbirds.

* `xbench data fetch NAME`: CUB (+ segmentations), Pets and FunnyBirds are
  downloaded (progress bar, resumable), verified against their pinned sha256
  and extracted safely under the data root; exit 0 when the data is in place.
  FunnyBirds has no published sha256: the first run prints the computed hash
  and exits 1 with the file kept unverified; rerun with `--sha256 HASH`.
  Cars and RSNA are account-gated: the command prints exactly what to download
  and where to put it, and exits 1 (nothing was fetched) unless the data is
  already in place (exit 0).
* `xbench data check NAME`: one line per missing, unreadable or inconsistent
  file and exit 1; on a good layout, counts per split and exit 0.
  `--quick` skips decoding every image (the runner's pre-flight check).
* `xbench data export synthbirds --format funnybirds --out DIR`: write the
  built-in dataset in the official FunnyBirds layout.
"""
from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="fetch, check or export datasets",
                       description="Get datasets in place (fetch), validate them (check), export synthbirds (export).")
    acts = p.add_subparsers(dest="data_action", metavar="ACTION")

    f = acts.add_parser("fetch", help="download, verify and extract a dataset (or say where to get it)")
    f.add_argument("name", help="cub, pets, funnybirds (downloaded); cars, rsna (instructions)")
    f.add_argument("--data-root", help="dataset root (default: $XBENCH_DATA or ~/.cache/xbench/data)")
    f.add_argument("--mirror", help="fetch every archive from MIRROR/<file name> (default: $XBENCH_MIRROR or the "
                   "official addresses)")
    f.add_argument("--sha256", action="append", metavar="[FILE=]HEX",
                   help="expected sha256 (needed for FunnyBirds; FILE= picks the archive); repeatable")
    f.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives after extraction")
    f.add_argument("--force", action="store_true", help="download and extract again even if the data is in place")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.set_defaults(func=run_fetch)

    c = acts.add_parser("check", help="validate a dataset's files; list every problem")
    c.add_argument("name", help="a dataset name, or folder:PATH for your own images")
    c.add_argument("--data-root", help="dataset root (default: $XBENCH_DATA or ~/.cache/xbench/data)")
    c.add_argument("--quick", action="store_true", help="check the layout only; do not decode every image")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.set_defaults(func=run_check)

    e = acts.add_parser("export", help="export synthbirds in the official FunnyBirds layout")
    e.add_argument("name", choices=["synthbirds"])
    e.add_argument("--format", required=True, choices=["funnybirds"])
    e.add_argument("--out", required=True, help="new (or empty) folder to write, e.g. DATA_ROOT/FunnyBirds")
    e.add_argument("--train-per-class", type=int, help="training images per class (default: synthbirds' 40)")
    e.add_argument("--test-per-class", type=int, help="test images per class (default: synthbirds' 10)")
    e.add_argument("--num-classes", type=int, default=50, help="number of classes (default 50)")
    e.add_argument("--seed", type=int, default=0, help="image stream seed (default 0)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=run_export)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _quiet(args: argparse.Namespace) -> None:
    from ..progress import set_quiet

    set_quiet(bool(getattr(args, "quiet", False)))


def _build(name: str, data_root_arg: str | None):
    from ..data.roots import data_root
    from ..data.userfolder import parse_dataset_arg
    from ..registry import DATASETS

    name, options = parse_dataset_arg(name)  # `folder:PATH`: your own images
    entry = DATASETS.get(name)
    if getattr(entry.spec, "builtin", False):
        return entry.obj()
    return entry.obj(root=data_root(data_root_arg), **options)


def _in_place(name: str, data_root_arg: str | None) -> bool:
    """Whether the dataset's folder is there and passes the quick check."""
    from ..data.check import check_dataset
    from ..errors import DataError

    try:
        ds = _build(name, data_root_arg)
        return not check_dataset(ds, deep=False, show=False)
    except DataError:
        return False


def run_fetch(args: argparse.Namespace) -> int:
    from ..data.check import check_dataset, summary
    from ..data.fetch import fetch_dataset, parse_sha256_overrides
    from ..data.roots import data_root
    from ..data.sources import SOURCES
    from ..errors import ConfigError
    from ..registry import DATASETS

    _quiet(args)
    DATASETS.get(args.name)  # unknown names: one line with the valid ones
    src = SOURCES.get(args.name)
    root = data_root(args.data_root)
    if src is None:
        if getattr(DATASETS.get(args.name).spec, "builtin", False):
            print(f"{args.name} is built in: nothing to fetch")
            return 0
        raise ConfigError(f"dataset {args.name!r} has no known source; put its files under {root} yourself")
    folder = root / src.folder
    if not src.fetchable:
        if _in_place(args.name, args.data_root):
            print(f"{args.name}: already in place in {folder}")
            return 0
        root_opt = f" --data-root {root}" if args.data_root else ""
        print(f"{args.name} cannot be downloaded automatically; put it in {folder}:")
        for step in src.manual:
            print("  " + step.format(folder=folder, root_opt=root_opt))
        print(f"xbench: {args.name} was not fetched (account-gated); follow the steps above", file=sys.stderr)
        return 1
    if not args.force and _in_place(args.name, args.data_root):
        print(f"{args.name}: already in place in {folder} (use --force to download again)")
        return 0
    overrides = parse_sha256_overrides(args.sha256, src)
    res = fetch_dataset(args.name, root, mirror=args.mirror, sha256=overrides, keep_archives=args.keep_archives,
                        force=args.force, show=not args.quiet)
    if res.unverified:
        for file, path, digest in res.unverified:
            print(f"{file}: no published sha256 is known; the download is kept unverified as {path}")
            print(f"  its sha256 is {digest}")
            print(f"  compare it with a source you trust, then extract it with: xbench data fetch {args.name} "
                  f"--data-root {root} --sha256 {file}={digest}")
        print(f"xbench: {args.name} was downloaded but not extracted (unverified sha256)", file=sys.stderr)
        return 1
    ds = _build(args.name, args.data_root)
    problems = check_dataset(ds, deep=False, show=not args.quiet)
    if problems:
        for line in problems:
            print(line)
        print(f"xbench: {args.name} was extracted to {folder}, but {len(problems)} problem(s) remain", file=sys.stderr)
        return 1
    print(f"{args.name}: ready in {folder}")
    for line in summary(ds):
        print(f"  {line}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from ..data.check import check_dataset, summary

    _quiet(args)
    ds = _build(args.name, args.data_root)
    problems = check_dataset(ds, deep=not args.quick, show=not args.quiet)
    where = getattr(ds, "base", None) or "built in"
    if problems:
        for line in problems:
            print(line)
        print(f"xbench: {len(problems)} problem(s) in {args.name} ({where}); fix them or fetch the data again",
              file=sys.stderr)
        return 1
    print(f"{args.name}: OK ({where})")
    for line in summary(ds):
        print(f"  {line}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ..data.synthbirds import SynthBirds, export_funnybirds
    from ..errors import ConfigError

    _quiet(args)
    try:
        ds = SynthBirds(num_classes=args.num_classes, seed=args.seed)
    except TypeError as err:  # pragma: no cover - argparse gives ints
        raise ConfigError(f"bad synthbirds option: {err}") from None
    out = export_funnybirds(ds, args.out, train_per_class=args.train_per_class, test_per_class=args.test_per_class,
                            progress=not args.quiet)
    hint = (f"; evaluate on it with --datasets funnybirds --data-root {out.parent}" if out.name == "FunnyBirds"
            else f"; to evaluate on it, name the folder FunnyBirds (xbench looks for DATA_ROOT/FunnyBirds)")
    print(f"wrote synthbirds in the FunnyBirds layout to {out}{hint}")
    return 0
