"""Noisy copies of a split (stability of concepts, SPEC 5.4).

`space="normalized"` (protocol a): noise N(0, sigma) clipped to +-clip is added
to the normalised image. `space="unit"` (protocol b): the same noise is added to
the [0, 1] image (then clamped to [0, 1] and normalised). The noise of item j
is drawn from a generator seeded by (seed, j), so it does not depend on batching.
An optional `inner` view (e.g. box crops) is noised instead of the plain split.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.base import Split
from ..preprocessing import Preprocessing
from .base import View, ViewIndex
from .plain import PlainView


class NoiseView(View):
    kind = "noise"

    def __init__(self, sigma: float = 0.2, clip: float = 0.25, space: str = "normalized", seed: int = 0,
                 inner: View | None = None):
        if space not in ("normalized", "unit"):
            raise ValueError("space must be 'normalized' or 'unit'")
        self.sigma, self.clip, self.space, self.seed = float(sigma), float(clip), space, int(seed)
        self.inner = inner or PlainView()

    def params(self):
        return {"sigma": self.sigma, "clip": self.clip, "space": self.space, "seed": self.seed, "inner": self.inner.key}

    def index(self, split: Split) -> ViewIndex:
        return self.inner.index(split)

    def noise(self, j: int, shape) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(np.uint64(self.seed * 1_000_003 + j) % np.uint64(2**63 - 1)))
        n = torch.randn(shape, generator=g) * self.sigma
        return n.clamp(-self.clip, self.clip)

    def load(self, split: Split, index: ViewIndex, j: int, pre: Preprocessing) -> torch.Tensor:
        x = self.inner.load(split, index, j, pre)
        n = self.noise(j, x.shape)
        if self.space == "normalized":
            return x + n
        m = torch.tensor(pre.mean).view(3, 1, 1)
        s = torch.tensor(pre.std).view(3, 1, 1)
        unit = (x * s + m + n).clamp(0, 1)
        return (unit - m) / s
