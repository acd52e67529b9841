"""Where a number came from: versions, git commit, hardware, date."""
from __future__ import annotations

import functools
import os
import platform
import subprocess
import time
from pathlib import Path

import torch


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the xbench checkout (with '+dirty' for local changes), or 'unknown'."""
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return "unknown"
        commit = out.stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return commit + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    import timm

    import xbench

    return {"xbench": xbench.__version__, "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version()}


def hardware(device: torch.device | str | None = None) -> dict[str, str | int]:
    d = torch.device(device) if device is not None else torch.device("cpu")
    info: dict[str, str | int] = {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count() or 0,
                                  "platform": platform.platform(), "device": str(d)}
    if d.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(d)
    return info


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
