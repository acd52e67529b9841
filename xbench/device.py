"""Device resolution and seeding: the two process-wide settings every job starts from.

`resolve_device("auto" | "cpu" | "cuda[:N]" | "mps")` picks the torch device (auto: CUDA, else MPS, else
CPU) or says in one line why the asked-for one is not there; `seed_everything(seed)` seeds python,
numpy and torch before a job trains and before it is scored (every other generator derives from
the job's seed).
"""
from __future__ import annotations

import random

import numpy as np
import torch

from .errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is visible; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ConfigError("--device mps: no Apple GPU (MPS) is available; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


__all__ = ["resolve_device", "seed_everything"]
