"""`xbench leaderboard`: build tables from the results store alone."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="build leaderboards from a results folder")
    p.add_argument("--results", default="xbench-results", help="results folder (default ./xbench-results)")
    p.add_argument("--out", help="write the files here (default: print Markdown)")
    p.add_argument("--formats", default="md,json", help="comma-separated: md,json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError, ResultsError
    from ..leaderboard.build import write_leaderboard
    from ..results import ResultsStore

    store = ResultsStore(Path(args.results))
    if not store.records_dir.is_dir():
        raise ResultsError(f"no results in {args.results}: run `xbench run --results {args.results}` first")
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if args.out is None:
        from ..leaderboard.markdown import render_markdown
        from ..leaderboard.tables import build_tables

        print(render_markdown(build_tables(store.records())))
        return 0
    written = write_leaderboard(store, Path(args.out), formats)
    for p in written:
        print(p, file=sys.stderr)
    return 0
