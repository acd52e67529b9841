"""The view interface and the shared image preprocessing."""
from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.base import Split
from ..preprocessing import Preprocessing


def preprocess(img: Image.Image | np.ndarray, pre: Preprocessing) -> torch.Tensor:
    """RGB image -> normalised float tensor [3, size, size] by the backbone's rule `pre`.

    The whole image is resized to size x size (with the backbone's interpolation:
    bicubic or bilinear, from its timm pretrained config; antialiased), without a
    centre crop, so that masks, part maps and keypoints map onto the token grid
    by the same scaling (documented choice: full image, aspect not preserved).
    See `xbench.preprocessing`.
    """
    return pre(img)


@dataclass
class ViewIndex:
    """The items of a view: how many, which base image each comes from, and per-item metadata."""

    base: np.ndarray                       # int64 [M]: index into the split
    meta: dict[str, np.ndarray] = field(default_factory=dict)  # per-item arrays, saved beside the tokens

    def __len__(self) -> int:
        return int(self.base.shape[0])


class View(abc.ABC):
    """A deterministic list of images derived from a split."""

    kind: str = "?"

    def params(self) -> dict[str, Any]:
        """Everything that changes the images; enters the cache key."""
        return {}

    @property
    def key(self) -> str:
        p = self.params()
        return self.kind if not p else f"{self.kind}:" + json.dumps(p, sort_keys=True, separators=(",", ":"))

    @abc.abstractmethod
    def index(self, split: Split) -> ViewIndex:
        """The items of this view on `split`."""

    @abc.abstractmethod
    def load(self, split: Split, index: ViewIndex, j: int, pre: Preprocessing) -> torch.Tensor:
        """Item j as a normalised tensor [3, size, size] (`pre`: the backbone's `preprocessing`)."""

    def load_many(self, split: Split, index: ViewIndex, js: list[int], pre: Preprocessing) -> list[torch.Tensor]:
        return [self.load(split, index, j, pre) for j in js]

    def __repr__(self) -> str:
        return f"<view {self.key}>"
