"""Intermediate models shared between jobs of one results folder (e.g. DINO-QPM's dense stage).

Several methods can start from the same trained intermediate model: DINO-QPM,
DINO-SLDD and DINO-QSENN all begin with the same dense stage (per-patch MLP +
dense linear layer) on the same cached tokens. The first job that needs it
trains it and stores it here; every later job with the same key loads it
instead of training it again.

Layout (inside the results folder):

    shared/<kind>/<key>/state.safetensors   the tensors (never pickle)
    shared/<kind>/<key>/meta.json           the key's full description + whatever the producer logged
    shared/<kind>/<key>.lock                held while the entry is produced or read

`key` = the first 16 hex digits of sha256(canonical(description)), where the
description holds everything that changes the model (the data key of the job
without its method and method parameters, the seed, the stage's own
configuration). Both files are written atomically, `meta.json` last, so an
entry exists exactly when its `meta.json` does; a half-written entry (killed
producer) is trained again.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from filelock import FileLock

from .atomic import atomic_save, atomic_write_json
from .cache import canonical

__all__ = ["SharedStore", "SharedEntry", "data_key"]


def digest(description: dict) -> str:
    return hashlib.sha256(canonical(description).encode()).hexdigest()[:16]


def data_key(identity: dict) -> dict:
    """What a job's identity says about its data and backbone (method, parameters, metrics and seed removed)."""
    return {k: v for k, v in identity.items() if k not in ("method", "params", "metric_options", "seed", "metrics")}


@dataclass
class SharedEntry:
    folder: Path
    description: dict

    @property
    def key(self) -> str:
        return self.folder.name

    def exists(self) -> bool:
        return (self.folder / "meta.json").exists() and (self.folder / "state.safetensors").exists()

    def save(self, state: dict[str, torch.Tensor], meta: dict) -> None:
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        atomic_save(self.folder / "state.safetensors", lambda p: save_file(tensors, p))
        atomic_write_json(self.folder / "meta.json", {"description": self.description, **meta})

    def load(self) -> tuple[dict[str, torch.Tensor], dict]:
        from safetensors.torch import load_file

        meta = json.loads((self.folder / "meta.json").read_text())
        return load_file(str(self.folder / "state.safetensors")), meta


class SharedStore:
    """`RESULTS/shared/`: one entry per (kind, description)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def entry(self, kind: str, description: dict) -> SharedEntry:
        return SharedEntry(self.root / kind / digest(description), description)

    @contextmanager
    def locked(self, entry: SharedEntry) -> Iterator[SharedEntry]:
        """Hold the entry's lock (other processes producing the same entry wait here)."""
        entry.folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(entry.folder) + ".lock"):
            yield entry

    def __repr__(self) -> str:
        return f"SharedStore({str(self.root)!r})"


def describe(obj: Any) -> Any:
    """JSON-able copy (tuples as lists) so that a description and its reloaded meta compare equal."""
    return json.loads(canonical(obj))
