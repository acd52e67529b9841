"""The split itself."""
from __future__ import annotations

import numpy as np
import torch

from ..data.base import Split
from ..preprocessing import Preprocessing
from .base import View, ViewIndex, preprocess


class PlainView(View):
    kind = "plain"

    def index(self, split: Split) -> ViewIndex:
        return ViewIndex(base=np.arange(len(split), dtype=np.int64))

    def load(self, split: Split, index: ViewIndex, j: int, pre: Preprocessing) -> torch.Tensor:
        return preprocess(split.image(int(index.base[j])), pre)
