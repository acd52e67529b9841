"""Plausibility with dilated object masks (SPEC 5.3; DINO-QPM).

Per test image: ``G`` = the attribution map of the predicted class on the
``g x g`` token grid, ``G -= min(G)``; ``M`` = the object mask on the same grid,
dilated once with a 3 x 3 square; score = ``sum(G M) / sum(G)``. The metric is
the mean score over test images.

Choices the SPEC leaves open (as in the reference implementation where it has one):

* Mask on the grid: the native-resolution mask (the whole image is resized to
  the backbone input, so the grid covers the whole image) is resampled to
  ``g x g`` bilinearly at the patch centres (half-pixel convention, no
  anti-aliasing, as OpenCV's ``cv2.resize`` in the reference) and binarised
  with ``> 0``; then dilated with a 3 x 3 max filter (zero padding).
* An image whose ``G`` sums to 0 after the shift (a constant map) scores 0 and
  is counted (reference behaviour); the count is reported as ``zero_maps``.
* An image whose mask is empty (no object, e.g. an RSNA negative) is skipped
  and counted as ``no_object``; the value is undefined (n/a) if every image is.

Object masks are built once per job and grid size (`EvalContext.memo`) and
shared with any other metric asking for the same key.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from xbench.evaluation import EvalContext, MetricValue
from xbench.registry import register_metric

__all__ = ["mask_to_grid", "dilate", "grid_masks", "plausibility_scores", "plausibility"]


def mask_to_grid(mask: np.ndarray | torch.Tensor, g: int) -> torch.Tensor:
    """bool [g, g]: a mask [H, W] sampled bilinearly at the centres of a g x g grid, then > 0."""
    m = torch.as_tensor(np.asarray(mask), dtype=torch.float32)[None, None]
    r = F.interpolate(m, size=(g, g), mode="bilinear", align_corners=False, antialias=False)
    return r[0, 0] > 0


def dilate(masks: torch.Tensor) -> torch.Tensor:
    """bool [N, g, g]: one dilation with a 3 x 3 square (outside the grid counts as empty)."""
    return F.max_pool2d(masks.float()[:, None], kernel_size=3, stride=1, padding=1)[:, 0] > 0


def grid_masks(split, g: int) -> torch.Tensor:
    """bool [N, g, g]: every image's object mask on the grid, dilated once (SPEC 5.3)."""
    out = torch.zeros(len(split), g, g, dtype=torch.bool)
    for i in range(len(split)):  # data loading: masks have native, per-image sizes
        out[i] = mask_to_grid(split.object_mask(i), g)
    return dilate(out)


def plausibility_scores(G: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores [B], zero [B]) for attribution maps G [B, g, g] and (dilated) masks [B, g, g].

    score = sum(G' M) / sum(G') with G' = G - min(G) per image; 0 where sum(G') = 0 (flagged in `zero`).
    """
    G = G.double()
    G = G - G.flatten(1).min(dim=1).values[:, None, None]
    total = G.flatten(1).sum(dim=1)
    inside = (G * masks.to(G.dtype)).flatten(1).sum(dim=1)
    zero = total <= 0
    return torch.where(zero, torch.zeros_like(total), inside / torch.where(zero, torch.ones_like(total), total)), zero


@register_metric("plausibility", direction="higher", category="localisation", needs_method={"attribution"},
                 needs_data={"object_mask"}, percent=True, paper="dinoqpm",
                 description="share of the predicted class's attribution inside the dilated object mask")
def plausibility(ctx: EvalContext) -> MetricValue:
    """Share of the predicted class's (min-shifted) attribution inside the dilated object mask (SPEC 5.3)."""
    g = ctx.grid
    masks = ctx.memo(f"object_mask_grid:test:{g}:dilated", lambda: grid_masks(ctx.split("test"), g))
    has_object = masks.flatten(1).any(dim=1)
    total, n, zero = 0.0, 0, 0
    for idx, exp in ctx.explanations("test"):
        idx_t = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        G = exp.attribution(exp.predictions()).detach().float().cpu()
        keep = has_object[idx_t]
        s, z = plausibility_scores(G[keep], masks[idx_t][keep])
        total += float(s.sum())
        n += int(keep.sum())
        zero += int(z.sum())
    extras = {"images": n, "zero_maps": zero, "no_object": int((~has_object).sum()), "grid": g}
    if n == 0:
        return MetricValue(None, {**extras, "reason": "no test image has an object mask"})
    return MetricValue(total / n, extras)
