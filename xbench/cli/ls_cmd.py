"""`xbench ls [methods|metrics|datasets|backbones]`: what is registered, one line each."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="list registered methods, metrics, datasets or backbones")
    p.add_argument("kind", nargs="?", choices=["methods", "metrics", "datasets", "backbones"],
                   help="what to list (default: everything)")
    p.add_argument("--include", action="append", metavar="PATH.py", help="import a plugin file first")
    p.set_defaults(func=run)


def describe(kind: str, e) -> str:
    s = e.spec
    if kind == "methods":
        extra = f"provides {','.join(sorted(s.provides))}"
    elif kind == "metrics":
        needs = sorted((s.needs_method - {"logits"}) | s.needs_data)
        extra = f"{s.category}, {s.direction} is better" + (f", needs {','.join(needs)}" if needs else "")
    elif kind == "datasets":
        extra = ("built in" if s.builtin else f"folder {s.folder}") + (
            f", annotations {','.join(sorted(s.annotations))}" if s.annotations else "")
    else:
        extra = s.family
    src = "" if e.source.startswith("xbench.") else f" [{e.source}]"
    return f"  {e.name:<32} {s.description} ({extra}){src}"


def run(args: argparse.Namespace) -> int:
    from ..registry import REGISTRIES, include

    for path in args.include or []:
        include(path)
    kinds = [args.kind] if args.kind else ["methods", "metrics", "datasets", "backbones"]
    for kind in kinds:
        print(f"{kind}:")
        for e in REGISTRIES[kind].entries():
            print(describe(kind, e))
    return 0
