"""Protocol (b) of SPEC 5.4: concept consistency and stability on part masks (ProtoFM / ProtoS-ViT).

For a test image of true class c and every concept k:

* class importance: imp_k = concept_scores[k] * class_weights[c, k] (ProtoFM's
  importance[b, k, c]), normalised per image (option `importance_norm`):
  `max` (default) divides by the image's largest importance, so the most
  important concept has 1 (negative importances stay negative); `sum` divides
  by the sum of the positive importances; `none` keeps the raw value. Then
  importances below 0.1 are zeroed. Choice: SPEC and ProtoS-ViT threshold a raw
  importance whose scale differs between methods; normalising makes 0.1 mean
  "a tenth of the top concept's evidence" for every method.
* map: the concept map divided by its per-image maximum |value| (option
  `map_norm`: `max` default, or `none`), so maps >= 0 (ProtoFM assignments,
  QPM features) lie in [0, 1] with peak 1 whatever the method's scale.
* the concept hits part slot p if the maximum of (map x imp_k), nearest-
  upsampled to the image's native resolution, over p's part mask dilated by a
  5 x 5 max-pool, exceeds 0.2. Nearest upsampling copies token cells, so this
  maximum is the maximum over the token cells that contain at least one pixel
  of the dilated mask; those cells come from the FunnyBirds suite's unit masks
  (`metrics.funnybirds.masks`, exact for any resolution), read once per
  dataset. A part is present on an image if its dilated mask is not empty.

Consistency: per (class, concept), over the class's test images,
ratio_p = hits(p) / presence(p) (0 where the part is never present, where it
is never hit either); the pair counts if it hit anything (max_p ratio_p > 0),
and is consistent if max_p ratio_p > 0.8 (strict, as SPEC 5.4(b) and
ProtoS-ViT). Score = consistent pairs / counted pairs.

Stability: the same hits on the noisy images ([0, 1] image + clipped noise),
with the importance recomputed from the noisy run's scores (target still the
true class). Choice: a concept is *active* on an image if it hits any part in
either run; stability = agreement of the (image x concept x part) hit entries
over the active (image, concept) pairs, i.e. the fraction of entries (n, k, p)
with (n, k) active whose hit is the same in both runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from xbench.errors import ConfigError
from xbench.evaluation import EvalContext
from xbench.views import View

from .common import concept_batches, fraction

IMPORTANCE_FLOOR = 0.1
HIT = 0.2
CONSISTENT = 0.8
NORMS = ("max", "sum", "none")
_CHUNK_ELEMENTS = 1 << 24


@dataclass
class PartCells:
    touched: torch.Tensor     # bool [N, P, g*g]: token cells holding a pixel of part p's dilated mask
    presence: torch.Tensor    # bool [N, P]


@dataclass
class PartHits:
    hits: torch.Tensor        # bool [N, K, P]
    labels: torch.Tensor      # long [N]
    presence: torch.Tensor    # bool [N, P]


def part_cells(ctx: EvalContext, grid: int) -> PartCells:
    """Dilated part-slot masks of the test images, as token cells of a grid x grid map."""
    from xbench.metrics.funnybirds.masks import unit_cells
    from xbench.metrics.funnybirds.suite import cache_root

    uc = unit_cells(ctx.dataset, "test", (grid, grid), show_progress=ctx.show_progress,
                    cache_root=cache_root(ctx))
    touched = uc.weights[:, :uc.num_parts] > 0
    return PartCells(touched=touched, presence=touched.any(dim=2))


def class_importance(scores: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor, norm: str = "max",
                     floor: float = IMPORTANCE_FLOOR) -> torch.Tensor:
    """[B, K] importance of each concept for the true class, normalised per image, below `floor` zeroed."""
    if norm not in NORMS:
        raise ConfigError(f"metric option importance_norm={norm!r} is not valid; use one of {', '.join(NORMS)}")
    imp = scores * weights[labels]
    if norm == "max":
        top = imp.amax(dim=1, keepdim=True)
        imp = torch.where(top > 0, imp / top.clamp_min(1e-30), torch.zeros_like(imp))
    elif norm == "sum":
        tot = imp.clamp_min(0).sum(dim=1, keepdim=True)
        imp = torch.where(tot > 0, imp / tot.clamp_min(1e-30), torch.zeros_like(imp))
    return imp.masked_fill(imp < floor, 0.0)


def normalise_maps(maps: torch.Tensor, norm: str = "max") -> torch.Tensor:
    """Maps [B, K, g, g] divided by their per-image max |value| (`max`) or unchanged (`none`)."""
    if norm == "none":
        return maps
    if norm != "max":
        raise ConfigError(f"metric option map_norm={norm!r} is not valid; use max or none")
    top = maps.abs().amax(dim=(2, 3), keepdim=True)
    return torch.where(top > 0, maps / top.clamp_min(1e-30), torch.zeros_like(maps))


def cell_hits(weighted: torch.Tensor, touched: torch.Tensor, threshold: float = HIT) -> torch.Tensor:
    """bool [B, K, P]: max of weighted maps [B, K, g, g] over each part's cells [B, P, g*g] > threshold."""
    b, k = weighted.shape[:2]
    v = weighted.reshape(b, k, 1, -1)
    t = touched[:, None, :, :]
    p, cells = touched.shape[1], touched.shape[2]
    per = max(1, _CHUNK_ELEMENTS // max(1, b * p * cells))
    out = [torch.where(t, v[:, s:s + per], torch.tensor(float("-inf"), device=v.device)).amax(dim=3) > threshold
           for s in range(0, k, per)]
    return torch.cat(out, dim=1) if out else torch.zeros(b, 0, p, dtype=torch.bool, device=v.device)


def part_hits(ctx: EvalContext, view: View, importance_norm: str = "max", map_norm: str = "max") -> PartHits:
    """Hits of every (test item of `view`, concept, part slot), in batches."""
    base = torch.as_tensor(np.asarray(ctx.items("test", view).base, dtype=np.int64))   # item -> test image
    labels = torch.zeros(len(base), dtype=torch.long)
    hits = cells = None
    for b in concept_batches(ctx, view):
        if cells is None:
            cells = part_cells(ctx, int(b.maps.shape[-1]))
            hits = torch.zeros(len(base), b.maps.shape[1], cells.touched.shape[1], dtype=torch.bool)
        rows = torch.as_tensor(b.rows, dtype=torch.long)
        imp = class_importance(b.scores, b.weights, b.labels, importance_norm)
        weighted = normalise_maps(b.maps, map_norm) * imp[:, :, None, None]
        hits[rows] = cell_hits(weighted, cells.touched[base[rows]].to(b.maps.device)).cpu()
        labels[rows] = b.labels.cpu()
    if hits is None:
        raise ValueError("the test split is empty")
    return PartHits(hits=hits, labels=labels, presence=cells.presence[base])


def part_consistency(h: PartHits, num_classes: int, threshold: float = CONSISTENT) -> tuple[float | None, int]:
    """(fraction of consistent (class, concept) pairs among those that hit anything, pairs counted)."""
    k, p = h.hits.shape[1], h.hits.shape[2]
    hit_sum = torch.zeros(num_classes, k, p, dtype=torch.float64).index_add_(0, h.labels, h.hits.double())
    pres = torch.zeros(num_classes, p, dtype=torch.float64).index_add_(0, h.labels, h.presence.double())
    ratio = hit_sum / pres.clamp_min(1)[:, None, :]
    best = ratio.amax(dim=2)
    return fraction(best > threshold, best > 0)


def part_stability(clean: PartHits, noisy: PartHits) -> tuple[float | None, int]:
    """(agreement of hit entries over (image, concept) pairs active in either run, entries counted)."""
    active = clean.hits.any(dim=2) | noisy.hits.any(dim=2)
    agree = clean.hits == noisy.hits
    return fraction(agree, active[:, :, None].expand_as(agree))


__all__ = ["IMPORTANCE_FLOOR", "HIT", "CONSISTENT", "PartCells", "PartHits", "part_cells", "class_importance",
           "normalise_maps", "cell_hits", "part_hits", "part_consistency", "part_stability"]
