"""The most activating training patches of each concept (the "prototype" pictures of a score sheet).

`top_training_patches(model, train_store, split, k)` scans the cached training tokens once,
batch by batch, through the head (`explain(Batch(tokens=...))`) and keeps, per concept, a running
top-k over training images. Choices:

* per (concept, image) only the image's best location counts (max of the concept map over the
  g x g grid; the first maximum in row-major order), so the k patches of a concept come from k
  different training images (a single image would otherwise fill the list with neighbouring cells);
* ties between images keep whichever `torch.topk` returns (not specified);
* the patch is the grid cell's region of the *native* training image (the whole image is resized
  to the backbone input, so cell (r, c) covers columns c W / g .. (c + 1) W / g), widened by
  `context` cells on each side (default 1: a 3 x 3 patch neighbourhood) and clipped to the
  image, then resized to `size` x `size` pixels (bilinear) for display;
* `concepts` restricts the scan to some concept indices (a figure only needs the few it shows).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError


@dataclass
class TrainingPatch:
    image: Image.Image      # the cropped patch, size x size
    index: int              # the training image (index into the split)
    row: int                # grid cell of the concept's maximum
    col: int
    value: float            # the concept map's value there


def _head(model: Any) -> Any:
    return getattr(model, "head", model)  # a TrainedModel or a Method


def cell_box(row: int, col: int, g: int, width: int, height: int, context: int = 1) -> tuple[int, int, int, int]:
    """Pixel box (x1, y1, x2, y2) of grid cell (row, col) widened by `context` cells, clipped to the image."""
    x1 = math.floor(max(col - context, 0) * width / g)
    x2 = math.ceil(min(col + 1 + context, g) * width / g)
    y1 = math.floor(max(row - context, 0) * height / g)
    y2 = math.ceil(min(row + 1 + context, g) * height / g)
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


@torch.no_grad()
def top_activations(model: Any, train_store: Any, k: int, concepts: Sequence[int] | None = None,
                    batch_size: int = 64, device: torch.device | str | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """(values [K', k], store rows [K', k], grid locations [K', k], concept ids) of the top-k images per concept."""
    from xbench.method_api import Batch

    head = _head(model)
    if "concepts" not in head.spec.provides:
        raise ConfigError(f"method {head.spec.name} has no concepts, so it has no training patches to show")
    dev = torch.device(device) if device is not None else next(
        (p.device for p in head.parameters()), torch.device("cpu"))
    ids: list[int] | None = list(concepts) if concepts is not None else None
    best_v = best_row = best_loc = None
    for rows, tokens in train_store.batches(batch_size, device=dev):
        exp = head.explain(Batch(tokens=tokens, index=rows))
        maps = exp.concept_maps
        if maps is None:
            raise ConfigError(f"method {head.spec.name} returned no concept maps")
        if ids is None:
            ids = list(range(maps.shape[1]))
        maps = maps[:, ids].float()                                          # [B, K', g, g]
        v, loc = maps.flatten(2).max(dim=2)                                  # [B, K']
        r = torch.as_tensor(np.asarray(rows), dtype=torch.long, device=v.device)[None].expand(len(ids), -1)
        if best_v is None:
            cand_v, cand_r, cand_l = v.T, r, loc.T
        else:
            cand_v = torch.cat([best_v, v.T], dim=1)
            cand_r = torch.cat([best_row, r], dim=1)
            cand_l = torch.cat([best_loc, loc.T], dim=1)
        top = cand_v.topk(min(k, cand_v.shape[1]), dim=1)
        best_v, best_row, best_loc = top.values, cand_r.gather(1, top.indices), cand_l.gather(1, top.indices)
    if best_v is None:
        raise ConfigError("the training split is empty: no training patches to show")
    return best_v.cpu(), best_row.cpu(), best_loc.cpu(), ids or []


def top_training_patches(model: Any, train_store: Any, split: Any, k: int = 5, concepts: Sequence[int] | None = None,
                         context: int = 1, size: int = 96, batch_size: int = 64) -> dict[int, list[TrainingPatch]]:
    """Per concept id, its k most activating training patches (see the module docstring)."""
    values, rows, locs, ids = top_activations(model, train_store, k, concepts, batch_size)
    g = int(train_store.grid)
    base = np.asarray(train_store.base)
    images: dict[int, Image.Image] = {}
    out: dict[int, list[TrainingPatch]] = {}
    for j, cid in enumerate(ids):
        patches = []
        for v, row, loc in zip(values[j].tolist(), rows[j].tolist(), locs[j].tolist()):
            i = int(base[row])
            if i not in images:
                images[i] = split.image(i)
            img = images[i]
            r, c = divmod(int(loc), g)
            crop = img.crop(cell_box(r, c, g, img.width, img.height, context))
            patches.append(TrainingPatch(crop.resize((size, size), Image.BILINEAR), i, r, c, float(v)))
        out[int(cid)] = patches
    return out


__all__ = ["TrainingPatch", "top_training_patches", "top_activations", "cell_box"]
