"""Where datasets live: `--data-root`, else `$XBENCH_DATA`, else a per-user cache folder."""
from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "xbench"


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data root: the explicit option, else XBENCH_DATA, else ~/.cache/xbench/data."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("XBENCH_DATA")
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "data"


def cache_root(explicit: str | os.PathLike | None = None) -> Path:
    """The feature cache: the explicit option, else XBENCH_CACHE, else ~/.cache/xbench/features."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("XBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "features"
