"""Student-to-teacher alignment (SPEC 3.4): RoIAlign over the teacher's crop box, then the mirror.

The student sees the whole image; the teacher sees a crop (x1, y1, x2, y2), given
as fractions of the image's width / height, resized to the full input and
mirrored when `flip` is set (`xbench.views.AugmentView` metadata). To compare
the two patch by patch, the student's maps [B, C, g, g] are resampled over
the box onto the teacher's g' x g' grid with `torchvision.ops.roi_align`
(`aligned=True`, so a feature cell k spans [k, k+1) and its centre is k + 0.5),
then flipped left-right for mirrored views.

Sampling (*ours*): `sampling_ratio=1`, i.e. teacher patch (i, j) is compared
with the student's map bilinearly interpolated at that patch's centre,
(x1 + (j + 0.5) * (x2 - x1) / g') of the image width (and likewise in y).
Beyond the outermost cell centres, RoIAlign holds the border value.
"""
from __future__ import annotations

import torch
from torchvision.ops import roi_align


def align_to_teacher(maps: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor,
                     out_size: int | None = None, sampling_ratio: int = 1) -> torch.Tensor:
    """Resample student maps [B, C, H, W] over `boxes` [B, 4] (fractions) onto [B, C, out, out], mirrored where `flips`."""
    b, _, h, w = maps.shape
    out = w if out_size is None else int(out_size)
    boxes = boxes.to(device=maps.device, dtype=maps.dtype)
    scale = torch.tensor([w, h, w, h], device=maps.device, dtype=maps.dtype)
    rois = torch.cat([torch.arange(b, device=maps.device, dtype=maps.dtype)[:, None], boxes * scale], dim=1)
    res = roi_align(maps.contiguous(), rois, output_size=(out, out), spatial_scale=1.0, sampling_ratio=sampling_ratio,
                    aligned=True)
    flips = flips.to(device=maps.device).bool().view(b, 1, 1, 1)
    return torch.where(flips, res.flip(-1), res)
