"""Progress bars for every loop a person waits for; `--quiet` turns them off."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

from tqdm import tqdm

_QUIET = False


def set_quiet(quiet: bool) -> None:
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    return _QUIET or os.environ.get("XBENCH_QUIET") == "1"


@contextmanager
def progress(total: int | None = None, desc: str = "", enabled: bool = True, unit: str = "it") -> Iterator[tqdm]:
    bar = tqdm(total=total, desc=desc, unit=unit, disable=is_quiet() or not enabled, file=sys.stderr,
               dynamic_ncols=True, leave=False, mininterval=0.5)
    try:
        yield bar
    finally:
        bar.close()


def say(msg: str) -> None:
    """A status line on stderr (silenced by --quiet)."""
    if not is_quiet():
        print(msg, file=sys.stderr, flush=True)


def notice(msg: str) -> None:
    """A line on stderr that --quiet does not silence (a result is being recomputed, data re-extracted)."""
    print(msg, file=sys.stderr, flush=True)
