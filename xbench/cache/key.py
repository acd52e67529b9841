"""What identifies a cache entry: the inputs its tokens depend on, and nothing else."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

FORMAT_VERSION = 1
ARRAYS = ("patch", "cls", "reg")

#: token precisions an entry can hold (`CacheKey.dtype`)
DTYPES = {"float16": np.float16, "float32": np.float32}


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class CacheKey:
    backbone: str
    weights_hash: str
    image_size: int
    dataset: dict
    split: str
    view: str
    dtype: str = "float16"    # token precision on disk; float16 entries keep the digest they always had
    preprocessing: dict | None = None   # Preprocessing.cache_key(): None for the original rule (same digest)

    def inputs(self) -> dict[str, Any]:
        out = {"format": FORMAT_VERSION, "backbone": self.backbone, "weights_hash": self.weights_hash,
               "image_size": self.image_size, "dataset": self.dataset, "split": self.split, "view": self.view}
        if self.dtype != "float16":
            out["dtype"] = self.dtype
        if self.preprocessing is not None:
            out["preprocessing"] = self.preprocessing
        return out

    @property
    def digest(self) -> str:
        return hashlib.sha256(canonical(self.inputs()).encode()).hexdigest()[:24]
