"""The `xbench` command line.

Each sub-command lives in its own module with `add_parser(subparsers)` and a
`run(args) -> int`; errors a user can cause end in one line and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from ..errors import UserError

COMMANDS = ["run", "extract", "ls", "leaderboard", "cache", "data", "explain", "predict"]


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (naming the argument and value) instead of the usage block; sub-command
    parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = _Parser(prog="xbench", description="Benchmark self-explainable image classifiers on frozen "
                                "vision foundation models: accuracy and explanation quality, measured the same way.")
    p.add_argument("--version", action="version", version=f"xbench {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"xbench.cli.{name}_cmd")
        except ModuleNotFoundError as err:
            if err.name == f"xbench.cli.{name}_cmd":
                continue  # command not built in this version
            raise
        mod.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from ..memory import bound_heap

    bound_heap()  # freed batch buffers go back to the system (see xbench/memory.py)
    if not argv:
        argv = ["run"]  # `xbench` alone is the quickstart
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"xbench: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("xbench: interrupted; completed jobs and cache chunks are kept, rerun to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
