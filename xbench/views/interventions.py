"""FunnyBirds interventions of every test image (SPEC 5.2).

Per image: all 2^P subsets of its part slots kept (the rest removed), with all
background objects present, plus one image per background object with that
object alone removed (all parts kept). This is exactly FunnyBirds' pre-rendered
set, and covers every metric of the suite: PC/DC (any subset), SD and D (single
parts), TS (pairs), BI and D (single background objects).

Metadata per item: `keep` (bitmask over `dataset.part_names`, bit p = part p kept)
and `removed_object` (-1 for none).
"""
from __future__ import annotations

from itertools import groupby

import numpy as np
import torch

from ..data.base import Split
from ..preprocessing import Preprocessing
from .base import View, ViewIndex, preprocess


def mask_to_parts(mask: int, part_names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(p for b, p in enumerate(part_names) if mask >> b & 1)


class InterventionView(View):
    kind = "interventions"

    def index(self, split: Split) -> ViewIndex:
        parts = split.dataset.part_names
        full = (1 << len(parts)) - 1
        base, keep, removed = [], [], []
        for i in range(len(split)):
            for m in range(full + 1):
                base.append(i), keep.append(m), removed.append(-1)
            for o in range(split.num_objects(i)):
                base.append(i), keep.append(full), removed.append(o)
        return ViewIndex(
            base=np.asarray(base, dtype=np.int64),
            meta={"keep": np.asarray(keep, dtype=np.int64), "removed_object": np.asarray(removed, dtype=np.int64)},
        )

    def _request(self, split: Split, index: ViewIndex, j: int):
        keep = mask_to_parts(int(index.meta["keep"][j]), split.dataset.part_names)
        o = int(index.meta["removed_object"][j])
        return keep, frozenset() if o < 0 else frozenset({o})

    def load(self, split: Split, index: ViewIndex, j: int, pre: Preprocessing) -> torch.Tensor:
        keep, removed = self._request(split, index, j)
        return preprocess(split.intervention(int(index.base[j]), keep, removed), pre)

    def load_many(self, split: Split, index: ViewIndex, js: list[int], pre: Preprocessing) -> list[torch.Tensor]:
        # group consecutive items of the same base image so the loader can share work
        out: list[torch.Tensor] = []
        for i, grp in groupby(js, key=lambda j: int(index.base[j])):
            grp = list(grp)
            imgs = split.interventions(i, [self._request(split, index, j) for j in grp])
            out.extend(preprocess(im, pre) for im in imgs)
        return out
