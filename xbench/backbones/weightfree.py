"""The weight-free backbone: fixed, deterministic patch descriptors, no learned weights.

It serves the offline quickstart (SPEC 2): nothing is downloaded and nothing is
learned, yet a linear probe on its tokens can separate classes that differ in
the colour and shape of their parts. Nothing in it knows any dataset: it is a
generic hand-made descriptor on the same 14-px grid as DINOv2 (224 px input,
16 x 16 patches):

* colour: trilinear soft assignment of every pixel to a fixed 4 x 4 x 4 lattice
  of RGB values, averaged over the patch (a soft colour histogram, 64 values);
* shape: a HOG-like histogram of gradient orientations (8 unsigned bins,
  magnitude-weighted, soft-binned), over the patch and over its four 7 x 7
  quadrants (8 + 32 values), from the colour channel with the largest gradient;
* context: the same descriptor averaged over the 3 x 3 neighbourhood of patches;
* normalisation: signed square root, then L2 per token, as for HOG / Fisher vectors.

The CLS token is the mean of the patch tokens (there is no class token to learn)
and there are no registers. Grad-CAM's anchor sits before that mean.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..registry import register_backbone
from ..tokens import Tokens
from .base import Backbone

RECIPE_VERSION = "wf1"


class WeightFree(Backbone):
    """Fixed colour + gradient-orientation patch descriptors (no weights)."""

    def __init__(self, image_size: int = 224, colour_levels: int = 4, orientations: int = 8, context: bool = True):
        super().__init__()
        self.name = "weight-free"
        self.image_size = image_size
        self.patch_size = 14
        self.colour_levels = colour_levels
        self.orientations = orientations
        self.context = context
        self.weights_kind, self.weights_source = "weight-free", RECIPE_VERSION
        self.register_buffer("mean_t", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std_t", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)
        base = colour_levels ** 3 + orientations * 5
        self.embed_dim = base * (2 if context else 1)
        self.num_registers = 0
        self.pool = torch.nn.Identity()
        self.freeze()

    def hash_extra(self) -> str:
        return f"{RECIPE_VERSION}:{self.image_size}:{self.colour_levels}:{self.orientations}:{self.context}"

    def _descriptor(self, images: torch.Tensor) -> torch.Tensor:
        """[B, D, g, g] patch descriptors of a normalised batch."""
        x = (images * self.std_t + self.mean_t).clamp(0, 1)
        b, _, h, w = x.shape
        p = self.patch_size
        # colour: trilinear soft-binning of each pixel on a fixed L x L x L RGB lattice,
        # summed per patch with one batched matmul (never materialising [H, W, L^3])
        g = h // p
        L = self.colour_levels
        pos = x * (L - 1)
        lo = pos.floor().clamp(max=L - 2)
        frac = pos - lo
        binw = torch.stack([1 - frac, frac], dim=-1)  # [B,3,H,W,2]
        lo = lo.long()
        onehot = torch.zeros(b, 3, h, w, L, device=x.device, dtype=x.dtype)
        onehot.scatter_add_(-1, lo.unsqueeze(-1), binw[..., :1])
        onehot.scatter_add_(-1, (lo + 1).unsqueeze(-1), binw[..., 1:])
        # lay pixels of each patch side by side: [B*g*g, p*p, 3, L]
        per_patch = onehot.view(b, 3, g, p, g, p, L).permute(0, 2, 4, 3, 5, 1, 6).reshape(b * g * g, p * p, 3, L)
        rg = (per_patch[:, :, 0, :, None] * per_patch[:, :, 1, None, :]).reshape(b * g * g, p * p, L * L)
        colour = torch.bmm(rg.transpose(1, 2), per_patch[:, :, 2, :]) / (p * p)  # [B*g*g, L*L, L]
        colour = colour.reshape(b, g, g, L ** 3).permute(0, 3, 1, 2)
        # shape: orientation histograms from the dominant channel's gradient
        xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
        dx = xp[..., 2:] - xp[..., :-2]                       # [B,3,H+2,W]
        gx = (dx[:, :, :-2] + 2 * dx[:, :, 1:-1] + dx[:, :, 2:]) / 8.0
        dy = xp[:, :, 2:] - xp[:, :, :-2]                     # [B,3,H,W+2]
        gy = (dy[..., :-2] + 2 * dy[..., 1:-1] + dy[..., 2:]) / 8.0
        mag2 = gx * gx + gy * gy
        # the channel with the largest gradient, per pixel (explicit compares: argmax over 3 is slow)
        use1 = mag2[:, 1] > mag2[:, 0]
        best = torch.where(use1, mag2[:, 1], mag2[:, 0])
        use2 = mag2[:, 2] > best
        gx = torch.where(use2, gx[:, 2], torch.where(use1, gx[:, 1], gx[:, 0])).unsqueeze(1)
        gy = torch.where(use2, gy[:, 2], torch.where(use1, gy[:, 1], gy[:, 0])).unsqueeze(1)
        mag = torch.sqrt(torch.where(use2, mag2[:, 2], best) + 1e-12).unsqueeze(1)
        theta = torch.atan2(gy, gx) % math.pi  # unsigned orientation
        nb = self.orientations
        pos = theta / math.pi * nb  # in [0, nb)
        lo = torch.floor(pos)
        frac = pos - lo
        lo = lo.long() % nb
        hi = (lo + 1) % nb
        hist = torch.zeros(b, nb, h, w, device=x.device, dtype=x.dtype)
        hist.scatter_add_(1, lo, mag * (1 - frac))
        hist.scatter_add_(1, hi, mag * frac)
        whole = F.avg_pool2d(hist, p)  # [B,nb,g,g]
        quarters = F.avg_pool2d(hist, p // 2)  # [B,nb,2g,2g]
        quarters = quarters.view(b, nb, g, 2, g, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, nb * 4, g, g)
        shape = torch.cat([whole, quarters], dim=1) * 4.0
        desc = torch.cat([colour, shape], dim=1)
        if self.context:
            ctx = F.avg_pool2d(F.pad(desc, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
            desc = torch.cat([desc, ctx], dim=1)
        desc = torch.sign(desc) * torch.sqrt(desc.abs() + 1e-12)
        return F.normalize(desc, dim=1)

    def _tokens(self, images: torch.Tensor, anchor: Callable[[torch.Tensor], torch.Tensor] | None) -> Tokens:
        grid = self._descriptor(images)
        if anchor is not None:
            grid = anchor(grid)
        patch = grid.permute(0, 2, 3, 1)  # [B,g,g,D]
        cls = patch.mean(dim=(1, 2))
        reg = patch.new_zeros(patch.shape[0], 0, patch.shape[-1])
        return Tokens(patch=patch, cls=cls, reg=reg)


@register_backbone(
    "weight-free",
    description="fixed colour + gradient-orientation patch descriptors on the 14-px grid (no weights; offline quickstart)",
    family="weight-free", patch_size=14, num_registers=0, default_weights="none",
)
def make_weight_free(weights: str = "none", image_size: int = 224, seed: int = 0, name: str | None = None) -> WeightFree:
    """Fixed colour + gradient-orientation descriptors (no weights)."""
    from ..errors import WeightsError

    if weights not in ("none", "auto", "weight-free"):
        raise WeightsError(f"--weights {weights}: the weight-free backbone takes no weights; drop --weights")
    return WeightFree(image_size=image_size)
