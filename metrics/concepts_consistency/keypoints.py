"""Protocol (a) of SPEC 5.4: concept consistency and stability on keypoints (Huang et al., ICCV 2023; CUB).

Test images are cropped to their (first) box and resized to S x S (S = the
backbone's input size, 224), through `BoxCropView`; a keypoint (x, y) maps into
the crop as ((x - x1) S / (x2 - x1), (y - y1) S / (y2 - y1)) with the view's
integer box, then is truncated to its pixel (floor), as the reference does.

Hits: for an image of class c and each concept k *used* by c, the concept map
is upsampled to S x S (bicubic, `align_corners=False`, the same sampling as
OpenCV's INTER_CUBIC that the reference uses), its argmax (r, q) taken (first
maximum in row-major order), and the square rows max(0, r - 36) ..
min(S, r + 36), columns likewise, inclusive at both ends (the reference's
`in_bbox`), is the concept's patch; the concept hits part p if p's keypoint is
visible and inside. A hit vector is [P] per (image, used concept).

Choices:
* "used by class c" = class_weights[c, k] > 0 (the concepts with positive
  evidence for c: QPM's 5 assigned features, ProtoFM's non-zero clamped
  weights); option `used_top_k` > 0 keeps only the k largest positive weights.
* The unit of consistency is the (class, used concept) pair, evaluated over
  the test images of that class: the reference's prototypes belong to one
  class each, and a concept shared by several classes is evaluated once per
  class that uses it. Classes without test images contribute no pair.
* Consistency of a pair: ratio_p = hits(p) / visible(p) over the class's
  images, where visible(p) = 0 is replaced by 1 (the reference's "0/0 := 1":
  a part never visible in the class counts as 0 hits, never as consistent);
  the pair is consistent if max_p ratio_p >= 0.8. Score = consistent pairs /
  pairs.
* Stability: a pair is stable on an image if its hit vector on the noisy crop
  equals the one on the clean crop; per pair the fraction of its class's
  images on which it is stable; score = mean over pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from xbench.evaluation import EvalContext
from xbench.views import View

from .common import concept_batches

HALF_SIZE = 36
CONSISTENT = 0.8
_CHUNK_ELEMENTS = 1 << 24     # upsampled maps per chunk: about 64 MB of float32


@dataclass
class KeypointFrame:
    """Keypoints of every item of a box-crop view, in the S x S crop frame."""

    xy: torch.Tensor          # long [N, P, 2]: keypoint pixel (x, y), truncated
    visible: torch.Tensor     # bool [N, P]
    size: int


@dataclass
class KeypointHits:
    hits: torch.Tensor        # bool [N, U, P]: hit vectors of the used concepts of each image's class
    used_idx: torch.Tensor    # long [C, U]: concept index of used slot u of class c (padded)
    used_ok: torch.Tensor     # bool [C, U]: slot u of class c is a used concept
    labels: torch.Tensor      # long [N]
    visible: torch.Tensor     # bool [N, P]


def map_keypoints(keypoints: np.ndarray, boxes: np.ndarray, size: int) -> KeypointFrame:
    """Keypoints [N, P, 3] (x, y, visible; native pixels) and crop boxes [N, 4] -> the crop frame."""
    kp = np.nan_to_num(np.asarray(keypoints, dtype=np.float64))
    b = np.asarray(boxes, dtype=np.float64)
    x = (kp[..., 0] - b[:, None, 0]) * size / (b[:, None, 2] - b[:, None, 0])
    y = (kp[..., 1] - b[:, None, 1]) * size / (b[:, None, 3] - b[:, None, 1])
    xy = torch.from_numpy(np.floor(np.stack([x, y], axis=-1))).long()
    return KeypointFrame(xy=xy, visible=torch.from_numpy(kp[..., 2] > 0), size=int(size))


def keypoint_frame(ctx: EvalContext, view: View, size: int) -> KeypointFrame:
    """The `KeypointFrame` of the test split's items of `view` (box metadata from the view's items)."""
    items = ctx.items("test", view)
    sp = ctx.split("test")
    kps = np.stack([np.asarray(sp.keypoints(int(i)), dtype=np.float32) for i in items.base])
    return map_keypoints(kps, items.meta["box"], size)


def used_concepts(weights: torch.Tensor, top_k: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(idx [C, U], ok [C, U]): each class's used concepts (weight > 0; the top_k largest if top_k > 0)."""
    pos = weights > 0
    order = torch.argsort(weights.masked_fill(~pos, float("-inf")), dim=1, descending=True, stable=True)
    n = pos.sum(dim=1)
    if top_k > 0:
        n = n.clamp(max=top_k)
    u = max(int(n.max()) if n.numel() else 0, 1)
    idx = order[:, :u]
    ok = torch.arange(u, device=weights.device)[None, :] < n[:, None]
    return idx, ok


def peak_pixels(maps: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, col) [B, U] of the argmax of each map [B, U, g, g] upsampled bicubically to size x size."""
    b, u = maps.shape[:2]
    flat = maps.reshape(b * u, 1, *maps.shape[2:]).float()
    per = max(1, _CHUNK_ELEMENTS // (size * size))
    out = [F.interpolate(flat[s:s + per], size=(size, size), mode="bicubic", align_corners=False).flatten(1).argmax(1)
           for s in range(0, flat.shape[0], per)]
    idx = torch.cat(out).view(b, u) if out else flat.new_zeros(b, u, dtype=torch.long)
    return idx // size, idx % size


def square_hits(rows: torch.Tensor, cols: torch.Tensor, xy: torch.Tensor, visible: torch.Tensor, size: int,
                half: int = HALF_SIZE) -> torch.Tensor:
    """bool [B, U, P]: visible keypoint p lies in the (2 half)-square around peak (rows, cols) [B, U]."""
    y0, y1 = (rows - half).clamp(min=0)[..., None], (rows + half).clamp(max=size)[..., None]
    x0, x1 = (cols - half).clamp(min=0)[..., None], (cols + half).clamp(max=size)[..., None]
    kx, ky = xy[:, None, :, 0], xy[:, None, :, 1]
    return (ky >= y0) & (ky <= y1) & (kx >= x0) & (kx <= x1) & visible[:, None, :]


def keypoint_hits(ctx: EvalContext, view: View, frame: KeypointFrame, top_k: int = 0,
                  half: int = HALF_SIZE) -> KeypointHits:
    """Hit vectors of every (test item of `view`, concept used by its class), in batches."""
    n, p = frame.visible.shape
    labels = torch.zeros(n, dtype=torch.long)
    hits = used_idx = used_ok = None
    for b in concept_batches(ctx, view):
        dev = b.maps.device
        if used_idx is None:
            used_idx, used_ok = used_concepts(b.weights, top_k)
            hits = torch.zeros(n, used_idx.shape[1], p, dtype=torch.bool)
        g = b.maps.shape[-1]
        idx = used_idx[b.labels]                                                  # [B, U]
        sel = b.maps.gather(1, idx[:, :, None, None].expand(-1, -1, g, g))
        r, c = peak_pixels(sel, frame.size)
        rows = torch.as_tensor(b.rows, dtype=torch.long)
        h = square_hits(r, c, frame.xy[rows].to(dev), frame.visible[rows].to(dev), frame.size, half)
        hits[rows] = (h & used_ok[b.labels][..., None]).cpu()
        labels[rows] = b.labels.cpu()
    if hits is None:
        raise ValueError("the test split is empty")
    return KeypointHits(hits=hits, used_idx=used_idx.cpu(), used_ok=used_ok.cpu(), labels=labels,
                        visible=frame.visible)


def _pairs(used_ok: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    count = torch.bincount(labels, minlength=used_ok.shape[0]).double()
    return used_ok & (count > 0)[:, None], count


def keypoint_consistency(h: KeypointHits, threshold: float = CONSISTENT) -> tuple[float | None, int]:
    """(fraction of consistent (class, used concept) pairs, pairs); None without pairs."""
    c, u, p = h.used_ok.shape[0], h.hits.shape[1], h.hits.shape[2]
    hit_sum = torch.zeros(c, u, p, dtype=torch.float64).index_add_(0, h.labels, h.hits.double())
    vis_sum = torch.zeros(c, p, dtype=torch.float64).index_add_(0, h.labels, h.visible.double())
    ratio = hit_sum / torch.where(vis_sum == 0, torch.ones_like(vis_sum), vis_sum)[:, None, :]
    pairs, _ = _pairs(h.used_ok, h.labels)
    n = int(pairs.sum())
    if n == 0:
        return None, 0
    return float((ratio.amax(dim=2) >= threshold)[pairs].double().mean()), n


def keypoint_stability(clean: KeypointHits, noisy: KeypointHits) -> tuple[float | None, int]:
    """(mean over (class, used concept) pairs of the fraction of the class's images with an unchanged hit vector, pairs)."""
    stable = (clean.hits == noisy.hits).all(dim=2).double()                   # [N, U]
    c = clean.used_ok.shape[0]
    per = torch.zeros(c, stable.shape[1], dtype=torch.float64).index_add_(0, clean.labels, stable)
    pairs, count = _pairs(clean.used_ok, clean.labels)
    n = int(pairs.sum())
    if n == 0:
        return None, 0
    return float((per / count.clamp_min(1)[:, None])[pairs].mean()), n


__all__ = ["HALF_SIZE", "CONSISTENT", "KeypointFrame", "KeypointHits", "map_keypoints", "keypoint_frame",
           "used_concepts", "peak_pixels", "square_hits", "keypoint_hits", "keypoint_consistency",
           "keypoint_stability"]
