"""Correctness of FunnyBirds: single deletion (SD, SPEC 5.2).

Per test image (target = true class, all images): Spearman's rho over the P
parts between the part importance of the true-class map and the logit drop
logit(original) - logit(part p alone removed); the image scores 0.5 rho + 0.5;
SD is the mean over images.

Choices: ties get average ranks (as `scipy.stats.spearmanr`), rho is the
Pearson correlation of the ranks; rho is undefined when either side is constant
over the parts (all ranks equal), and such images are skipped (and counted).
"""
from __future__ import annotations

import torch


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """float64 [N, K]: 1-based ranks along the last dim, ties sharing their average rank."""
    less = (x[:, None, :] < x[:, :, None]).sum(dim=2)
    equal = (x[:, None, :] == x[:, :, None]).sum(dim=2)
    return less.to(torch.float64) + (equal.to(torch.float64) + 1.0) / 2.0


def spearman(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rho [N], defined [N]) between the rows of x and y [N, K]."""
    rx, ry = average_ranks(x), average_ranks(y)
    rx = rx - rx.mean(dim=1, keepdim=True)
    ry = ry - ry.mean(dim=1, keepdim=True)
    vx, vy = (rx * rx).sum(dim=1), (ry * ry).sum(dim=1)
    defined = (vx > 0) & (vy > 0)
    rho = (rx * ry).sum(dim=1) / torch.sqrt(vx * vy).clamp_min(1e-300)
    return torch.where(defined, rho, torch.full_like(rho, float("nan"))), defined


def single_deletion(importance: torch.Tensor, drops: torch.Tensor) -> tuple[float, int, int]:
    """(SD, images used, images skipped) from part importance and logit drops [N, P]."""
    rho, ok = spearman(importance.to(torch.float64), drops.to(torch.float64))
    n = int(ok.sum())
    value = float((0.5 * rho[ok] + 0.5).mean()) if n else float("nan")
    return value, n, int((~ok).sum())


__all__ = ["average_ranks", "spearman", "single_deletion"]
