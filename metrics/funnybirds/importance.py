"""Part importance of attribution maps and the important unit sets per threshold (SPEC 5.2).

importance(u) = sum of the nearest-upsampled map inside unit u's 5x5-dilated
mask, signed, as the method gives it (see `masks` for the exact reduction to
the token grid). A unit is *important at threshold t* iff

    importance(u) > t * (sum of the whole upsampled map)

with a strict inequality, evaluated in float64 (choices: a unit exactly at the
threshold is not important; when the whole map sums to a negative number the
threshold is negative, and we keep the literal rule, so units with importance 0
can then be important, as in FunnyBirds' own code). The same rule, with the
same threshold, decides whether a background object is important (for
distractibility). Padding objects (beyond an image's object count) are never
important.
"""
from __future__ import annotations

import torch

#: the SPEC's threshold grid: linspace(0.01, 0.5, 80)
THRESHOLD_RANGE = (0.01, 0.5)


def thresholds(count: int = 80) -> torch.Tensor:
    """float64 [count]: linspace(0.01, 0.5, count)."""
    return torch.linspace(THRESHOLD_RANGE[0], THRESHOLD_RANGE[1], int(count), dtype=torch.float64)


def unit_importance(maps: torch.Tensor, weights: torch.Tensor, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(importance [B, U], whole-map sum [B]) in float64 for maps [B, h, w] and `UnitCells` rows.

    `weights` [B, U, h*w] and `pixels` [B, h*w] are the rows of `masks.UnitCells`
    for the same images.
    """
    a = maps.detach().reshape(maps.shape[0], -1).to(device=weights.device, dtype=torch.float64)
    imp = torch.einsum("bk,buk->bu", a, weights)
    total = (a * pixels).sum(dim=1)
    return imp, total


def important_units(importance: torch.Tensor, total: torch.Tensor, ts: torch.Tensor,
                    valid: torch.Tensor) -> torch.Tensor:
    """bool [N, T, U]: unit u of image n is important at threshold ts[t] (see the module docstring)."""
    hit = importance[:, None, :] > ts.to(importance)[None, :, None] * total[:, None, None]
    return hit & valid[:, None, :]


def part_bits(important: torch.Tensor, num_parts: int) -> torch.Tensor:
    """long [...]: bitmask of the important part slots (bit p = part p) from bool [..., U]."""
    w = 1 << torch.arange(num_parts, device=important.device)
    return (important[..., :num_parts].long() * w).sum(dim=-1)


def popcount_table(num_parts: int) -> torch.Tensor:
    """long [2^P]: number of set bits of every part bitmask."""
    m = torch.arange(1 << num_parts)
    return sum(((m >> b) & 1) for b in range(num_parts))


def bits_to_bool(bits: torch.Tensor, num_parts: int) -> torch.Tensor:
    """bool [..., P]: the parts of each bitmask."""
    return ((bits[..., None] >> torch.arange(num_parts, device=bits.device)) & 1).bool()


__all__ = ["THRESHOLD_RANGE", "thresholds", "unit_importance", "important_units", "part_bits", "popcount_table",
           "bits_to_bool"]
