"""Augmented views with known crop boxes (ProtoFM's teacher views, SPEC 3.4).

`views` augmented copies per image: random resized crop (area scale
`scale`, aspect ratio `ratio`), horizontal flip (p = 0.5) and colour jitter
(brightness, contrast, saturation, hue), all drawn from a generator seeded by
(seed, item) so the views are deterministic and cacheable. Item j is view
j % views of image j // views.

Metadata: `box` [M, 4] = crop (x1, y1, x2, y2) as fractions of the image's
width / height, `flip` [M] (1 = mirrored after cropping). With these, the
student's maps over the full image can be resampled onto the teacher's grid
(RoIAlign over the box, then mirrored).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from ..data.base import Split
from ..preprocessing import Preprocessing
from .base import View, ViewIndex, preprocess


class AugmentView(View):
    kind = "augment"

    def __init__(self, views: int = 4, seed: int = 0, scale: tuple[float, float] = (0.35, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)):
        self.views, self.seed = int(views), int(seed)
        self.scale, self.ratio, self.jitter = tuple(scale), tuple(ratio), tuple(jitter)

    def params(self):
        return {"views": self.views, "seed": self.seed, "scale": list(self.scale), "ratio": list(self.ratio),
                "jitter": list(self.jitter)}

    def _draw(self, j: int) -> tuple[np.ndarray, int, np.ndarray, list[int]]:
        rng = np.random.default_rng([self.seed, 7919, j])
        box = None
        for _ in range(10):
            area = rng.uniform(*self.scale)
            logr = rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1]))
            ar = math.exp(logr)
            w = math.sqrt(area * ar)
            h = math.sqrt(area / ar)
            if w <= 1 and h <= 1:
                x1 = rng.uniform(0, 1 - w)
                y1 = rng.uniform(0, 1 - h)
                box = np.array([x1, y1, x1 + w, y1 + h])
                break
        if box is None:
            box = np.array([0.0, 0.0, 1.0, 1.0])
        flip = int(rng.uniform() < 0.5)
        b, c, s, hue = self.jitter
        jit = np.array([rng.uniform(1 - b, 1 + b), rng.uniform(1 - c, 1 + c), rng.uniform(1 - s, 1 + s),
                        rng.uniform(-hue, hue)])
        order = [int(k) for k in rng.permutation(4)]
        return box.astype(np.float32), flip, jit, order

    def index(self, split: Split) -> ViewIndex:
        n = len(split) * self.views
        boxes = np.zeros((n, 4), dtype=np.float32)
        flips = np.zeros(n, dtype=np.int64)
        for j in range(n):
            boxes[j], flips[j], _, _ = self._draw(j)
        base = np.repeat(np.arange(len(split), dtype=np.int64), self.views)
        return ViewIndex(base=base, meta={"box": boxes, "flip": flips})

    def load(self, split: Split, index: ViewIndex, j: int, pre: Preprocessing) -> torch.Tensor:
        img = split.image(int(index.base[j]))
        box, flip, jit, order = self._draw(j)
        w, h = img.size
        crop = pre.resize(img, box=(box[0] * w, box[1] * h, box[2] * w, box[3] * h))  # the backbone's interpolation
        if flip:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        for op in order:
            if op == 0:
                crop = TF.adjust_brightness(crop, float(jit[0]))
            elif op == 1:
                crop = TF.adjust_contrast(crop, float(jit[1]))
            elif op == 2:
                crop = TF.adjust_saturation(crop, float(jit[2]))
            else:
                crop = TF.adjust_hue(crop, float(jit[3]))
        return preprocess(crop, pre)
