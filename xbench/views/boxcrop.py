"""Images cropped to their (first) bounding box (CUB consistency protocol, SPEC 5.4a).

Metadata: `box` [M, 4] (x1, y1, x2, y2), the integer crop in the original image's pixels, so
keypoints can be mapped into the crop: (x - x1) * size / (x2 - x1).
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.base import Split
from ..preprocessing import Preprocessing
from .base import View, ViewIndex, preprocess


class BoxCropView(View):
    kind = "boxcrop"

    def index(self, split: Split) -> ViewIndex:
        boxes = []
        for i in range(len(split)):
            b = split.boxes(i)
            if len(b) == 0:
                w, h = split.image(i).size
                boxes.append([0.0, 0.0, float(w), float(h)])
            else:
                x1, y1, x2, y2 = (int(round(float(v))) for v in b[0])
                boxes.append([x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)])
        return ViewIndex(base=np.arange(len(split), dtype=np.int64), meta={"box": np.asarray(boxes, dtype=np.float32)})

    def load(self, split: Split, index: ViewIndex, j: int, pre: Preprocessing) -> torch.Tensor:
        img = split.image(int(index.base[j]))
        x1, y1, x2, y2 = (float(v) for v in index.meta["box"][j])
        img = img.crop((int(x1), int(y1), int(x2), int(y2)))
        return preprocess(img, pre)
