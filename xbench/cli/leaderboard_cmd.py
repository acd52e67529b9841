"""`xbench leaderboard`: build leaderboards from the results store alone."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="build leaderboards (tables, plots, galleries, provenance) from results",
                       description="Build leaderboards from a results folder: per dataset and overall tables "
                       "(mean ± std over seeds, best marked, n/a where a metric does not apply), published numbers "
                       "beside xbench's, plots, explanation galleries, provenance and BibTeX. Without --out, print "
                       "the Markdown tables.")
    p.add_argument("--results", default="xbench-results", help="results folder (default ./xbench-results)")
    p.add_argument("--out", help="write the leaderboard folder here (default: print Markdown tables)")
    p.add_argument("--formats", default="md,tex,csv,json,html",
                   help="comma-separated subset of md,tex,csv,json,html (default: all)")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--gallery", type=int, default=3, metavar="N",
                   help="test images per method in the explanation gallery (0: none; default 3)")
    p.add_argument("--cache", help="feature cache for the galleries' training patches (default: $XBENCH_CACHE or "
                   "~/.cache/xbench/features)")
    p.add_argument("--data-root", help="dataset root for the galleries (default: $XBENCH_DATA or ~/.cache/xbench/data)")
    p.add_argument("--device", default="cpu", help="device for the galleries' explanations (default cpu)")
    p.add_argument("--published", help="CSV of published numbers to use instead of the packaged one "
                   "(columns as xbench/resources/published.csv)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ResultsError
    from ..leaderboard.build import parse_formats, write_leaderboard
    from ..results import ResultsStore

    store = ResultsStore(Path(args.results))
    if not store.records_dir.is_dir():
        raise ResultsError(f"no results in {args.results}: run `xbench run --results {args.results}` first")
    formats = parse_formats(args.formats)
    if args.out is None:
        from ..leaderboard.markdown import render_markdown
        from ..leaderboard.published import load_published
        from ..leaderboard.tables import build_tables

        published = load_published(Path(args.published) if args.published else None)
        print(render_markdown(build_tables(store.records(), published)))
        return 0
    gallery = None
    if args.gallery > 0:
        from ..leaderboard.gallery import make_gallery

        gallery = make_gallery(store, per_method=args.gallery, device=args.device, cache=args.cache,
                               data_root=args.data_root)
    written = write_leaderboard(store, Path(args.out), formats, plots=not args.no_plots, gallery=gallery,
                                published_path=Path(args.published) if args.published else None)
    for p in written:
        print(p, file=sys.stderr)
    return 0
