"""The weight-free backbone: fixed, deterministic patch descriptors, no learned weights.

It serves the offline quickstart (SPEC 2): nothing is downloaded and nothing is
learned or drawn at random, yet a linear probe on its patch-mean tokens can
separate classes that differ in the colour and shape of small parts. Nothing in
it knows any dataset; it is a classical hand-made descriptor (a local colour
correlogram, Huang et al., CVPR 1997) on the same 14-px grid as DINOv2
(224-px input, 16 x 16 patches):

1. every pixel is named by the nearest of the 11 basic colour terms of Berlin &
   Kay (black, white, grey, red, green, blue, yellow, orange, brown, pink,
   purple; fixed sRGB prototypes), through a 32^3 lookup table;
2. for each patch, offsets d in (1, 2, 4, 8, 16) px and two direction groups
   (horizontal + vertical, and the two diagonals), the descriptor counts the
   pixel pairs (p in the patch, p + d * direction anywhere in the image) whose
   colour names are {a, b}: an unordered pair, 66 of them; counts are divided
   by the number of valid pairs of that patch (pairs leaving the image are not
   counted);
3. each patch's share c of pairs is compressed to sqrt(c) (a power
   normalisation, as for Fisher vectors and the Hellinger kernel: rare pairs,
   such as the colours of a small part meeting, stay visible next to the large
   background counts).

Token dimension: 66 pairs x 5 offsets x 2 direction groups = 660. Why
co-occurrences: the quickstart's linear probe sees the patch mean, and a mean
keeps only what each patch encodes non-linearly; "yellow next to black at 4 px,
horizontally" is such a conjunction, where per-patch colour and gradient
histograms average away (measured on synthbirds with 100 training images per
class: 21% probe accuracy for colour + gradient-orientation histograms, about
84% for this descriptor).

The CLS token is the mean of the patch tokens (there is no class token to learn)
and there are no registers. Grad-CAM's anchor sits before that mean.
"""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

from ..registry import register_backbone
from ..tokens import Tokens
from .base import Backbone

RECIPE_VERSION = "wf2-correlogram"

#: Berlin & Kay's 11 basic colour terms, sRGB prototypes
BASIC_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128), "red": (220, 30, 30),
    "green": (30, 170, 60), "blue": (30, 70, 220), "yellow": (250, 220, 30), "orange": (245, 140, 20),
    "brown": (140, 80, 30), "pink": (240, 140, 190), "purple": (140, 50, 170),
}
OFFSETS = (1, 2, 4, 8, 16)
DIRECTION_GROUPS = (((0, 1), (1, 0)), ((1, 1), (1, -1)))
POWER = 0.5
LUT_BITS = 5


def _colour_lut() -> torch.Tensor:
    """[32^3] nearest basic colour of every 5-bit RGB cell (cell centres)."""
    n = 1 << LUT_BITS
    lv = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    grid = torch.stack(torch.meshgrid(lv, lv, lv, indexing="ij"), dim=-1).view(-1, 3)
    protos = torch.tensor(list(BASIC_COLOURS.values()), dtype=torch.float64) / 255.0
    d2 = ((grid.unsqueeze(1) - protos) ** 2).sum(-1)
    return d2.argmin(dim=1).to(torch.int64)


@functools.lru_cache(maxsize=None)
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="xbench-weightfree")


class WeightFree(Backbone):
    """Local colour correlogram on the 14-px grid (no weights)."""

    has_cls_token = False                      # CLS = patch mean
    preprocessing_source = "weight-free recipe (bilinear, ImageNet mean / std)"

    def __init__(self, image_size: int = 224):
        super().__init__()
        self.name = "weight-free"
        self.image_size = image_size
        self.patch_size = 14
        self.weights_kind, self.weights_source = "weight-free", RECIPE_VERSION
        k = len(BASIC_COLOURS)
        self.k = k
        self.register_buffer("lut", _colour_lut(), persistent=False)
        self.register_buffer("mean_t", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std_t", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)
        self.n_pairs = k * (k + 1) // 2
        self.embed_dim = self.n_pairs * len(OFFSETS) * len(DIRECTION_GROUPS)
        self.num_registers = 0
        self.freeze()

    def hash_extra(self) -> str:
        return f"{RECIPE_VERSION}:{self.image_size}:{OFFSETS}:{DIRECTION_GROUPS}:{POWER}"

    def colour_names(self, images: torch.Tensor) -> torch.Tensor:
        """[B, H, W] basic-colour index of every pixel of a normalised batch."""
        unit = (images * self.std_t + self.mean_t).clamp(0, 1)
        q = (unit * ((1 << LUT_BITS) - 1e-3)).to(torch.int64)
        return self.lut[(q[:, 0] << (2 * LUT_BITS)) | (q[:, 1] << LUT_BITS) | q[:, 2]]

    def _descriptor(self, images: torch.Tensor, use_torch: bool | None = None) -> torch.Tensor:
        """[B, D, g, g] patch descriptors of a normalised batch.

        Counting runs in numpy on CPU (its bincount is several times faster there)
        and in torch elsewhere; both give the same integer counts (tested).
        """
        c = self.colour_names(images)
        b, h, w = c.shape
        g = h // self.patch_size
        if use_torch is None:
            use_torch = c.device.type != "cpu"
        counts = self._counts_torch(c) if use_torch else torch.from_numpy(self._counts_numpy_parallel(c.numpy()))
        counts = counts.to(device=images.device, dtype=torch.float32)   # [B, g*g, G, 66]
        valid = torch.stack([self._valid_pairs(h, w, d, dirs) for d in OFFSETS for dirs in DIRECTION_GROUPS], dim=1)
        desc = (counts / valid.to(counts.device).view(1, g * g, -1, 1)).pow(POWER)
        return desc.reshape(b, g * g, -1).transpose(1, 2).reshape(b, -1, g, g)

    def _shifts(self) -> list[tuple[int, int, int]]:
        """(group, dy, dx) of every pixel-pair direction, groups in descriptor order."""
        out, gi = [], 0
        for d in OFFSETS:
            for dirs in DIRECTION_GROUPS:
                out.extend((gi, uy * d, ux * d) for uy, ux in dirs)
                gi += 1
        return out

    def _fold(self) -> tuple[np.ndarray, np.ndarray]:
        """Ordered colour pair (a*k+b) -> unordered pair: hist[first] + hist[second] (second = k*k, a zero, on the diagonal)."""
        k = self.k
        r, c = np.triu_indices(k)
        return r * k + c, np.where(r == c, k * k, c * k + r)

    def _counts_numpy(self, c: np.ndarray, sub: int = 2) -> np.ndarray:
        """int64 [B, g*g, G, 66] pair counts per patch and offset group (numpy)."""
        b_all, h, w = c.shape
        p, k, g = self.patch_size, self.k, h // self.patch_size
        kk, shifts = k * k, self._shifts()
        n_groups = shifts[-1][0] + 1
        first, second = self._fold()
        cell = (np.arange(h) // p)[:, None] * g + (np.arange(w) // p)[None, :]
        out = np.empty((b_all, g * g, n_groups, len(first)), dtype=np.int64)
        for s in range(0, b_all, sub):  # small sub-batches keep the histogram in cache
            cs = c[s:s + sub].astype(np.int64)
            b = cs.shape[0]
            anchor = ((np.arange(b)[:, None, None] * (g * g) + cell[None]) * n_groups) * kk + cs * k
            sizes = [b * (h - dy) * (w - abs(dx)) for _, dy, dx in shifts]
            buf = np.empty(sum(sizes), dtype=np.int64)
            pos = 0
            for (gi, dy, dx), n in zip(shifts, sizes):
                y1, x0, x1 = h - dy, max(0, -dx), w - max(dx, 0)
                view = buf[pos:pos + n].reshape(b, y1, x1 - x0)
                np.add(anchor[:, :y1, x0:x1], cs[:, dy:dy + y1, x0 + dx:x1 + dx], out=view)
                if gi:
                    view += gi * kk
                pos += n
            hist = np.bincount(buf, minlength=b * g * g * n_groups * kk).reshape(b, g * g, n_groups, kk)
            hist = np.concatenate([hist, np.zeros((b, g * g, n_groups, 1), dtype=np.int64)], axis=-1)
            out[s:s + b] = hist[..., first] + hist[..., second]
        return out

    def _counts_numpy_parallel(self, c: np.ndarray, per_task: int = 8) -> np.ndarray:
        """`_counts_numpy` over slices of the batch on torch's intra-op thread count (numpy's ufuncs and
        bincount release the GIL: 1.85x on two cores, measured; identical integer counts)."""
        threads = torch.get_num_threads()
        if threads <= 1 or len(c) <= per_task:
            return self._counts_numpy(c)
        parts = list(_pool(threads).map(self._counts_numpy, [c[s:s + per_task] for s in range(0, len(c), per_task)]))
        return np.concatenate(parts)

    def _counts_torch(self, c: torch.Tensor) -> torch.Tensor:
        """int64 [B, g*g, G, 66] pair counts per patch and offset group (torch; any device)."""
        b, h, w = c.shape
        p, k, g = self.patch_size, self.k, h // self.patch_size
        kk, shifts, dev = k * k, self._shifts(), c.device
        n_groups = shifts[-1][0] + 1
        first, second = (torch.from_numpy(a).to(dev) for a in self._fold())
        cell = (torch.arange(h, device=dev) // p).view(h, 1) * g + (torch.arange(w, device=dev) // p).view(1, w)
        anchor = ((torch.arange(b, device=dev).view(b, 1, 1) * (g * g) + cell) * n_groups) * kk + c * k
        hist = torch.zeros(b * g * g * n_groups * kk, dtype=torch.int64, device=dev)
        for gi, dy, dx in shifts:
            y1, x0, x1 = h - dy, max(0, -dx), w - max(dx, 0)
            bins = anchor[:, :y1, x0:x1] + c[:, dy:dy + y1, x0 + dx:x1 + dx] + gi * kk
            hist += torch.bincount(bins.reshape(-1), minlength=hist.numel())
        hist = hist.view(b, g * g, n_groups, kk)
        hist = torch.cat([hist, hist.new_zeros(b, g * g, n_groups, 1)], dim=-1)
        return hist[..., first] + hist[..., second]

    @functools.lru_cache(maxsize=64)
    def _valid_pairs(self, h: int, w: int, d: int, dirs: tuple) -> torch.Tensor:
        """[g*g] number of (pixel, direction) pairs of each patch whose partner lies inside the image."""
        p, g = self.patch_size, h // self.patch_size
        ys = torch.arange(h).view(h, 1).expand(h, w)
        xs = torch.arange(w).view(1, w).expand(h, w)
        cell = (ys // p) * g + xs // p
        total = torch.zeros(g * g)
        for uy, ux in dirs:
            ok = (ys + uy * d < h) & (xs + ux * d >= 0) & (xs + ux * d < w)
            total += torch.bincount(cell[ok], minlength=g * g).to(torch.float32)
        return total.clamp_min(1)

    def _tokens(self, images: torch.Tensor, anchor: Callable[[torch.Tensor], torch.Tensor] | None) -> Tokens:
        with torch.no_grad():
            grid = self._descriptor(images)
        if anchor is not None:
            grid = anchor(grid)
        patch = grid.permute(0, 2, 3, 1)  # [B,g,g,D]
        cls = patch.mean(dim=(1, 2))
        reg = patch.new_zeros(patch.shape[0], 0, patch.shape[-1])
        return Tokens(patch=patch, cls=cls, reg=reg)


@register_backbone(
    "weight-free",
    description="local colour correlogram on the 14-px grid (no weights; offline quickstart)",
    family="weight-free", patch_size=14, num_registers=0, default_weights="none",
)
def make_weight_free(weights: str = "none", image_size: int = 224, seed: int = 0, name: str | None = None) -> WeightFree:
    """Local colour correlogram on the 14-px grid (no weights)."""
    from ..errors import WeightsError

    if weights not in ("none", "auto", "weight-free"):
        raise WeightsError(f"--weights {weights}: the weight-free backbone takes no weights; drop --weights")
    return WeightFree(image_size=image_size)
